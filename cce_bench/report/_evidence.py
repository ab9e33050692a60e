"""The report's evidence: the answer, the significance table and the confused-pair tests.

Each section function returns markdown; the numbers come from :mod:`cce_bench.report._tables`
frames, never recomputed here. Formatting conventions, stated once in the report: differences
are in percentage points (pp) for ratio metrics and in absolute units for AUC; p-values below
0.001 are shown in scientific notation rather than rounded to zero.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cce_bench.metrics import METRIC_LABELS
from cce_bench.report._results import StudyResults, completed
from cce_bench.report._tables import (
    PAIR_METRICS,
    markdown_table,
    mean_sd,
    metric_scale,
    seed_pairing,
)


def fmt_p(p: float) -> str:
    """A p-value: 3 decimals, scientific below 0.001, "—" when it could not be computed."""
    if p is None or math.isnan(p):
        return "—"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def fmt_diff(value: float, metric: str, *, unit: bool = False) -> str:
    """A difference in pp (ratios) or absolute units (AUC), always signed; ``unit`` adds "pp"."""
    if math.isnan(value):
        return "—"
    scale = metric_scale(metric)[0]
    if scale == 1.0:
        return f"{value:+.3f}"
    return f"{value * scale:+.2f}" + (" pp" if unit else "")


def fmt_interval(low: float, high: float, metric: str) -> str:
    if math.isnan(low) or math.isnan(high):
        return "—"
    return f"[{fmt_diff(low, metric)}, {fmt_diff(high, metric)}]"


def fmt_effect(d_z: float) -> str:
    if math.isnan(d_z):
        return "—"
    return f"{d_z:+.2f}" if math.isfinite(d_z) else ("+inf" if d_z > 0 else "-inf")


def significance_display(frame: pd.DataFrame, arm_labels: dict[str, str]) -> pd.DataFrame:
    """The significance frame as shown: one row per comparison, formatted, † for n < 5."""
    rows = []
    for row in frame.itertuples():
        seeds_needed = row.seeds_for_80_power
        rows.append(
            {
                "Backbone": row.backbone,
                "Comparison": f"{arm_labels[row.arm]} vs {arm_labels[row.baseline]}",
                "Metric": METRIC_LABELS[row.metric],
                "n": f"{row.n}{' †' if row.underpowered else ''}",
                "Δ (pp)": fmt_diff(row.mean_diff, row.metric),
                "95% t CI": fmt_interval(row.t_ci_low, row.t_ci_high, row.metric),
                "p (t)": fmt_p(row.t_pvalue),
                "p (Wilcoxon)": fmt_p(row.wilcoxon_pvalue),
                "p (sign flip)": fmt_p(row.sign_flip_p),
                "p (Holm)": fmt_p(row.holm_pvalue),
                "d_z": fmt_effect(row.d_z),
                "Seeds for 80% power": "—" if _missing(seeds_needed) else str(int(seeds_needed)),
                "Verdict": row.verdict,
            }
        )
    return pd.DataFrame(rows)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def answer_section(results: StudyResults, significance: pd.DataFrame) -> str:
    """One line per backbone and comparison on the primary metric, then the verdict counts."""
    metric = results.spec.tune.metric
    label = METRIC_LABELS[metric].lower()
    lines = [
        "## Answer",
        "",
        f"Primary metric: {label} on the test split (the study tunes on it). Verdicts at "
        f"α = 0.05 after {_holm_family(significance)}.",
        "",
    ]
    labels = results.arm_labels
    if significance.empty:
        lines.append("- No comparison: the study has a single arm.")
    for (backbone, arm), group in significance.groupby(["backbone", "arm"], sort=False):
        row = group[group["metric"] == metric].iloc[0]
        counts = group["verdict"].value_counts()
        tally = ", ".join(f"{n} × {v}" for v, n in sorted(counts.items()))
        lines.append(
            f"- **{backbone}, {labels[arm]} vs {labels[results.baseline]}**: {row.verdict}. "
            f"Δ {label} = {fmt_diff(row.mean_diff, metric, unit=True)} (95% t CI "
            f"{fmt_interval(row.t_ci_low, row.t_ci_high, metric)}), Holm p = "
            f"{fmt_p(row.holm_pvalue)}, n = {row.n} seeds"
            f"{' (underpowered)' if row.underpowered else ''}. All {len(group)} metrics: {tally}."
        )
    return "\n".join(lines)


def _holm_family(significance: pd.DataFrame) -> str:
    """How many comparisons Holm adjusted over: those with a p-value (``stats.holm`` leaves a
    NaN p-value out of the family: no paired seed, or differences that never vary)."""
    tested = int(np.isfinite(significance["t_pvalue"].to_numpy(float)).sum())
    family = f"Holm over the {tested} comparisons in this report that have a p-value"
    untested = len(significance) - tested
    if untested:
        family += f' ({untested} of {len(significance)} have none and read "no evidence")'
    return family


def significance_section(results: StudyResults, significance: pd.DataFrame) -> str:
    """The full significance table, with how seeds were paired and which test was used."""
    lines = [
        "## Significance",
        "",
        *_pairing_notes(results),
        "",
        f"The split is fixed (split_seed {results.spec.data.split_seed}) "
        "and only the training seed varies, so p (t) is the plain paired t-test.",
        "",
        markdown_table(significance_display(significance, results.arm_labels)),
        "",
        "Δ = mean over paired seeds of (other arm − baseline), in percentage points (macro AUC "
        "in absolute units); for the pair errors lower is better. p (Holm) adjusts p (t) over "
        "the whole table; the verdict reads it at α = 0.05. d_z = mean(Δ)/sd(Δ). Seeds for 80% "
        "power: paired t-test at α = 0.05 and the observed d_z. † fewer than 5 paired seeds: "
        "underpowered, read with care. Wilcoxon is exact for small n and drops zero differences. "
        "Sign flip: exact paired permutation test over all 2^n sign patterns; it is p (t) when "
        "the differences have no spread.",
    ]
    return "\n".join(lines)


def _pairing_notes(results: StudyResults) -> list[str]:
    """Per comparison: how many seeds paired and which were dropped, with the reason."""
    notes = ["Pairing is by seed; a seed counts only when both arms completed it.", ""]
    labels = results.arm_labels
    for backbone in results.backbones:
        for arm in results.arms[1:]:
            paired, dropped = seed_pairing(
                results.runs, backbone, results.baseline, arm, results.seeds
            )
            text = f"- {backbone}, {labels[arm]} vs {labels[results.baseline]}: "
            text += f"{len(paired)} paired seeds"
            if dropped:
                text += f"; dropped {len(dropped)}: " + "; ".join(dropped)
            notes.append(text)
    return notes


def confused_pairs_section(
    results: StudyResults, significance: pd.DataFrame, mcnemar: pd.DataFrame
) -> str:
    """The paper's central claim tested: pair error rates, their paired tests, and McNemar."""
    rows = []
    done = completed(results.runs)
    for backbone in results.backbones:
        for arm in results.arms:
            group = done[(done["backbone"] == backbone) & (done["arm"] == arm)]
            row = {"Backbone": backbone, "Arm": results.arm_labels[arm]}
            for metric in PAIR_METRICS:
                row[METRIC_LABELS[metric] + " (%)"] = mean_sd(group.get(metric, []))
            rows.append(row)
    paired = significance[significance["metric"].isin(PAIR_METRICS)]
    lines = [
        "## Confused pairs",
        "",
        "Share of a pair's test images predicted as the other class of the pair (paper section "
        "1: CCE is meant to lower exactly these), mean ± sd over completed seeds:",
        "",
        markdown_table(pd.DataFrame(rows)),
        "",
        "Paired tests (rows of the significance table; Holm over the whole table):",
        "",
        markdown_table(significance_display(paired, results.arm_labels)),
        "",
        "Exact McNemar test per seed on the per-image predictions (all test images: right or "
        "wrong; a pair's images: taken for the other class or not), per-seed p-values combined "
        "with Fisher's method, over the paired seeds whose predictions of both arms could be "
        "read. The seeds share one test set, so the combined p is optimistic; the paired tests "
        "above remain the primary evidence.",
        "",
        markdown_table(_mcnemar_display(mcnemar, results.arm_labels)),
    ]
    return "\n".join(lines)


def _mcnemar_display(mcnemar: pd.DataFrame, arm_labels: dict[str, str]) -> pd.DataFrame:
    rows = [
        {
            "Backbone": row.backbone,
            "Comparison": f"{arm_labels[row.arm]} vs {arm_labels[row.baseline]}",
            "Images": row.scope,
            "Seeds": row.seeds,
            "Per-seed p": ", ".join(fmt_p(p) for p in row.seed_pvalues) or "—",
            "Combined p (Fisher)": fmt_p(row.combined_pvalue),
        }
        for row in mcnemar.itertuples()
    ]
    return pd.DataFrame(rows)
