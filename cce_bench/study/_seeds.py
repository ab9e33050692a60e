"""Which paired seeds each backbone runs: all at once, or one more after every look.

Under ``evaluate.stopping = "fixed"`` a backbone's seeds are ``evaluate.seed_range``, released
at once. Under ``"anytime"`` that range is the first look; a backbone gets its next seed only
when every arm has finished every seed released so far and the look at them left some
confirmatory comparison undecided (:mod:`cce_bench.sequential`), up to ``evaluate.max_seeds``.
Waiting for the whole look before adding a seed can leave a slot idle for one round, but no
seed is ever trained after its backbone's answer was in.

Everything is a function of ``runs.jsonl``: the seeds released are those on record (at least
the first look), so a resumed study carries on where it stopped, and a stopped backbone stays
stopped unless ``max_seeds`` is raised and a comparison is still open.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cce_bench.sequential import EQUIVALENT, POSITIVE, Look, deciding_look, look_path
from cce_bench.study.store import FINAL_OUTCOMES, latest_records

if TYPE_CHECKING:
    from cce_bench.config import StudySpec


def evaluation_records(records: Iterable[dict[str, Any]], backbone: str) -> list[dict[str, Any]]:
    """One backbone's evaluation records, in append order."""
    return [
        r
        for r in records
        if r.get("backbone") == backbone and r.get("phase", "evaluate") == "evaluate"
    ]


def released_seeds(spec: StudySpec, backbone: str, records: Iterable[dict[str, Any]]) -> range:
    """The backbone's seeds so far: the first look, plus every seed already on record.

    Capped at ``evaluate.seed_cap``: a seed on record beyond a lowered cap stays on record
    but is not run again.
    """
    evaluate = spec.evaluate
    seeds = [int(r["seed"]) for r in evaluation_records(records, backbone)]
    count = max(evaluate.seeds, max(seeds, default=-1) + 1 - evaluate.first_seed)
    return range(evaluate.first_seed, evaluate.first_seed + min(count, evaluate.seed_cap))


def seed_differences(
    records: Iterable[dict[str, Any]],
    backbone: str,
    baseline: str,
    arm: str,
    metric: str,
    seeds: Sequence[int],
) -> np.ndarray:
    """Per seed, in order, ``arm`` minus ``baseline`` on ``metric``; NaN where either arm's
    latest record of that seed did not complete (the seed has no pair)."""
    latest = latest_records(evaluation_records(records, backbone))
    diffs = []
    for seed in seeds:
        values = []
        for name in (baseline, arm):
            record = latest.get((backbone, name, int(seed)), {})
            value = (record.get("metrics") or {}).get(metric)
            ok = record.get("outcome") == "completed" and value is not None
            values.append(float(value) if ok else math.nan)
        diffs.append(values[1] - values[0])
    return np.asarray(diffs, dtype=np.float64)


def comparison_path(
    spec: StudySpec, backbone: str, arm: str, records: Iterable[dict[str, Any]], m: int
) -> list[Look]:
    """Every look of one confirmatory comparison on the seeds released so far, in order.

    A look is taken after the first ``evaluate.seeds`` seeds and after each one after that;
    a seed without a pair (one arm failed or diverged) adds no difference to the looks.
    """
    records = list(records)
    seeds = released_seeds(spec, backbone, records)
    analysis = spec.analysis
    diffs = seed_differences(
        records, backbone, spec.losses.baseline, arm, analysis.primary_metric, seeds
    )
    return look_path(
        diffs,
        first_look=spec.evaluate.seeds,
        alpha=analysis.alpha,
        m=m,
        margin=analysis.margin,
    )


def describe_decision(spec: StudySpec, arm: str, decided: Look) -> str:
    """'cce_tau vs ce: ce better at 7 seeds' (effects named by the metric's direction)."""
    from cce_bench.metrics import HIGHER_IS_BETTER

    baseline = spec.losses.baseline
    if decided.decision == EQUIVALENT:
        what = f"equivalent within ±{spec.analysis.margin:g}"
    else:
        arm_wins = (decided.decision == POSITIVE) == HIGHER_IS_BETTER[spec.analysis.primary_metric]
        what = f"{arm if arm_wins else baseline} better"
    evidence = f"e-value {decided.e_value:.3g}"
    return f"{arm} vs {baseline}: {what} at {decided.n} paired seeds ({evidence})"


class SeedSchedule:
    """The seeds one backbone's arms may run now, and whether the backbone has stopped.

    ``records`` returns the study's run records as they stand (the driver appends to them);
    ``arm_idle(arm)`` says whether that arm's evaluator has nothing pending or running in the
    released range, and is None for an arm not evaluating yet (still tuning).
    """

    def __init__(
        self,
        spec: StudySpec,
        backbone: str,
        records: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self.spec, self.backbone, self.records = spec, backbone, records
        self.count = len(released_seeds(spec, backbone, records()))
        self.arms: dict[str, Callable[[], bool] | None] = dict.fromkeys(spec.losses.arms)
        self.excluded: set[str] = set()
        self.stop_reason: str | None = None

    @property
    def anytime(self) -> bool:
        return self.spec.evaluate.stopping == "anytime"

    def seeds(self) -> range:
        first = self.spec.evaluate.first_seed
        return range(first, first + self.count)

    def attach(self, arm: str, idle: Callable[[], bool]) -> None:
        """An arm's evaluator started: the schedule asks it whether it is done."""
        self.arms[arm] = idle

    def exclude(self, arm: str) -> None:
        """An arm that cannot be evaluated (no tuned setting) no longer holds the others back."""
        self.excluded.add(arm)

    def comparison_paths(self) -> dict[str, list[Look]]:
        """Per compared arm that can be judged (neither side excluded): its looks so far."""
        records, m = self.records(), self.spec.family_size()
        return {
            arm: comparison_path(self.spec, self.backbone, arm, records, m)
            for arm in self.spec.analysis.compared_arms(self.spec.losses)
            if not {arm, self.spec.losses.baseline} & self.excluded
        }

    def extend(self) -> bool:
        """Release the next seed if the design calls for one now; True when it did.

        Only under "anytime", below the cap, when every arm finished the released seeds (a
        look is complete) and some comparison is still open. When the backbone stops instead,
        ``stop_reason`` says why (once; the driver prints it).
        """
        if not self.anytime or self.stop_reason is not None:
            return False
        active = {arm: idle for arm, idle in self.arms.items() if arm not in self.excluded}
        if any(idle is None or not idle() for idle in active.values()):
            return False
        if not self._look_complete(active):
            return False
        paths = self.comparison_paths()
        open_ones = sorted(arm for arm, path in paths.items() if deciding_look(path) is None)
        if not open_ones:
            self.stop_reason = self._decided_reason(paths)
            return False
        if self.count >= self.spec.evaluate.seed_cap:
            names = ", ".join(open_ones)
            self.stop_reason = (
                f"{self.backbone}: reached max_seeds = {self.spec.evaluate.seed_cap} with "
                f"{names} vs {self.spec.losses.baseline} still open: inconclusive"
            )
            return False
        self.count += 1
        return True

    def _look_complete(self, active: dict[str, Any]) -> bool:
        """Every active arm has a final record (completed, diverged or failed) of each seed."""
        latest = latest_records(evaluation_records(self.records(), self.backbone))
        final = (*FINAL_OUTCOMES, "failed")
        return all(
            latest.get((self.backbone, arm, seed), {}).get("outcome") in final
            for arm in active
            for seed in self.seeds()
        )

    def _decided_reason(self, paths: dict[str, list[Look]]) -> str:
        parts = [
            describe_decision(self.spec, arm, decided)
            for arm, path in paths.items()
            if (decided := deciding_look(path)) is not None
        ]
        return (
            f"{self.backbone}: stopped after {self.count} seeds, every comparison decided "
            f"({'; '.join(parts) or 'none to decide'})"
        )
