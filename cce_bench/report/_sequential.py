"""The anytime design in the report: its verdicts, why each backbone stopped, what it cost.

Under ``evaluate.stopping = "anytime"`` the confirmatory verdicts are read from the e-values and
confidence sequences of :mod:`cce_bench.sequential`, at the look where each comparison was first
decided, because only those keep their error promise when seeds were added look by look. The
fixed-n analysis of the same seeds stays in the report beside them, labelled "not the verdict":
it assumes a single look at a number of seeds fixed in advance, which this design did not have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cce_bench.metrics import HIGHER_IS_BETTER
from cce_bench.report._answer import follow_up_text
from cce_bench.report._families import (
    CONFIRMATORY,
    FOLLOW_UP_CAP,
    AnalysisPlan,
    margin_text,
    metric_label,
)
from cce_bench.report._figures import _STYLE, save_figure
from cce_bench.report._format import fmt_diff, fmt_interval
from cce_bench.report._results import StudyResults
from cce_bench.report._tables import markdown_table, metric_scale
from cce_bench.sequential import (
    EQUIVALENT,
    POSITIVE,
    Look,
    anytime_seeds_needed,
    deciding_look,
    verdict_look,
)
from cce_bench.stats import MIN_SEEDS, anytime_min_seeds, sign_flip_min_seeds
from cce_bench.study import comparison_path, released_seeds


@dataclass(frozen=True)
class SequentialComparison:
    """One confirmatory comparison under the anytime design: its looks and its verdict."""

    backbone: str
    arm: str
    path: tuple[Look, ...]
    verdict: str

    @property
    def read_at(self) -> Look | None:
        """The look the verdict is read at: where it was decided, else the last one."""
        return verdict_look(self.path)

    @property
    def decided(self) -> bool:
        return deciding_look(self.path) is not None


def is_anytime(results: StudyResults) -> bool:
    return results.spec.evaluate.stopping == "anytime"


def sequential_comparisons(results: StudyResults, plan: AnalysisPlan) -> list[SequentialComparison]:
    """Every confirmatory comparison's looks, as the driver took them, and its verdict."""
    labels, base = results.arm_labels, results.arm_labels[results.baseline]
    found = []
    for backbone in plan.backbones:
        for arm in plan.compared:
            path = tuple(comparison_path(results.spec, backbone, arm, results.records, plan.size))
            found.append(
                SequentialComparison(
                    backbone, arm, path, _verdict_text(path, plan, labels[arm], base)
                )
            )
    return found


def _verdict_text(path: tuple[Look, ...], plan: AnalysisPlan, arm: str, baseline: str) -> str:
    decided = deciding_look(path)
    if decided is None:
        return "inconclusive"
    if decided.decision == EQUIVALENT:
        return f"equivalent within {margin_text(plan)}"
    arm_wins = (decided.decision == POSITIVE) == HIGHER_IS_BETTER[plan.primary_metric]
    return f"{arm if arm_wins else baseline} better"


def apply_sequential_verdicts(
    frame: pd.DataFrame,
    comparisons: list[SequentialComparison],
    plan: AnalysisPlan,
    first_look: int,
) -> pd.DataFrame:
    """The confirmatory rows take the anytime verdicts; the fixed-n ones move to
    ``fixed_n_verdict`` (shown, never the verdict). Adds the e-value, the confidence sequence
    and the seeds the verdict was read at, and sizes each follow-up for this design
    (:func:`anytime_follow_up`) rather than the fixed one."""
    frame = frame.copy()
    for index in frame.index[frame["family"] == CONFIRMATORY]:
        frame.at[index, "seeds_needed"] = anytime_follow_up(
            frame.at[index, "sd_diff"], int(frame.at[index, "n"]), plan, first_look
        )
    for column in ("fixed_n_verdict", "e_value", "cs_low", "cs_high", "verdict_seeds"):
        frame[column] = np.nan if column != "fixed_n_verdict" else ""
    frame["fixed_n_verdict"] = frame["fixed_n_verdict"].astype(object)
    for item in comparisons:
        mask = (
            (frame["family"] == CONFIRMATORY)
            & (frame["backbone"] == item.backbone)
            & (frame["arm"] == item.arm)
        )
        read = item.read_at
        frame.loc[mask, "fixed_n_verdict"] = frame.loc[mask, "verdict"]
        frame.loc[mask, "verdict"] = item.verdict
        if read is not None:
            frame.loc[mask, "e_value"] = read.e_value
            frame.loc[mask, "cs_low"] = read.cs_low
            frame.loc[mask, "cs_high"] = read.cs_high
            frame.loc[mask, "verdict_seeds"] = read.seeds
    return frame


def anytime_follow_up(sd_diff: float, n: int, plan: AnalysisPlan, first_look: int) -> int | None:
    """``max_seeds`` of an anytime follow-up with 80% power against ±margin at this sd.

    Simulated with the design's own rule (:func:`cce_bench.sequential.anytime_seeds_needed`),
    the simulation ``benchmarks/bench_sequential.py`` reports. None where no size means
    anything (fewer than ``MIN_SEEDS`` seeds, or no spread); beyond ``FOLLOW_UP_CAP`` the cap
    + 1, printed as "more than".
    """
    if n < MIN_SEEDS or not (math.isfinite(sd_diff) and sd_diff > 0.0):
        return None
    found = anytime_seeds_needed(
        plan.margin / sd_diff,
        first_look=max(first_look, 1),
        alpha=plan.alpha,
        m=plan.size,
        cap=FOLLOW_UP_CAP,
    )
    return FOLLOW_UP_CAP + 1 if found is None else found


def answer_lines(
    results: StudyResults,
    plan: AnalysisPlan,
    comparisons: list[SequentialComparison],
    frame: pd.DataFrame | None = None,
) -> list[str]:
    """The Answer under the anytime design: one line per comparison, verdict first."""
    metric, labels = plan.primary_metric, results.arm_labels
    threshold = plan.size / plan.alpha
    lines = [
        "## Answer",
        "",
        f"The confirmatory family of the plan: {metric_label(metric).lower()}, {plan.size} "
        f"comparisons, read with the anytime-valid paired t-test (seeds added look by look, "
        f'`evaluate.stopping = "anytime"`): an effect when the e-value reaches m/α = '
        f"{threshold:g}, equivalence when the confidence sequence (level 1 − α/m) lies inside "
        f"±margin. Each verdict is read at the look that decided it.",
        "",
    ]
    lines += _undecidable(results, plan)
    follow_ups = _follow_ups(frame)
    for item in comparisons:
        read = item.read_at
        head = f"- **{item.backbone}, {labels[item.arm]} vs {labels[results.baseline]}**: "
        if read is None:
            lines.append(head + "no look yet (fewer paired seeds than the first look).")
            continue
        when = "decided" if item.decided else "still open"
        row = follow_ups.get((item.backbone, item.arm))
        follow_up = "" if row is None else " " + follow_up_text(*row, plan, "anytime")
        lines.append(
            head + f"{item.verdict} ({when} at {read.seeds} seeds, {read.n} paired"
            f"{_normality_mark(item, plan)}). Δ = {fmt_diff(read.mean, metric, unit=True)}, "
            f"confidence sequence {fmt_interval(read.cs_low, read.cs_high, metric)}, e-value "
            f"{read.e_value:.3g}.{follow_up}"
        )
    lines += [
        "",
        "The fixed-n tables below analyse the same seeds as if their number had been fixed "
        "in advance; they are shown for comparison and are **not the verdict**.",
    ]
    return lines


def _follow_ups(frame: pd.DataFrame | None) -> dict[tuple[str, str], tuple[object, int]]:
    """(backbone, arm) -> (anytime follow-up size, paired seeds) of the confirmatory rows."""
    if frame is None or frame.empty:
        return {}
    rows = frame[frame["family"] == CONFIRMATORY]
    return {(r.backbone, r.arm): (r.seeds_needed, int(r.n)) for r in rows.itertuples()}


def _normality_mark(item: SequentialComparison, plan: AnalysisPlan) -> str:
    """Mark a decision read where no distribution-free test could have reached α/m."""
    read, floor = item.read_at, sign_flip_min_seeds(plan.alpha, plan.size)
    if not item.decided or read is None or read.n >= floor:
        return ""
    return (
        f"; rests on normality: with {read.n} seeds no distribution-free test can reach "
        f"α/{plan.size}, which needs {floor}"
    )


def _undecidable(results: StudyResults, plan: AnalysisPlan) -> list[str]:
    """A design whose ``max_seeds`` is below ``anytime_min_seeds`` could only end inconclusive."""
    cap, needed = results.spec.evaluate.seed_cap, anytime_min_seeds(plan.alpha, max(plan.size, 1))
    if cap >= needed:
        return []
    return [
        f"**This design could not decide anything.** `evaluate.max_seeds` = {cap} is below the "
        f"{needed} seeds at which the anytime test's e-value can reach m/α = "
        f'{plan.size / plan.alpha:g} at all, so every comparison ends "inconclusive" whatever '
        "the runs gave; it is the design, not the evidence, that is silent (a study file with "
        "this plan is now refused when it loads).",
        "",
    ]


def sequential_section(
    results: StudyResults, plan: AnalysisPlan, comparisons: list[SequentialComparison]
) -> str:
    """How the design ran: each look's evidence, why each backbone stopped, and its compute."""
    evaluate = results.spec.evaluate
    lines = [
        "## Sequential evaluation",
        "",
        f"Design: `evaluate.seeds` = {evaluate.seeds} (the first look), then one paired seed "
        f"at a time up to `evaluate.max_seeds` = {evaluate.seed_cap}; a backbone stops when "
        "each of its comparisons is decided. The e-value is the safe paired t-test's "
        "(Pérez-Ortiz, Lardy, de Heide & Grünwald 2024): by Ville's inequality it reaches "
        f"m/α = {plan.size / plan.alpha:g} with probability at most α/m under the null at any "
        "look, so the family-wise error stays at most α however often the study looked.",
        "",
    ]
    rows = []
    for item in comparisons:
        read = item.read_at
        rows.append(
            {
                "Backbone": item.backbone,
                "Comparison": f"{results.arm_labels[item.arm]} vs "
                f"{results.arm_labels[results.baseline]}",
                "Looks": len(item.path),
                "Read at (seeds)": "—" if read is None else str(read.seeds),
                "Δ (pp)": "—" if read is None else fmt_diff(read.mean, plan.primary_metric),
                "Confidence sequence": "—"
                if read is None
                else fmt_interval(read.cs_low, read.cs_high, plan.primary_metric),
                "e-value": "—" if read is None else f"{read.e_value:.3g}",
                "Verdict": item.verdict,
            }
        )
    lines += [markdown_table(pd.DataFrame(rows)), "", *_stops(results, plan, comparisons)]
    lines += ["", "### Compute per verdict", "", markdown_table(compute_frame(results))]
    lines += [
        "",
        f"Fixed design: every backbone runs `max_seeds` = {evaluate.seed_cap} seeds; its "
        "run-hours are this study's mean run time per backbone times its runs.",
    ]
    return "\n".join(lines)


def _stops(
    results: StudyResults, plan: AnalysisPlan, comparisons: list[SequentialComparison]
) -> list[str]:
    """Per backbone, one line: how many seeds it ran and why it stopped there."""
    lines = []
    cap = results.spec.evaluate.seed_cap
    for backbone in plan.backbones:
        mine = [c for c in comparisons if c.backbone == backbone]
        count = len(released_seeds(results.spec, backbone, results.records))
        if mine and all(c.decided for c in mine):
            why = "every comparison was decided" + _trained_ahead(results, backbone, mine, count)
        elif count >= cap:
            why = f"it reached max_seeds with {sum(not c.decided for c in mine)} comparison(s) open"
        else:
            why = "the study has not finished its looks (resume it to go on)"
        lines.append(f"- {backbone}: {count} seeds; {why}.")
    return lines


def _trained_ahead(
    results: StudyResults, backbone: str, mine: list[SequentialComparison], count: int
) -> str:
    """``, at 7 seeds; 1 seed (2 runs) trained ahead and never read``, or "" when none was.

    Idle slots get seeds ahead of the stopping rule; those past the last deciding look cost
    compute without entering any verdict.
    """
    decided_at = max(deciding_look(c.path).seeds for c in mine)  # type: ignore[union-attr]
    if count <= decided_at:
        return ""
    first = results.spec.evaluate.first_seed + decided_at
    runs = sum(
        1
        for r in results.records
        if r.get("backbone") == backbone
        and r.get("phase", "evaluate") == "evaluate"
        and int(r.get("seed", -1)) >= first
    )
    ahead = count - decided_at
    return (
        f" at {decided_at} seeds; {ahead} seed{'s' * (ahead != 1)} ({runs} runs) trained "
        "ahead and never read"
    )


def compute_frame(results: StudyResults) -> pd.DataFrame:
    """Per backbone: seeds, runs, run-hours and images trained, and the fixed design's."""
    cap, arms = results.spec.evaluate.seed_cap, len(results.arms)
    train_images = _training_images(results)
    rows = []
    for backbone in results.backbones:
        records = [r for r in results.records if r.get("backbone") == backbone]
        hours = sum(float(r.get("wall_time_s") or 0.0) for r in records) / 3600
        seeds = len(released_seeds(results.spec, backbone, results.records))
        runs = len({(r["arm"], r["seed"]) for r in records})
        per_run = hours / runs if runs else math.nan
        epochs = results.spec.train.epochs
        rows.append(
            {
                "Backbone": backbone,
                "Seeds": seeds,
                "Runs": runs,
                "Run-hours": f"{hours:.2f}",
                "Images trained": f"{runs * epochs * train_images:,}",
                "Fixed design: seeds": cap,
                "Fixed: run-hours": f"{per_run * cap * arms:.2f}" if runs else "—",
                "Fixed: images": f"{cap * arms * epochs * train_images:,}",
            }
        )
    return pd.DataFrame(rows)


def _training_images(results: StudyResults) -> int:
    """Images one evaluation run trains on per epoch: train + val of the split manifest."""
    parts = results.manifest.get("parts", {})
    return sum(int(parts.get(name, {}).get("images", 0)) for name in ("train", "val"))


def sequence_plot(
    results: StudyResults, plan: AnalysisPlan, comparisons: list[SequentialComparison], path: Path
) -> Path:
    """Per comparison: the e-value path against m/α, and the confidence sequence against ±margin.

    One row per confirmatory comparison; the left panel is log-scaled, so the threshold reads as
    a line the path must cross; the right panel shows the sequence narrowing look by look, with
    the margin band inside which "equivalent" is declared.
    """
    scale = metric_scale(plan.primary_metric)[0]
    labels = results.arm_labels
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(9.0, 2.8 * max(len(comparisons), 1) + 0.8))
        axes = figure.subplots(max(len(comparisons), 1), 2, squeeze=False)
        for row, item in enumerate(comparisons):
            left, right = axes[row]
            title = f"{item.backbone}: {labels[item.arm]} vs {labels[results.baseline]}"
            seeds = [look.seeds for look in item.path]
            left.plot(seeds, [max(look.e_value, 1e-3) for look in item.path], marker="o")
            left.axhline(plan.size / plan.alpha, color="C3", linestyle="--", label="m/α")
            left.set_yscale("log")
            left.set_xlabel("seeds")
            left.set_ylabel("e-value")
            left.set_title(f"{title}: {item.verdict}")
            left.legend(frameon=False, loc="upper left")
            low = [look.cs_low * scale for look in item.path]
            high = [look.cs_high * scale for look in item.path]
            mean = [look.mean * scale for look in item.path]
            finite = [i for i in range(len(low)) if np.isfinite(low[i] + high[i])]
            if finite:
                right.fill_between(
                    [seeds[i] for i in finite],
                    [low[i] for i in finite],
                    [high[i] for i in finite],
                    alpha=0.3,
                    label="confidence sequence",
                )
            if len(finite) < len(low):
                right.text(
                    0.02,
                    0.96,
                    _infinite_note(seeds, finite),
                    transform=right.transAxes,
                    fontsize=8,
                    color="C3",
                    va="top",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8},
                )
            right.plot(seeds, mean, marker="o", color="black", label="mean Δ")
            for sign in (-1, 1):
                right.axhline(sign * plan.margin * scale, color="C2", linestyle=":")
            right.axhline(0.0, color="grey", linewidth=0.8)
            right.set_xlabel("seeds")
            right.set_ylabel("Δ (pp)" if scale == 100.0 else "Δ")
            right.legend(frameon=False, loc="upper right")
            for axis in (left, right):
                axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        figure.suptitle("Sequential evaluation: evidence after each paired seed")
        figure.subplots_adjust(left=0.09, right=0.98, hspace=0.6, wspace=0.3, top=0.9)
        return save_figure(figure, path)


def _infinite_note(seeds: list[int], finite: list[int]) -> str:
    """Why the band is missing: below the e-value's ceiling the confidence sequence is
    (−∞, ∞), which a plot cannot draw, so the reader is told instead of seeing nothing."""
    infinite = [seeds[i] for i in range(len(seeds)) if i not in finite]
    shown = ", ".join(str(n) for n in infinite)
    return f"confidence sequence (−∞, ∞)\nat {shown} seeds: too few to bound it"
