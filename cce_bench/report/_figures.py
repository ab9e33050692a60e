"""The report's figures: paired seed plots, mean confusion matrices, optimisation histories.

Every figure is drawn on a bare :class:`matplotlib.figure.Figure` (Agg, no pyplot state), under
a fixed rc context, and saved with ``metadata={"Software": None}`` so that the PNG holds no
version string: the same inputs give byte-identical files, which is what lets a test compare two
rebuilds of a report. Sizes are chosen so that 100 dpi stays legible (about 10 pt text on panels
of 3.6 x 3 inches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.lines
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

#: 100 dpi keeps each PNG small (tens of kB) while 10 pt text stays readable on screen.
DPI = 100

#: A fixed style, so that a user's matplotlibrc cannot change the bytes of a rebuilt figure.
_STYLE = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 12,
    "axes.grid": False,
    "svg.hashsalt": "cce-bench",
}


def _fixed_margins(
    figure: Figure, *, right: float = 0.2, bottom: float = 0.5, wspace: float = 0.35
) -> None:
    """Margins in inches (room for labels, the title and a side or bottom legend).

    Panels have a fixed size, so fixed margins fit every study; ``tight_layout`` would find
    the same ones by drawing each figure twice, which measured about a quarter of build time.
    """
    width, height = figure.get_size_inches()
    figure.subplots_adjust(
        left=0.75 / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - 0.6 / height,
        wspace=wspace,
        hspace=0.45,
    )


def save_figure(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as a reproducible PNG (no software or date metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def paired_seed_plot(
    values: pd.DataFrame,
    *,
    metric_label: str,
    scale: float,
    unit: str,
    baseline: str,
    arms: Sequence[str],
    backbones: Sequence[str],
    arm_labels: Mapping[str, str],
    path: Path,
    higher_is_better: bool = True,
) -> Path:
    """One slope line per seed from the baseline arm to each other arm, one panel per pair.

    ``values`` has columns ``backbone``, ``arm``, ``seed`` and ``value`` (completed runs only).
    Rows of panels are backbones and columns are comparisons (baseline vs each other arm), so a
    reader sees at a glance whether most seeds move the same way: the paired design's point.
    Only seeds where both arms completed are drawn, as in the tests.
    """
    others = [arm for arm in arms if arm != baseline]
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(3.6 * max(len(others), 1) + 1.2, 3.0 * len(backbones) + 0.6))
        axes = figure.subplots(len(backbones), max(len(others), 1), squeeze=False)
        seeds = sorted(values["seed"].unique()) if len(values) else []
        colours = {seed: f"C{i % 10}" for i, seed in enumerate(seeds)}
        for row, backbone in enumerate(backbones):
            for col, arm in enumerate(others):
                axis = axes[row][col]
                _draw_slopes(axis, values, backbone, (baseline, arm), colours, scale, unit)
                axis.set_xticks([0, 1], [arm_labels[baseline], arm_labels[arm]])
                axis.set_ylabel(f"{metric_label} ({unit})" if unit else metric_label)
        handles = [
            matplotlib.lines.Line2D([], [], color=colours[seed], marker="o", label=f"seed {seed}")
            for seed in seeds
        ]
        handles.append(matplotlib.lines.Line2D([], [], color="black", ls="--", label="mean"))
        direction = "higher" if higher_is_better else "lower"
        figure.suptitle(
            f"{metric_label} per seed, baseline {arm_labels[baseline]} ({direction} is better)"
        )
        figure.legend(handles=handles, loc="center right", frameon=False)
        _fixed_margins(figure, right=1.2)
        return save_figure(figure, path)


def _draw_slopes(axis, values, backbone, arms, colours, scale, unit) -> None:
    """Draw one panel of :func:`paired_seed_plot`; its title carries the mean difference."""
    baseline, arm = arms
    subset = values[values["backbone"] == backbone]
    pivot = subset.pivot_table(index="seed", columns="arm", values="value", aggfunc="first")
    if baseline not in pivot or arm not in pivot:
        axis.text(0.5, 0.5, "no paired seeds", ha="center", va="center", transform=axis.transAxes)
        axis.set_title(backbone)
        return
    paired = pivot[[baseline, arm]].dropna() * scale
    for seed, (a, b) in paired.iterrows():
        axis.plot([0, 1], [a, b], color=colours[seed], marker="o", linewidth=1.5)
    if len(paired):
        diff = float((paired[arm] - paired[baseline]).mean())
        axis.plot([0, 1], paired.mean().to_numpy(), color="black", linestyle="--", linewidth=2)
        shown = f"{diff:+.2f} pp" if unit == "%" else f"{diff:+.3f}"
        axis.set_title(f"{backbone}: Δ {shown}, n = {len(paired)}")
    else:
        axis.set_title(f"{backbone} (no paired seeds)")
    axis.set_xlim(-0.3, 1.3)


def confusion_matrix_plot(
    matrices: Mapping[tuple[str, str], np.ndarray],
    *,
    class_names: Sequence[str],
    backbones: Sequence[str],
    arms: Sequence[str],
    arm_labels: Mapping[str, str],
    path: Path,
) -> Path:
    """Mean row-normalised confusion matrix per (backbone, arm), in percent of each true class.

    Row normalisation makes the diagonal the per-class recall, so the paper's confused pairs
    (NV/MEL, AKIEC/BCC, BKL/MEL) read directly as off-diagonal shares whatever the class sizes.
    """
    with matplotlib.rc_context(_STYLE):
        size = 0.45 * len(class_names) + 1.4
        figure = Figure(
            figsize=(size * len(arms) + 1.2, size * len(backbones) + 0.6), layout="constrained"
        )
        axes = figure.subplots(len(backbones), len(arms), squeeze=False)
        image = None
        for row, backbone in enumerate(backbones):
            for col, arm in enumerate(arms):
                axis = axes[row][col]
                matrix = matrices.get((backbone, arm))
                axis.set_title(f"{backbone} · {arm_labels[arm]}")
                if matrix is None:
                    axis.text(0.5, 0.5, "no completed run", ha="center", va="center")
                    axis.set_axis_off()
                    continue
                image = axis.imshow(matrix * 100, cmap="Blues", vmin=0, vmax=100)
                _annotate_cells(axis, matrix)
                ticks = range(len(class_names))
                axis.set_xticks(ticks, class_names, rotation=45, ha="right")
                axis.set_yticks(ticks, class_names)
                if row == len(backbones) - 1:
                    axis.set_xlabel("predicted class")
                if col == 0:
                    axis.set_ylabel("true class")
        figure.suptitle("Mean confusion matrices over seeds (% of each true class)")
        if image is not None:
            figure.colorbar(image, ax=axes, shrink=0.6, label="% of true class")
        return save_figure(figure, path)


def _annotate_cells(axis, matrix: np.ndarray) -> None:
    """Write each cell's percentage, white on dark cells so it stays readable."""
    for (row, col), share in np.ndenumerate(matrix):
        colour = "white" if share > 0.55 else "black"
        axis.text(col, row, f"{share * 100:.0f}", ha="center", va="center", color=colour, size=8)


def optimisation_history_plot(
    histories: Mapping[tuple[str, str], pd.DataFrame],
    *,
    metric_label: str,
    scale: float,
    unit: str,
    backbones: Sequence[str],
    arms: Sequence[str],
    arm_labels: Mapping[str, str],
    path: Path,
) -> Path:
    """Per arm: each trial's validation value and the running best (Optuna's history plot).

    ``histories`` maps (backbone, arm) to a frame with columns ``number``, ``value``, ``state``
    (``COMPLETE`` or ``PRUNED``, the latter at its last reported value) and ``best_so_far``
    (the running best of the complete trials in the study's direction). Drawn here
    rather than with ``optuna.visualization.matplotlib`` because that one needs pyplot's global
    state and one figure per study, while the report wants all arms side by side.
    """
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(3.6 * len(arms) + 0.4, 3.0 * len(backbones) + 0.6))
        axes = figure.subplots(len(backbones), len(arms), squeeze=False, sharey=True)
        for row, backbone in enumerate(backbones):
            for col, arm in enumerate(arms):
                axis = axes[row][col]
                axis.set_title(f"{backbone} · {arm_labels[arm]}")
                history = histories.get((backbone, arm))
                if history is None or history.empty:
                    axis.text(0.5, 0.5, "no tuning data", ha="center", va="center")
                    continue
                _draw_history(axis, history, scale)
                axis.set_xlabel("trial")
                axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
                if col == 0:
                    axis.set_ylabel(
                        f"validation {metric_label.lower()}" + (f" ({unit})" * bool(unit))
                    )
        handles = [
            matplotlib.lines.Line2D([], [], color="C0", marker="o", ls="", label="complete"),
            matplotlib.lines.Line2D([], [], color="0.5", marker="x", ls="", label="pruned"),
            matplotlib.lines.Line2D([], [], color="C1", label="running best"),
        ]
        figure.suptitle("Optimisation history per arm")
        figure.legend(handles=handles, loc="lower center", ncol=3, frameon=False)
        _fixed_margins(figure, bottom=0.9, wspace=0.12)  # panels share the y axis
        return save_figure(figure, path)


def _draw_history(axis, history: pd.DataFrame, scale: float) -> None:
    """Complete trials as dots, pruned ones as grey crosses, and the running best as a step."""
    complete = history[history["state"] == "COMPLETE"]
    pruned = history[history["state"] == "PRUNED"]
    axis.plot(complete["number"], complete["value"] * scale, "o", color="C0")
    axis.plot(pruned["number"], pruned["value"] * scale, "x", color="0.5")
    if len(complete):
        # Extend the running best to the last trial so that late pruned trials sit under it.
        numbers = [*complete["number"], history["number"].max()]
        best = [*complete["best_so_far"], complete["best_so_far"].iloc[-1]]
        axis.step(numbers, [value * scale for value in best], where="post", color="C1")
