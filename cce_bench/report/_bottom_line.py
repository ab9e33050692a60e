"""The report's first section: one line per backbone that a reader can quote.

The Answer gives verdicts; a verdict alone hides how good the models are and what undermines
it. So each line puts the primary metric's absolute level for the baseline and every arm beside
chance (1/C, what a constant guess scores on a mean of per-class recalls), the verdicts, and
the caveats that otherwise sit deep in the tables: classes a model never predicts (read from
the stored confusion matrices), classes it almost never recalls, and a verdict whose seed
interval excludes 0 while the interval with the test set's own sampling reaches it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cce_bench.report._families import AnalysisPlan, confirmatory, metric_label
from cce_bench.report._results import StudyResults, completed
from cce_bench.report._tables import metric_scale

#: Below this mean recall (over seeds) a class counts as barely recognised: a 7-class model
#: that recalls 5% of a class is closer to never predicting it than to chance (14%).
LOW_RECALL = 0.05


def bottom_line_section(
    results: StudyResults, plan: AnalysisPlan, comparisons: pd.DataFrame
) -> str:
    """``## Bottom line``: per backbone, absolute levels, chance, verdicts and their caveats."""
    lines = ["## Bottom line", ""]
    family = confirmatory(comparisons) if not comparisons.empty else comparisons
    for backbone in results.backbones:
        lines.append(f"- {_backbone_line(results, plan, family, backbone)}")
    return "\n".join(lines)


def _backbone_line(
    results: StudyResults, plan: AnalysisPlan, family: pd.DataFrame, backbone: str
) -> str:
    labels = results.arm_labels
    metric = plan.primary_metric
    scale, unit = metric_scale(metric)
    done = completed(results.runs)
    done = done[done["backbone"] == backbone]
    levels = []
    for arm in results.arms:
        values = done.loc[done["arm"] == arm, metric] if metric in done else pd.Series([])
        mean = float(np.nanmean(values)) if len(values) else math.nan
        level = "no completed run" if math.isnan(mean) else f"{mean * scale:.1f}{unit}"
        levels.append(f"{labels[arm]} {level}")
    matrices = _confusion_matrices(results, backbone)
    present = _classes_present(matrices)
    chance = f"chance (1/C) {scale / present:.1f}{unit}" if present else "chance unknown"
    text = f"**{backbone}**: {metric_label(metric).lower()} {', '.join(levels)}; {chance}."
    verdicts = [
        f"{labels[row.arm]} vs {labels[row.baseline]}: {row.verdict} "
        f"({row.mean_diff * scale:+.2f}{' pp' if unit == '%' else ''})"
        for row in family[family["backbone"] == backbone].itertuples()
    ]
    if verdicts:
        text += " " + "; ".join(verdicts) + "."
    caveats = _caveats(results, family, backbone, matrices)
    return text + (" Caveats: " + "; ".join(caveats) + "." if caveats else "")


def _confusion_matrices(results: StudyResults, backbone: str) -> dict[str, list[np.ndarray]]:
    """Per arm, each completed seed's test confusion matrix (rows true, columns predicted)."""
    found: dict[str, list[np.ndarray]] = {}
    for row in completed(results.runs).itertuples():
        if row.backbone != backbone:
            continue
        record = results.latest_record(row.backbone, row.arm, row.seed)
        matrix = (record.get("metrics") or {}).get("confusion_matrix") if record else None
        if matrix:
            found.setdefault(row.arm, []).append(np.asarray(matrix, dtype=float))
    return found


def _classes_present(matrices: dict[str, list[np.ndarray]]) -> int:
    """How many classes have test images: C in the chance level of a mean of recalls."""
    for stack in matrices.values():
        return int((stack[0].sum(axis=1) > 0).sum())
    return 0


def never_predicted(stack: Sequence[np.ndarray]) -> list[int]:
    """Classes with test images that no seed's model ever predicted (an all-zero column)."""
    present = stack[0].sum(axis=1) > 0
    columns = np.sum([matrix.sum(axis=0) for matrix in stack], axis=0)
    return [int(c) for c in np.flatnonzero(present & (columns == 0))]


def low_recall(stack: Sequence[np.ndarray], below: float = LOW_RECALL) -> list[tuple[int, float]]:
    """(class, mean recall over seeds) of classes predicted at times, recalled below ``below``."""
    recalls = []
    for matrix in stack:
        totals = matrix.sum(axis=1)
        recalls.append(
            np.divide(np.diag(matrix), totals, out=np.full(len(totals), np.nan), where=totals > 0)
        )
    mean = np.nanmean(recalls, axis=0) if recalls else np.array([])
    never = set(never_predicted(stack))
    return [
        (int(c), float(mean[c])) for c in range(mean.size) if mean[c] < below and c not in never
    ]


def _caveats(
    results: StudyResults,
    family: pd.DataFrame,
    backbone: str,
    matrices: dict[str, list[np.ndarray]],
) -> list[str]:
    names = [name.upper() for name in results.class_names]
    labels = results.arm_labels
    caveats = []
    never = {arm: set(never_predicted(stack)) for arm, stack in matrices.items()}
    everywhere = set.intersection(*never.values()) if never else set()
    if everywhere:
        classes = ", ".join(names[c] for c in sorted(everywhere))
        caveats.append(f"{classes} never predicted by any arm")
    some = sorted(set().union(*never.values()) - everywhere) if never else []
    for c in some:
        arms = [labels[arm] for arm in results.arms if c in never.get(arm, set())]
        caveats.append(f"{names[c]} never predicted under {', '.join(arms)}")
    for arm in results.arms:
        weak = low_recall(matrices[arm]) if arm in matrices else []
        if weak:
            shown = ", ".join(f"{names[c]} {recall * 100:.0f}%" for c, recall in weak)
            caveats.append(f"recall under {labels[arm]}: {shown}")
    for row in family[family["backbone"] == backbone].itertuples():
        seed_excludes = row.ci_low > 0 or row.ci_high < 0
        combined = (row.combined_ci_low, row.combined_ci_high)
        if seed_excludes and all(map(math.isfinite, combined)) and combined[0] <= 0 <= combined[1]:
            caveats.append(
                f"{labels[row.arm]} vs {labels[row.baseline]}: the interval reaches 0 once "
                "test-set sampling is added (the verdict is about this test set)"
            )
        decided = str(getattr(row, "verdict", "inconclusive")) != "inconclusive"
        reachable = getattr(row, "sign_flip_reachable", math.nan)
        if decided and reachable in (False, 0.0):  # NaN: not a confirmatory row
            caveats.append(
                f"{labels[row.arm]} vs {labels[row.baseline]}: rests on normality (with "
                f"{int(row.n)} seeds no distribution-free test could reach the family's level)"
            )
    return caveats
