"""The report's view of CCE's mechanism: the confused set H in training, blind spots on test.

Shown in every report with a CCE-family arm (``cce``, ``cce_tau``). The test-set measures come
from each run's stored probabilities (``cce_bench.mechanism.prediction_mechanism``), so any run
with predictions has them; the training-time ones come from the per-epoch history, which runs
recorded before it existed lack: those cells say "not recorded" rather than vanish, and the
section says how many runs lack them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cce_bench.errors import ResultsError
from cce_bench.mechanism import CCE_FAMILY, confusion_tau, prediction_mechanism
from cce_bench.report._figures import _STYLE, _fixed_margins, save_figure
from cce_bench.report._results import StudyResults

#: What each column of the table is, in the order shown.
COLUMNS = {
    "tau": "tau",
    "train_h_size": "size of H in training (last epoch)",
    "confusion_set_size": "size of H on test",
    "blind_spot_rate": "blind spots on test",
    "logit_spread": "logit spread (sd)",
    "ece": "ECE",
}
NOT_RECORDED = "not recorded"
FIGURE_NAME = "cce_mechanism.png"


def has_cce_arm(results: StudyResults) -> bool:
    """Whether the study compares a loss that trains on a confused set."""
    return any(arm in CCE_FAMILY for arm in results.arms)


def mechanism_runs(results: StudyResults) -> pd.DataFrame:
    """One row per completed run with stored predictions: test-set measures, training ones.

    ``train_h_size`` and ``train_in_h_<class>`` are the last epoch's (NaN when the run's
    history lacks them); ``train_curve`` is the per-epoch mean |H| (empty when not recorded).
    """
    rows = []
    for (backbone, arm, seed), record in sorted(results.latest.items()):
        if record.get("outcome") != "completed":
            continue
        try:
            _, y_true, proba = results.store.load_predictions(record)
        except ResultsError:
            continue
        tau = confusion_tau(arm, record.get("params"))
        row: dict[str, Any] = {"backbone": backbone, "arm": arm, "seed": seed, "tau": tau}
        row.update(prediction_mechanism(y_true, proba, tau, results.class_names))
        row.update(_training_side(record.get("history") or [], results.class_names))
        rows.append(row)
    return pd.DataFrame(rows)


def _training_side(history: list[dict[str, Any]], class_names) -> dict[str, Any]:
    curve = [float(e["confusion_set_size"]) for e in history if "confusion_set_size" in e]
    last = history[-1] if history and "confusion_set_size" in history[-1] else {}
    out: dict[str, Any] = {"train_h_size": last.get("confusion_set_size", math.nan)}
    for name in class_names:
        out[f"train_in_h_{name}"] = last.get(f"in_confusion_set_{name}", math.nan)
    out["train_curve"] = curve
    return out


def mechanism_table(runs: pd.DataFrame, results: StudyResults) -> pd.DataFrame:
    """Per backbone and arm (the study's order), the mean over seeds of each measure, and how
    many seeds had predictions and how many a training-time record."""
    grouped = runs.groupby(["backbone", "arm"])
    table = grouped[list(COLUMNS)].mean()
    table["seeds"] = grouped.size()
    table["train_recorded"] = grouped["train_h_size"].count()
    order = [(b, a) for b in results.backbones for a in results.arms if (b, a) in table.index]
    return table.loc[order].reset_index()


def mechanism_section(results: StudyResults, runs: pd.DataFrame) -> str:
    """The markdown: what H is, in plain words, then the table, then what is missing."""
    if runs.empty:
        return ""
    table = mechanism_table(runs, results)
    c = len(results.class_names)
    lines = [
        "## How CCE trains (the mechanism, exploratory)",
        "",
        f"CCE does not train an image against all {c - 1} wrong classes. It picks the **confused "
        "set H**: the wrong classes whose score is above the mean score of the wrong classes "
        "(CCE-tau: tau standard deviations above it). Only the true class and H get a gradient. "
        "A wrong class outside H is never pushed down.",
        "",
        "- **Size of H**: how many wrong classes are in H per image, in training (last epoch) "
        "and on the test set.",
        "- **Blind spots**: the share of test images where a wrong class scores above the true "
        "class but lies outside H. The loss cannot correct these mistakes.",
        "- **Logit spread**: the standard deviation of an image's scores across classes, "
        "averaged over test images. Small means compressed, hesitant scores.",
        "- **ECE**: expected calibration error, the gap between confidence and accuracy "
        "(15 bins). 0 is calibrated.",
        "",
        "CE trains on every wrong class. Its rows apply the paper's rule (tau = 0) to CE's scores, "
        "so the two losses can be compared. Means over seeds; test-set values come from each "
        "run's stored predictions. Per-class values are in `figures/cce_mechanism.png`.",
        "",
        "| backbone | arm | seeds | " + " | ".join(COLUMNS.values()) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for row in table.itertuples(index=False):
        label = results.arm_labels.get(row.arm, row.arm)
        cells = [_cell(key, getattr(row, key), row.train_recorded) for key in COLUMNS]
        lines.append(f"| {row.backbone} | {label} | {row.seeds} | " + " | ".join(cells) + " |")
    missing = int((table["seeds"] - table["train_recorded"]).sum())
    if missing:
        lines += [
            "",
            f"{missing} of {int(table['seeds'].sum())} runs were recorded before cce-bench kept "
            f'H during training, so their training column says "{NOT_RECORDED}"; their test-set '
            "columns are computed from their stored predictions.",
        ]
    return "\n".join(lines)


def _cell(key: str, value: float, recorded: int) -> str:
    if key == "train_h_size" and recorded == 0:
        return NOT_RECORDED
    if key == "tau":
        return f"{value:.2f}"
    if key in ("blind_spot_rate", "ece"):
        return f"{100 * value:.1f}%" if key == "blind_spot_rate" else f"{value:.3f}"
    return f"{value:.2f}"


def mechanism_plot(results: StudyResults, runs: pd.DataFrame, path: Path) -> Path:
    """Per backbone: mean |H| per epoch, per-class membership of H, per-class blind spots."""
    names = list(results.class_names)
    arms = [arm for arm in results.arms if arm in set(runs["arm"])]
    backbones = [b for b in results.backbones if b in set(runs["backbone"])]
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(3.6 * 3 + 0.4, 3.0 * len(backbones) + 0.9))
        axes = figure.subplots(len(backbones), 3, squeeze=False)
        colours = matplotlib.colormaps["tab10"]
        for row, backbone in enumerate(backbones):
            here = runs[runs["backbone"] == backbone]
            for index, arm in enumerate(arms):
                mine = here[here["arm"] == arm]
                label = results.arm_labels.get(arm, arm)
                _draw_arm(axes[row], mine, names, index, len(arms), colours(index), label)
            _label_panels(axes[row], backbone, names)
        handles, labels = axes[0][0].get_legend_handles_labels()
        if not handles:
            handles, labels = axes[0][2].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=len(arms), frameon=False)
        figure.suptitle("The confused set H: in training and its blind spots on the test set")
        _fixed_margins(figure, bottom=0.9, wspace=0.4)
        return save_figure(figure, path)


def _draw_arm(axes, runs: pd.DataFrame, names, index: int, n_arms: int, colour, label) -> None:
    curves = [curve for curve in runs["train_curve"] if curve]
    if curves:
        length = min(len(curve) for curve in curves)
        mean = np.mean([curve[:length] for curve in curves], axis=0)
        axes[0].plot(np.arange(1, length + 1), mean, marker="o", color=colour, label=label)
    width = 0.8 / n_arms
    x = np.arange(len(names)) + (index - (n_arms - 1) / 2) * width
    in_h = runs[[f"train_in_h_{n}" for n in names]].mean().to_numpy()
    if np.isfinite(in_h).any():
        axes[1].bar(x, 100 * in_h, width, color=colour, label=label)
    blind = runs[[f"blind_spot_{n}" for n in names]].mean().to_numpy()
    axes[2].bar(x, 100 * blind, width, color=colour, label=label)


def _label_panels(axes, backbone: str, names) -> None:
    axes[0].set(title=f"{backbone}: mean |H| per epoch", xlabel="epoch", ylabel="wrong classes")
    axes[1].set(title="in H when a negative (last epoch)", ylabel="% of its negatives")
    axes[2].set(title="blind spots on test, by true class", ylabel="% of the class's images")
    for axis in axes[1:]:
        axis.set_xticks(np.arange(len(names)), [n.upper() for n in names], rotation=45)
    if axes[0].has_data():
        axes[0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for axis in axes[:2]:
        if not axis.has_data():
            axis.text(0.5, 0.5, NOT_RECORDED, ha="center", va="center", transform=axis.transAxes)
