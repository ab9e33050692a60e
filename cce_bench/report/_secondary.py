"""The plan's secondary metrics: a second pre-registered family, reported apart from the Answer.

``[analysis] secondary_metrics`` (e.g. the paper's headline ACC beside the clinically relevant
balanced accuracy) names metrics fixed before any run. Each gets the same comparisons as the
primary metric (every backbone x compared arm against the baseline), and together they form
one family of m' tests with its own family-wise error control: Holm at the plan's alpha, with
simultaneous intervals at 1 - alpha/m'. The family is separate so that adding the paper's metric
can neither dilute the primary family's power nor let a secondary result stand in for the
primary Answer (Bender & Lange 2001).

A metric that is an affine function of another (the paper's ACC is ``1 - 2(1 - top-1)/C``) is
tested here like any other: its paired t-test is the other's, and the plan may name one of the
two only (``config`` refuses both).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cce_bench import stats
from cce_bench.report._families import AnalysisPlan, higher_is_better, metric_label
from cce_bench.report._format import fmt_diff, fmt_interval, fmt_level, fmt_p
from cce_bench.report._tables import mean_sd, metric_scale, paired_values, seed_pairing

SECONDARY = "secondary"

#: What the paper's ACC is, for a reader who meets it beside balanced accuracy.
PAPER_ACC_NOTE = (
    "The paper's ACC (eq. 4) is accuracy one class against the rest, (TP + TN) / N, averaged "
    "over the classes. Every error counts once as a false negative and once as a false "
    "positive, so ACC = 1 − 2 × (1 − top-1) / C. It moves with top-1, which the majority class "
    "(NV, two thirds of HAM10000) dominates: a model can miss most minority-class lesions and "
    "lose little ACC. Balanced accuracy, the mean recall per class, is what matters clinically."
)


def secondary_frame(
    runs: pd.DataFrame,
    *,
    plan: AnalysisPlan,
    metrics: Sequence[str],
    baseline: str,
    seeds: Sequence[int],
    arm_labels: Mapping[str, str],
) -> pd.DataFrame:
    """One row per backbone x compared arm x secondary metric, Holm-adjusted within the family."""
    rows = []
    size = len(plan.backbones) * len(plan.compared) * len(metrics)
    level = 1.0 - plan.alpha / max(size, 1)
    for metric in metrics:
        for backbone in plan.backbones:
            for arm in plan.compared:
                paired, _ = seed_pairing(runs, backbone, baseline, arm, seeds)
                a, b = paired_values(runs, backbone, baseline, arm, metric, paired)
                rows.append(
                    _row(a, b, level) | {"backbone": backbone, "arm": arm, "metric": metric}
                )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["adjusted_pvalue"] = stats.holm(frame["t_pvalue"].to_numpy(float))
    frame["verdict"] = [
        stats.verdict(
            row.mean_diff,
            row.adjusted_pvalue,
            alpha=plan.alpha,
            higher_is_better=higher_is_better(row.metric),
            better=arm_labels.get(row.arm, row.arm),
            worse=arm_labels.get(baseline, baseline),
        )
        for row in frame.itertuples()
    ]
    frame["family"], frame["level"], frame["baseline"] = SECONDARY, level, baseline
    return frame


def _row(a: np.ndarray, b: np.ndarray, level: float) -> dict:
    if a.size == 0:
        return {"n": 0, "mean_diff": math.nan, "t_pvalue": math.nan} | dict.fromkeys(
            ("ci_low", "ci_high"), math.nan
        )
    result = stats.paired_comparison(a, b)
    d = stats.paired_differences(a, b)
    low, high = stats.t_interval(d, level) if d.size > 1 else (math.nan, math.nan)
    return {
        "n": result["n"],
        "mean_diff": result["mean_diff"],
        "t_pvalue": result["t_pvalue"],
        "ci_low": low,
        "ci_high": high,
    }


def secondary_section(
    runs: pd.DataFrame, frame: pd.DataFrame, plan: AnalysisPlan, arm_labels: Mapping[str, str]
) -> str:
    """The family as markdown: what it is, the table, and what the paper's ACC measures."""
    if frame.empty:
        return ""
    metrics = list(dict.fromkeys(frame["metric"]))
    names = ", ".join(metric_label(m) for m in metrics)
    level = fmt_level(float(frame["level"].iloc[0]))
    lines = [
        "## Secondary metrics (secondary, pre-registered)",
        "",
        f"The plan named these before any run: {names}. They form a second family of "
        f"{len(frame)} comparisons, Holm-adjusted within it at α = {plan.alpha:g}, with "
        f"{level} simultaneous intervals. They never change the Answer, which reads "
        f"{metric_label(plan.primary_metric).lower()} only.",
        "",
        f"| backbone | metric | comparison | baseline | arm | difference | {level} CI | "
        "Holm p | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    done = runs[runs["outcome"] == "completed"]
    for row in frame.itertuples():
        scale, _ = metric_scale(row.metric)
        here = done[done["backbone"] == row.backbone]
        base = mean_sd(here[here["arm"] == row.baseline].get(row.metric, []), scale)
        other = mean_sd(here[here["arm"] == row.arm].get(row.metric, []), scale)
        label = f"{arm_labels.get(row.arm, row.arm)} vs {arm_labels.get(row.baseline)}"
        lines.append(
            f"| {row.backbone} | {metric_label(row.metric)} | {label} | {base} | {other} | "
            f"{fmt_diff(row.mean_diff, row.metric)} | "
            f"{fmt_interval(row.ci_low, row.ci_high, row.metric)} | "
            f"{fmt_p(row.adjusted_pvalue)} | {row.verdict} |"
        )
    if {"paper_accuracy", "top1"} & set(metrics):
        lines += ["", PAPER_ACC_NOTE]
    return "\n".join(lines)
