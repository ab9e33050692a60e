"""Two finished studies that differ in their protocol (e.g. the data split), side by side.

``compare_studies(a, b)`` reads two results folders and writes one markdown page: each arm's
absolute level in both, each study's own verdicts, and per metric the difference between the
protocols with an interval. The two studies' runs are independent (other splits, other
images), so a difference between them is a two-sample one: Welch's t interval over seeds
(Welch 1947), which does not assume the two studies' seed variances are equal. The same holds
for the change of an arm's paired gap to the baseline (e.g. CCE - CE) from one protocol to the
other: the per-seed gaps of one study against those of the other.

The page is only meaningful when the protocols differ in what is being compared: two studies
that differ in more than ``name`` and ``data.split`` are refused, unless the caller names the
further fields that may differ (``allow_diff``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cce_bench.config import diff_studies
from cce_bench.errors import ResultsError
from cce_bench.report._families import metric_label
from cce_bench.report._format import fmt_diff, fmt_interval
from cce_bench.report._results import StudyResults, completed, load_results
from cce_bench.report._tables import markdown_table, mean_sd, metric_scale

#: Fields two compared studies may always differ in: their name and the protocol under study.
ALWAYS_ALLOWED: tuple[str, ...] = ("name", "data.split")
#: The interval's level (one comparison per row; the rows are descriptive, not a family).
LEVEL = 0.95
#: Columns of a study's confirmatory table that the page repeats (those present are kept).
VERDICT_COLUMNS: tuple[str, ...] = ("Backbone", "Comparison", "Metric", "n", "Δ (pp)")


class StudiesDifferError(ResultsError):
    """Two studies given to compare differ in more than the fields allowed to differ."""


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> tuple:
    """(mean(b) - mean(a), low, high): Welch's t interval for two independent samples.

    NaN bounds when either side has fewer than two values or neither varies.
    """
    from scipy import stats as scipy_stats

    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
    if xa.size == 0 or xb.size == 0:
        return math.nan, math.nan, math.nan
    diff = float(xb.mean() - xa.mean())
    if xa.size < 2 or xb.size < 2:
        return diff, math.nan, math.nan
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (xa.size - 1) + vb**2 / (xb.size - 1))
    half = float(scipy_stats.t.isf((1 - level) / 2, df)) * se
    return diff, diff - half, diff + half


def check_comparable(a: StudyResults, b: StudyResults, allow_diff: Sequence[str] = ()) -> list:
    """The lines in which the two studies differ; raises when one is not allowed to."""
    lines = diff_studies(a.store.study_dict(), b.store.study_dict())
    allowed = set(ALWAYS_ALLOWED) | set(allow_diff)
    refused = [line for line in lines if line.split(":", 1)[0] not in allowed]
    if refused:
        fields = " ".join(f"--allow-diff {line.split(':', 1)[0]}" for line in refused)
        raise StudiesDifferError(
            f"{a.store.root} and {b.store.root} differ in more than the data split: "
            f"{'; '.join(refused)}. Compare studies that differ in their protocol only, or "
            f"name the fields that may differ: {fields}"
        )
    return lines


def compare_studies(a_dir: Path | str, b_dir: Path | str, *, allow_diff: Sequence[str] = ()) -> str:
    """The markdown page comparing two finished results folders (A first, then B)."""
    from cce_bench.report import significance_table

    a, b = load_results(a_dir), load_results(b_dir)
    differences = check_comparable(a, b, allow_diff)
    metrics = _metrics(a)
    lines = [
        f"# Protocols compared: `{a.name}` (A) and `{b.name}` (B)",
        "",
        f"- A: `{a.store.root.name}`, split `{a.spec.data.split}`",
        f"- B: `{b.store.root.name}`, split `{b.spec.data.split}`",
        "- They differ in: " + ("; ".join(f"`{line}`" for line in differences) or "nothing"),
        "",
        "The two studies' runs are independent, so each difference B − A is a two-sample one: "
        f"Welch's t interval over seeds at {LEVEL:.0%}, one row at a time (descriptive, not a "
        "family). Values are means ± sd over completed seeds (n).",
        "",
        "## Absolute levels per arm",
        "",
        markdown_table(_levels(a, b, metrics)),
        "",
        f"## Each arm against {a.arm_labels.get(a.baseline, a.baseline)}, in each protocol",
        "",
        "The paired gap (arm − baseline, per seed) in each study, and how it changes from A to B.",
        "",
        markdown_table(_gaps(a, b, metrics)),
    ]
    for label, results, folder in (("A", a, a_dir), ("B", b, b_dir)):
        lines += ["", f"## Verdicts of {label} (`{results.name}`, its own plan)", ""]
        lines.append(markdown_table(_verdicts(significance_table(folder))))
    return "\n".join(lines) + "\n"


def _metrics(results: StudyResults) -> list[str]:
    """The plan's primary and secondary metrics, then top-1 and the paper's ACC."""
    plan = results.spec.analysis
    wanted = [plan.primary_metric, *plan.secondary_metrics, "top1", "paper_accuracy"]
    return [m for m in dict.fromkeys(wanted) if m in results.runs]


def _values(results: StudyResults, backbone: str, arm: str, metric: str) -> pd.Series:
    done = completed(results.runs)
    rows = done[(done["backbone"] == backbone) & (done["arm"] == arm)]
    return rows.set_index("seed")[metric].dropna() if metric in rows else pd.Series(dtype=float)


def _pairs(a: StudyResults, b: StudyResults) -> list[tuple[str, str]]:
    backbones = list(dict.fromkeys([*a.backbones, *b.backbones]))
    arms = list(dict.fromkeys([*a.arms, *b.arms]))
    return [(backbone, arm) for backbone in backbones for arm in arms]


def _levels(a: StudyResults, b: StudyResults, metrics: list[str]) -> pd.DataFrame:
    rows = []
    for metric in metrics:
        scale = metric_scale(metric)[0]
        for backbone, arm in _pairs(a, b):
            va, vb = _values(a, backbone, arm, metric), _values(b, backbone, arm, metric)
            diff, low, high = welch_interval(va, vb)
            rows.append(_row(metric, backbone, a.arm_labels.get(arm, arm), va, vb, scale))
            rows[-1] |= _difference(diff, low, high, metric)
    return pd.DataFrame(rows)


def _gaps(a: StudyResults, b: StudyResults, metrics: list[str]) -> pd.DataFrame:
    rows = []
    baseline = a.baseline
    for metric in metrics:
        for backbone, arm in _pairs(a, b):
            if arm == baseline:
                continue
            ga, gb = (_gap(r, backbone, arm, baseline, metric) for r in (a, b))
            diff, low, high = welch_interval(ga, gb)
            label = f"{a.arm_labels.get(arm, arm)} − {a.arm_labels.get(baseline, baseline)}"
            rows.append(_row(metric, backbone, label, ga, gb, metric_scale(metric)[0]))
            rows[-1] |= _difference(diff, low, high, metric)
    return pd.DataFrame(rows)


def _gap(results: StudyResults, backbone: str, arm: str, baseline: str, metric: str) -> pd.Series:
    """Per paired seed, arm minus baseline (seeds that one of them lacks are left out)."""
    other, base = (_values(results, backbone, name, metric) for name in (arm, baseline))
    return (other - base).dropna()


def _difference(diff: float, low: float, high: float, metric: str) -> dict:
    return {"B − A": fmt_diff(diff, metric), "95% CI (Welch)": fmt_interval(low, high, metric)}


def _row(metric: str, backbone: str, label: str, va, vb, scale: float) -> dict:
    return {
        "Metric": metric_label(metric),
        "Backbone": backbone,
        "Arm": label,
        "A": f"{mean_sd(va, scale)} ({len(va)})",
        "B": f"{mean_sd(vb, scale)} ({len(vb)})",
    }


def _verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """A study's confirmatory table, reduced to what the page needs (its Answer's columns)."""
    if table.empty:
        return table
    keep = [c for c in table.columns if c in VERDICT_COLUMNS or c.endswith("CI, seeds")]
    keep += [c for c in table.columns if c in ("p (Holm)", "Verdict")]
    return table[keep]
