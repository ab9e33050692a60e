"""The report's numbers: per-arm summaries, paired seed values, McNemar over seeds.

Everything here takes and returns pandas frames (or plain dicts) so that the markdown, the CSV
exports and the CLI's rich table are three renderings of one computation. The frame ``runs``
has one row per (backbone, arm, seed), the latest record of that run, with its scalar metrics as
columns (see ``cce_bench.report._results.load_results``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from cce_bench import stats
from cce_bench.metrics import metric_scale
from cce_bench.report._results import completed

#: Table 1 of the paper, in its order: macro one-vs-rest ACC, sensitivity, precision, specificity.
PAPER_METRICS: tuple[str, ...] = (
    "paper_accuracy",
    "paper_sensitivity",
    "paper_precision",
    "paper_specificity",
)
PAPER_HEADERS: tuple[str, ...] = ("ACC", "Sensitivity", "Precision", "Specificity")

#: What a clinician reads; the issue's clinical table.
CLINICAL_METRICS: tuple[str, ...] = (
    "top1",
    "balanced_accuracy",
    "macro_f1",
    "melanoma_sensitivity",
    "macro_auc",
)

#: The paper's confused pairs (section 1, Fig. 1) as ``evaluate_predictions`` keys; lower is better.
PAIR_METRICS: tuple[str, ...] = ("pair_error_nv_mel", "pair_error_akiec_bcc", "pair_error_bkl_mel")

#: Every scalar metric the report compares (``cce_bench.report._families`` sorts them into the
#: confirmatory, exploratory and derived families).
REPORT_METRICS: tuple[str, ...] = PAPER_METRICS + CLINICAL_METRICS + PAIR_METRICS

#: Published Table 1 of the paper (HAM10000, percent), keyed by backbone alias and paper arm.
PAPER_TABLE_1: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "resnet50": {"ce": (96.59, 77.68, 83.63, 96.45), "cce": (97.20, 80.25, 85.69, 97.16)},
    "efficientnet_b4": {"ce": (97.55, 84.78, 88.09, 97.57), "cce": (97.86, 86.65, 88.85, 97.69)},
    "inception_v3": {"ce": (90.66, 53.36, 55.02, 93.73), "cce": (92.41, 50.41, 63.63, 92.96)},
    "densenet121": {"ce": (96.84, 78.49, 85.43, 96.76), "cce": (97.02, 82.62, 84.70, 97.11)},
}

PredictionLoader = Callable[[str, str, int], tuple[np.ndarray, np.ndarray, np.ndarray] | None]


def mean_sd(values: Sequence[float] | pd.Series, scale: float = 100.0, digits: int = 2) -> str:
    """``"mean ± sd"`` over seeds (sd with ddof 1); one value alone; "—" for none."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)] * scale
    if finite.size == 0:
        return "—"
    if finite.size == 1:
        return f"{finite[0]:.{digits}f}"
    return f"{finite.mean():.{digits}f} ± {finite.std(ddof=1):.{digits}f}"


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of ``frame`` as displayed (cells are ``str()``-ed).

    An empty frame (e.g. comparisons of a single-arm study) is the line "_None._".
    """
    if frame.empty:
        return "_None._"
    header = [str(column) for column in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        cells = ["" if cell is None else str(cell).replace("|", "\\|") for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_frame(runs: pd.DataFrame, metrics: Sequence[str] = REPORT_METRICS) -> pd.DataFrame:
    """Mean and sd (ddof 1) over completed seeds per backbone x arm x metric (``summary.csv``)."""
    done = completed(runs)
    rows = []
    for (backbone, arm), group in done.groupby(["backbone", "arm"], sort=False):
        for metric in metrics:
            values = group[metric].dropna() if metric in group else pd.Series(dtype=float)
            rows.append(
                {
                    "backbone": backbone,
                    "arm": arm,
                    "metric": metric,
                    "n": len(values),
                    "mean": float(values.mean()) if len(values) else math.nan,
                    "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=["backbone", "arm", "metric", "n", "mean", "sd"])


def metric_table(
    runs: pd.DataFrame,
    metrics: Sequence[str],
    headers: Sequence[str],
    *,
    backbones: Sequence[str],
    arms: Sequence[str],
    arm_labels: Mapping[str, str],
) -> pd.DataFrame:
    """Display table: one row per backbone x arm, "mean ± sd" per metric, seeds completed."""
    done = completed(runs)
    rows = []
    for backbone in backbones:
        for arm in arms:
            group = done[(done["backbone"] == backbone) & (done["arm"] == arm)]
            row = {"Backbone": backbone, "Arm": arm_labels[arm], "Seeds": len(group)}
            for metric, header in zip(metrics, headers, strict=True):
                scale = metric_scale(metric)[0]
                values = group.get(metric, [])
                row[header] = mean_sd(values, scale, 3 if scale == 1.0 else 2)
            rows.append(row)
    return pd.DataFrame(rows)


def with_paper_rows(table: pd.DataFrame, *, backbones: Sequence[str]) -> pd.DataFrame:
    """Insert the paper's published Table 1 rows after each backbone it reports, for reference."""
    rows = []
    for backbone in backbones:
        rows.extend(table[table["Backbone"] == backbone].to_dict("records"))
        for arm, values in PAPER_TABLE_1.get(backbone, {}).items():
            row = {"Backbone": backbone, "Arm": f"{arm.upper()} (paper, published)", "Seeds": "—"}
            row.update({h: f"{v:.2f}" for h, v in zip(PAPER_HEADERS, values, strict=True)})
            rows.append(row)
    return pd.DataFrame(rows, columns=table.columns)


def seed_pairing(
    runs: pd.DataFrame, backbone: str, baseline: str, arm: str, seeds: Sequence[int]
) -> tuple[list[int], list[str]]:
    """Seeds where both arms completed, and one reason per expected seed that was dropped.

    Pairing is by seed (seed i gives both arms the same initialisation and data order): a seed
    that one arm did not complete has no partner, so it leaves the comparison and the report
    says why rather than shrinking n silently.
    """
    subset = runs[runs["backbone"] == backbone]
    outcome = {(row.arm, row.seed): row.outcome for row in subset.itertuples()}
    expected = sorted(set(seeds) | {s for (_, s) in outcome})
    paired, dropped = [], []
    for seed in expected:
        states = {name: outcome.get((name, seed), "missing") for name in (baseline, arm)}
        if all(state == "completed" for state in states.values()):
            paired.append(seed)
        else:
            why = ", ".join(f"{n} {s}" for n, s in states.items() if s != "completed")
            dropped.append(f"seed {seed} ({why})")
    return paired, dropped


def paired_values(
    runs: pd.DataFrame, backbone: str, baseline: str, arm: str, metric: str, seeds: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed values of both arms on the paired seeds, NaN metrics (undefined) dropped."""
    done = completed(runs)
    if metric not in done:  # records written before the metric existed
        return np.array([]), np.array([])
    done = done[(done["backbone"] == backbone) & done["seed"].isin(seeds)]
    pivot = done.pivot_table(index="seed", columns="arm", values=metric, aggfunc="first")
    if baseline not in pivot or arm not in pivot:
        return np.array([]), np.array([])
    pivot = pivot[[baseline, arm]].dropna()
    return pivot[baseline].to_numpy(float), pivot[arm].to_numpy(float)


def mcnemar_frame(
    pairs: Sequence[tuple[str, str, str]],
    paired_seeds: Mapping[tuple[str, str], Sequence[int]],
    load: PredictionLoader,
    *,
    class_names: Sequence[str],
    confused_pairs: Sequence[tuple[str, str]],
) -> pd.DataFrame:
    """Exact McNemar per seed on per-image predictions, combined over seeds by signed Stouffer.

    ``pairs`` lists (backbone, baseline, arm). Two scopes: all test images (right or wrong at
    top-1), and for each confused pair (a, b) its images, where an image counts as an error
    when predicted as the other class of the pair: exactly the error ``pair_error_a_b`` rates.
    Each seed's direction is the sign of (images only the arm gets right) - (images only the
    baseline gets right), so seeds that disagree cancel (``stats.stouffer_signed``).
    """
    rows = []
    for backbone, baseline, arm in pairs:
        per_scope: dict[str, list[tuple[float, int]]] = {"all test images": []}
        per_scope.update({f"{a.upper()}↔{b.upper()}": [] for a, b in confused_pairs})
        for seed in paired_seeds.get((backbone, arm), []):
            first, second = load(backbone, baseline, seed), load(backbone, arm, seed)
            if first is None or second is None:
                continue
            for scope, result in _seed_mcnemar(first, second, class_names, confused_pairs).items():
                per_scope[scope].append(result)
        for scope, results in per_scope.items():
            pvalues = [p for p, _ in results]
            directions = [direction for _, direction in results]
            combined = stats.stouffer_signed(pvalues, directions) if results else math.nan
            rows.append(
                {
                    "backbone": backbone,
                    "baseline": baseline,
                    "arm": arm,
                    "scope": scope,
                    "seeds": len(results),
                    "seed_pvalues": pvalues,
                    "seed_directions": directions,
                    "combined_pvalue": combined,
                }
            )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["bh_pvalue"] = stats.benjamini_hochberg(frame["combined_pvalue"].to_numpy(float))
    return frame


def _seed_mcnemar(first, second, class_names, confused_pairs) -> dict[str, tuple[float, int]]:
    """(McNemar p, direction) of one seed: all images, then each confused pair's images.

    The two arms' predictions are matched by image id; arms that scored different images or
    labels cannot be paired image by image, so the seed gives no p-value ({}).
    """
    ids_a, y_true, proba_a = first
    ids_b, y_true_b, proba_b = second
    order_a, order_b = np.argsort(ids_a, kind="stable"), np.argsort(ids_b, kind="stable")
    if not np.array_equal(ids_a[order_a], ids_b[order_b]):
        return {}
    y_true, y_true_b = y_true[order_a], y_true_b[order_b]
    if not np.array_equal(y_true, y_true_b):
        return {}
    pred_a, pred_b = proba_a[order_a].argmax(axis=1), proba_b[order_b].argmax(axis=1)
    result = {"all test images": _directed(pred_a == y_true, pred_b == y_true)}
    index = {name: c for c, name in enumerate(class_names)}
    for a, b in confused_pairs:
        if a not in index or b not in index:
            continue
        ia, ib = index[a], index[b]
        in_pair = np.isin(y_true, [ia, ib])
        if not in_pair.any():
            continue
        other = np.where(y_true == ia, ib, ia)[in_pair]
        # Correct means "not taken for the pair's other class"; McNemar then tests pair errors.
        kept_a, kept_b = pred_a[in_pair] != other, pred_b[in_pair] != other
        result[f"{a.upper()}↔{b.upper()}"] = _directed(kept_a, kept_b)
    return result


def _directed(right_a: np.ndarray, right_b: np.ndarray) -> tuple[float, int]:
    """McNemar p of two arms' per-image correctness, and the sign of b's advantage."""
    truth = np.ones(right_a.size, dtype=int)
    p = stats.mcnemar(right_a.astype(int), right_b.astype(int), truth)
    gain = int(np.count_nonzero(right_b & ~right_a)) - int(np.count_nonzero(right_a & ~right_b))
    return p, int(np.sign(gain))
