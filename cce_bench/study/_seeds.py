"""Which paired seeds each backbone runs: all at once, or one more after every look.

Under ``evaluate.stopping = "fixed"`` a backbone's seeds are ``evaluate.seed_range``, released
at once. Under ``"anytime"`` that range is the first look; the stopping rule adds a seed only
when every arm has finished every seed it has read so far and the look at them left some
confirmatory comparison undecided (:mod:`cce_bench.sequential`), up to ``evaluate.max_seeds``.
A slot that would idle meanwhile gets the next seed ahead of the rule (``release_ahead``): the
rule still reads seeds strictly in order, so its guarantee holds, and a seed trained ahead of a
decision is never read (the report counts it as compute).

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
        #: Seeds the stopping rule has read or will read next (its looks), in order.
        self.count = len(released_seeds(spec, backbone, records()))
        #: Seeds released beyond ``count`` into slots that would otherwise idle.
        self.ahead = 0
        self.arms: dict[str, Callable[[], bool] | None] = dict.fromkeys(spec.losses.arms)
        self.excluded: set[str] = set()
        self.stop_reason: str | None = None
        #: Per evaluating arm: whether it has released seeds it has not started.
        self.waiting: dict[str, Callable[[], bool]] = {}

    @property
    def anytime(self) -> bool:
        return self.spec.evaluate.stopping == "anytime"

    def seeds(self) -> range:
        """The seeds the arms may run: the rule's, plus any released ahead."""
        first = self.spec.evaluate.first_seed
        return range(first, first + self.count + self.ahead)

    def release_ahead(self) -> bool:
        """Release one more seed into an idle slot before the rule asks for it; True if done.

        Only under "anytime", once every arm is evaluating, below the cap and before the
        backbone has stopped.
        """
        if not self.anytime or self.stop_reason is not None:
            return False
        if self.count + self.ahead >= self.spec.evaluate.seed_cap:
            return False
        active = [arm for arm in self.arms if arm not in self.excluded]
        if any(self.arms[arm] is None for arm in active):
            return False
        # The rule's own seeds first: no seed goes ahead while an arm has one to start.
        if any(self.waiting[arm]() for arm in active if arm in self.waiting):
            return False
        self.ahead += 1
        return True

    def attach(
        self, arm: str, idle: Callable[[], bool], waiting: Callable[[], bool] | None = None
    ) -> None:
        """An arm's evaluator started: the schedule asks it whether it is done, and whether
        it still has released seeds to start (``waiting``)."""
        self.arms[arm] = idle
        if waiting is not None:
            self.waiting[arm] = waiting

    def exclude(self, arm: str) -> None:
        """An arm that cannot be evaluated (no tuned setting) no longer holds the others back."""
        self.excluded.add(arm)

    def comparison_paths(self) -> dict[str, list[Look]]:
        """Per compared arm that can be judged (neither side excluded): its looks at the seeds
        the rule has read, never at a seed released ahead."""
        records, m = self.records(), self.spec.family_size()
        return {
            arm: [
                look
                for look in comparison_path(self.spec, self.backbone, arm, records, m)
                if look.seeds <= self.count
            ]
            for arm in self.spec.analysis.compared_arms(self.spec.losses)
            if not {arm, self.spec.losses.baseline} & self.excluded
        }

    def extend(self) -> bool:
        """Let the rule read the next seed if the design calls for one now; True when it did.

        Only under "anytime", below the cap, when every arm finished the seeds the rule has
        read (a look is complete) and some comparison is still open. When the backbone stops
        instead, ``stop_reason`` says why (once; the driver prints it), and seeds released
        ahead but not started are withdrawn.
        """
        if not self.anytime or self.stop_reason is not None:
            return False
        active = {arm: idle for arm, idle in self.arms.items() if arm not in self.excluded}
        if any(idle is None for idle in active.values()):
            return False
        if not self._look_complete(active):
            return False
        paths = self.comparison_paths()
        open_ones = sorted(arm for arm, path in paths.items() if deciding_look(path) is None)
        if not open_ones:
            self.stop_reason, self.ahead = self._decided_reason(paths), 0
            return False
        if self.count >= self.spec.evaluate.seed_cap:
            names = ", ".join(open_ones)
            self.stop_reason, self.ahead = (
                (
                    f"{self.backbone}: reached max_seeds = {self.spec.evaluate.seed_cap} with "
                    f"{names} vs {self.spec.losses.baseline} still open: inconclusive"
                ),
                0,
            )
            return False
        self.count += 1
        self.ahead = max(0, self.ahead - 1)  # the next seed may already be out ahead
        return True

    def _look_complete(self, active: dict[str, Any]) -> bool:
        """Every active arm has a final record (completed, diverged or failed) of each seed."""
        latest = latest_records(evaluation_records(self.records(), self.backbone))
        final = (*FINAL_OUTCOMES, "failed")
        return all(
            latest.get((self.backbone, arm, seed), {}).get("outcome") in final
            for arm in active
            for seed in range(
                self.spec.evaluate.first_seed, self.spec.evaluate.first_seed + self.count
            )
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
