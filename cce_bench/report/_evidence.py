"""The report's exploratory evidence: other metrics, per-class recalls, confused pairs.

Everything here is labelled exploratory in the table itself, carries Benjamini-Yekutieli q
values rather than family-wise ones, and never enters the Answer: it suggests where to look in
a next study. Intervals are unadjusted 95% ones, and a row is flagged only when its q is below
alpha, never called "no evidence" beside an interval that excludes 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from cce_bench.report._families import (
    CONFIRMATORY,
    DERIVED,
    EXPLORATORY,
    RECALL_PREFIX,
    AnalysisPlan,
)
from cce_bench.report._families import metric_label as label_of
from cce_bench.report._format import fmt_diff, fmt_effect, fmt_interval, fmt_level, fmt_p
from cce_bench.report._results import StudyResults, completed
from cce_bench.report._tables import PAIR_METRICS, markdown_table, mean_sd

FAMILY_LABELS: dict[str, str] = {
    CONFIRMATORY: "confirmatory",
    EXPLORATORY: "exploratory",
    DERIVED: "derived (not tested)",
}


def exploratory_display(
    frame: pd.DataFrame, arm_labels: Mapping[str, str], *, alpha: float, recall: bool = False
) -> pd.DataFrame:
    """Exploratory and derived rows as shown: Δ, 95% intervals, p, BY q and the lead, if any."""
    level = fmt_level(1 - alpha)
    rows = []
    for row in frame.itertuples():
        shown = {
            "Backbone": row.backbone,
            "Comparison": f"{arm_labels[row.arm]} vs {arm_labels[row.baseline]}",
            "Family": FAMILY_LABELS[row.family],
            "Metric": label_of(row.metric),
        }
        if recall:
            shown["Test images"] = row.test_images
        shown.update(
            {
                "n": f"{row.n}{' †' if row.underpowered else ''}",
                "Δ (pp)": fmt_diff(row.mean_diff, row.metric),
                f"{level} CI, seeds": fmt_interval(row.ci_low, row.ci_high, row.metric),
                f"{level} CI, seeds + test set": fmt_interval(
                    row.combined_ci_low, row.combined_ci_high, row.metric
                ),
                "p (t)": fmt_p(row.t_pvalue),
                "p (sign flip)": fmt_p(row.sign_flip_p),
                "q (BY)": fmt_p(row.adjusted_pvalue),
                "d_z": fmt_effect(row.d_z),
                f"Lead (q < {alpha:g})": row.verdict or "—",
            }
        )
        rows.append(shown)
    return pd.DataFrame(rows)


def _explained(plan: AnalysisPlan, tests: int) -> str:
    return (
        f"Exploratory: Benjamini–Yekutieli over the {tests} exploratory paired tests of this "
        "report (this section, the per-class recalls and the confused pairs); a lead "
        f"(q < {plan.alpha:g}) is something to test in a new study, not a finding, and none "
        "enters the Answer. Intervals are unadjusted "
        f"{fmt_level(1 - plan.alpha)} intervals, over seeds and with test-set sampling (as in "
        "the confirmatory family). Derived metrics are shown with their difference but not "
        "tested. † fewer than 5 paired seeds."
    )


def exploratory_section(results: StudyResults, plan: AnalysisPlan, frame: pd.DataFrame) -> str:
    """Every comparison outside the confirmatory family, but the recalls and the pair errors."""
    shown = frame[
        (frame["family"] != CONFIRMATORY)
        & ~frame["metric"].str.startswith(RECALL_PREFIX)
        & ~frame["metric"].isin(PAIR_METRICS)
    ]
    tests = int((frame["family"] == EXPLORATORY).sum()) if not frame.empty else 0
    return "\n".join(
        [
            "## Exploratory comparisons",
            "",
            _explained(plan, tests),
            "",
            markdown_table(exploratory_display(shown, results.arm_labels, alpha=plan.alpha)),
        ]
    )


def recall_section(results: StudyResults, plan: AnalysisPlan, frame: pd.DataFrame) -> str:
    """Per-class recall differences with the test images of each class (exploratory).

    Balanced accuracy is the mean of these recalls, so a class with a handful of test images
    moves it as much as one with a thousand: the counts say which differences rest on few.
    """
    recalls = (
        frame[frame["metric"].str.startswith(RECALL_PREFIX)].copy() if not frame.empty else frame
    )
    counts = _test_class_counts(results)
    if not recalls.empty:
        names = recalls["metric"].str.removeprefix(RECALL_PREFIX)
        recalls["test_images"] = [counts.get(name, "—") for name in names]
    return "\n".join(
        [
            "## Per-class recall (exploratory)",
            "",
            "Which classes drive a difference in balanced accuracy, the mean of these recalls: "
            "a class with few test images moves it as much as the largest one. Exploratory, "
            "with the q values of the section above (one Benjamini–Yekutieli family).",
            "",
            markdown_table(
                exploratory_display(recalls, results.arm_labels, alpha=plan.alpha, recall=True)
            ),
        ]
    )


def _test_class_counts(results: StudyResults) -> dict[str, int]:
    """Test images per class, from the split manifest."""
    parts = results.manifest.get("parts") or {}
    counts = (parts.get("test") or {}).get("class_counts") or {}
    return {str(name): int(count) for name, count in counts.items()}


def confused_pairs_section(
    results: StudyResults, plan: AnalysisPlan, frame: pd.DataFrame, mcnemar: pd.DataFrame
) -> str:
    """The paper's central claim, explored: pair error rates, their paired tests, McNemar."""
    rows = []
    done = completed(results.runs)
    for backbone in results.backbones:
        for arm in results.arms:
            group = done[(done["backbone"] == backbone) & (done["arm"] == arm)]
            row = {"Backbone": backbone, "Arm": results.arm_labels[arm]}
            for metric in PAIR_METRICS:
                row[label_of(metric) + " (%)"] = mean_sd(group.get(metric, []))
            rows.append(row)
    paired = frame[frame["metric"].isin(PAIR_METRICS)] if not frame.empty else frame
    lines = [
        "## Confused pairs (exploratory)",
        "",
        "Share of a pair's test images predicted as the other class of the pair (paper section "
        "1: CCE is meant to lower exactly these), mean ± sd over completed seeds:",
        "",
        markdown_table(pd.DataFrame(rows)),
        "",
        "Paired tests over seeds (exploratory rows; lower is better):",
        "",
        markdown_table(exploratory_display(paired, results.arm_labels, alpha=plan.alpha)),
        "",
        "Exact McNemar test per seed on the per-image predictions (all test images: right or "
        "wrong; a pair's images: taken for the other class or not), over the paired seeds "
        "whose predictions of both arms could be read. Each seed's sign is + when more images "
        "are right only under the other arm than only under the baseline; the signed Stouffer "
        "combination lets seeds that disagree cancel. The seeds share one test set, so the "
        "combined p is optimistic; exploratory, with Benjamini–Hochberg q over this table.",
        "",
        markdown_table(_mcnemar_display(mcnemar, results.arm_labels)),
    ]
    return "\n".join(lines)


def _mcnemar_display(mcnemar: pd.DataFrame, arm_labels: Mapping[str, str]) -> pd.DataFrame:
    signs = {1: "+", -1: "−", 0: "0"}
    rows = [
        {
            "Backbone": row.backbone,
            "Comparison": f"{arm_labels[row.arm]} vs {arm_labels[row.baseline]}",
            "Family": "exploratory",
            "Images": row.scope,
            "Seeds": row.seeds,
            "Per-seed p (sign)": ", ".join(
                f"{fmt_p(p)} ({signs[direction]})"
                for p, direction in zip(row.seed_pvalues, row.seed_directions, strict=True)
            )
            or "—",
            "Combined p (signed Stouffer)": fmt_p(row.combined_pvalue),
            "q (BH)": fmt_p(row.bh_pvalue),
        }
        for row in mcnemar.itertuples()
    ]
    return pd.DataFrame(rows)
