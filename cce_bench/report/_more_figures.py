"""Figures that explain a verdict: the forest of confirmatory differences, learning curves, and
per-class recall differences.

The forest shows what the Answer's sentences say, both intervals against the ±margin band, so a
reader sees at once whether test-set sampling swallows a difference. The learning curves show
whether evaluation runs were still improving when training stopped: with few epochs,
under-training is the main caveat, and the dashboard shows only the tuning trials. The recall
differences show which classes move a balanced accuracy difference. All three follow
:mod:`cce_bench.report._figures`'s rules: a bare Figure under a fixed style, reproducible PNGs.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.ticker
import pandas as pd
from matplotlib.figure import Figure

from cce_bench.report._families import (
    RECALL_PREFIX,
    AnalysisPlan,
    confirmatory,
    metric_label,
)
from cce_bench.report._figures import _STYLE, save_figure
from cce_bench.report._results import StudyResults, completed
from cce_bench.report._tables import metric_scale


def forest_plot(
    comparisons: pd.DataFrame, plan: AnalysisPlan, arm_labels: dict[str, str], path: Path
) -> Path:
    """One row per confirmatory comparison: mean difference, the seed interval (thick), the
    interval with test-set sampling (thin), and the ±margin band of "equivalent"."""
    family = confirmatory(comparisons) if not comparisons.empty else comparisons
    scale, unit = metric_scale(plan.primary_metric)
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(8.0, 1.6 + 0.5 * max(len(family), 1)))
        axis = figure.subplots()
        axis.axvspan(
            -plan.margin * scale,
            plan.margin * scale,
            color="C2",
            alpha=0.15,
            label=f"±margin ({plan.margin * scale:g}{' pp' if unit == '%' else ''})",
        )
        axis.axvline(0.0, color="grey", linewidth=0.8)
        names = []
        for y, row in enumerate(family.itertuples()):
            names.append(f"{row.backbone}: {arm_labels[row.arm]} vs {arm_labels[row.baseline]}")
            combined = (row.combined_ci_low * scale, row.combined_ci_high * scale)
            if all(map(math.isfinite, combined)):
                axis.plot(
                    combined,
                    [y, y],
                    color="C0",
                    linewidth=1.2,
                    label="interval, seeds + test set" if y == 0 else None,
                )
            axis.plot(
                (row.ci_low * scale, row.ci_high * scale),
                [y, y],
                color="C0",
                linewidth=4,
                solid_capstyle="butt",
                label="interval, seeds" if y == 0 else None,
            )
            axis.plot(
                [row.mean_diff * scale], [y], "o", color="black", label="mean Δ" if y == 0 else None
            )
        axis.set_yticks(range(len(names)), names)
        axis.set_ylim(len(names) - 0.5, -0.5)
        axis.set_xlabel(
            f"Δ {metric_label(plan.primary_metric).lower()}"
            f"{' (pp)' if unit == '%' else ''}, simultaneous {plan.level:.2%}"
        )
        axis.legend(
            frameon=False, loc="lower center", bbox_to_anchor=(0.35, 1.0), ncol=2, fontsize=8
        )
        figure.subplots_adjust(
            left=0.38,
            right=0.97,
            bottom=0.7 / figure.get_size_inches()[1],
            top=1 - 0.7 / figure.get_size_inches()[1],
        )
        return save_figure(figure, path)


def epoch_frame(results: StudyResults, metric: str) -> pd.DataFrame:
    """Long frame (backbone, arm, seed, epoch, train_loss, value) from the evaluation runs'
    per-epoch history; ``value`` is ``metric`` on the part scored each epoch (the test split)."""
    rows = []
    for run in completed(results.runs).itertuples():
        record = results.latest_record(run.backbone, run.arm, run.seed) or {}
        for epoch in record.get("history") or []:
            rows.append(
                {
                    "backbone": run.backbone,
                    "arm": run.arm,
                    "seed": run.seed,
                    "epoch": int(epoch["epoch"]),
                    "train_loss": epoch.get("train_loss", math.nan),
                    "value": epoch.get(metric, math.nan),
                }
            )
    columns = ["backbone", "arm", "seed", "epoch", "train_loss", "value"]
    return pd.DataFrame(rows, columns=columns)


def learning_curves_plot(results: StudyResults, metric: str, path: Path) -> Path:
    """Per backbone: training loss and test ``metric`` per epoch, each arm's mean over seeds with
    its min-max band."""
    frame = epoch_frame(results, metric)
    scale, unit = metric_scale(metric)
    backbones = results.backbones
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(8.0, 2.8 * len(backbones) + 0.6))
        axes = figure.subplots(len(backbones), 2, squeeze=False)
        for row, backbone in enumerate(backbones):
            for column, (field, label, factor) in enumerate(
                (
                    ("train_loss", "training loss", 1.0),
                    (
                        "value",
                        f"test {metric_label(metric).lower()}{f' ({unit})' if unit else ''}",
                        scale,
                    ),
                )
            ):
                axis = axes[row][column]
                for index, arm in enumerate(results.arms):
                    part = frame[(frame["backbone"] == backbone) & (frame["arm"] == arm)]
                    if part.empty:
                        continue
                    by_epoch = part.groupby("epoch")[field].agg(["mean", "min", "max"])
                    epochs = by_epoch.index.to_numpy()
                    axis.plot(
                        epochs,
                        by_epoch["mean"] * factor,
                        marker="o",
                        color=f"C{index}",
                        label=results.arm_labels[arm],
                    )
                    axis.fill_between(
                        epochs,
                        by_epoch["min"] * factor,
                        by_epoch["max"] * factor,
                        color=f"C{index}",
                        alpha=0.2,
                    )
                axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
                axis.set_xlabel("epoch")
                axis.set_ylabel(label)
                axis.set_title(backbone)
            if frame.empty:
                axes[row][0].text(
                    0.5,
                    0.5,
                    "no per-epoch history in the run records",
                    transform=axes[row][0].transAxes,
                    ha="center",
                    color="C3",
                )
            else:
                axes[row][1].legend(frameon=False, fontsize=8)
        figure.suptitle("Evaluation runs: mean over seeds, band from min to max")
        figure.subplots_adjust(
            left=0.1,
            right=0.98,
            hspace=0.6,
            wspace=0.3,
            top=1 - 0.6 / figure.get_size_inches()[1],
            bottom=0.12,
        )
        return save_figure(figure, path)


def class_recall_plot(comparisons: pd.DataFrame, results: StudyResults, path: Path) -> Path:
    """Per backbone: each comparison's difference in per-class recall, with its exploratory
    intervals (seeds thick, seeds + test set thin)."""
    recalls = comparisons[comparisons["metric"].str.startswith(RECALL_PREFIX)]
    names = [name.upper() for name in results.class_names]
    arms = [arm for arm in results.arms if arm != results.baseline]
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(8.0, 0.4 * len(names) * len(results.backbones) + 1.5))
        axes = figure.subplots(len(results.backbones), 1, squeeze=False)
        for row, backbone in enumerate(results.backbones):
            axis = axes[row][0]
            axis.axvline(0.0, color="grey", linewidth=0.8)
            offset = 0.8 / max(len(arms), 1)
            for index, arm in enumerate(arms):
                part = recalls[(recalls["backbone"] == backbone) & (recalls["arm"] == arm)]
                labelled = False
                for y, name in enumerate(results.class_names):
                    match = part[part["metric"] == RECALL_PREFIX + name]
                    if match.empty or not math.isfinite(match["mean_diff"].iloc[0]):
                        continue
                    item = match.iloc[0]
                    at = y - 0.4 + offset * (index + 0.5)
                    label = f"{results.arm_labels[arm]} vs {results.arm_labels[results.baseline]}"
                    low, high = item["combined_ci_low"] * 100, item["combined_ci_high"] * 100
                    if math.isfinite(low) and math.isfinite(high):
                        axis.plot((low, high), (at, at), color=f"C{index + 1}", linewidth=1)
                    axis.plot(
                        (item["ci_low"] * 100, item["ci_high"] * 100),
                        (at, at),
                        color=f"C{index + 1}",
                        linewidth=4,
                        solid_capstyle="butt",
                    )
                    axis.plot(
                        [item["mean_diff"] * 100],
                        [at],
                        "o",
                        color=f"C{index + 1}",
                        markersize=5,
                        markerfacecolor="white",
                        zorder=3,
                        label=None if labelled else label,
                    )
                    labelled = True
            axis.set_yticks(range(len(names)), names)
            axis.set_ylim(len(names) - 0.5, -0.5)
            axis.set_title(backbone)
            axis.set_xlabel(
                "Δ recall (pp), 95% exploratory intervals: seeds (thick), seeds + test set (thin)"
            )
            if axis.get_legend_handles_labels()[1]:
                axis.legend(frameon=False, fontsize=8, loc="lower right")
        figure.suptitle("Per-class recall differences (exploratory)")
        figure.subplots_adjust(
            left=0.12,
            right=0.97,
            hspace=0.7,
            top=1 - 0.7 / figure.get_size_inches()[1],
            bottom=0.08,
        )
        return save_figure(figure, path)


def explanatory_figures(
    results: StudyResults, plan: AnalysisPlan, comparisons: pd.DataFrame, folder: Path
) -> list[Path]:
    """The three figures, under ``folder``; none when the study has a single arm."""
    if comparisons.empty:
        return []
    return [
        forest_plot(comparisons, plan, results.arm_labels, folder / "forest.png"),
        learning_curves_plot(results, plan.primary_metric, folder / "learning_curves.png"),
        class_recall_plot(comparisons, results, folder / "class_recall.png"),
    ]


__all__ = [
    "class_recall_plot",
    "epoch_frame",
    "explanatory_figures",
    "forest_plot",
    "learning_curves_plot",
]
