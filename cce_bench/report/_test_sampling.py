"""How much the test set's own sampling moves a difference: a lesion-cluster bootstrap.

Seeds vary the training; every seed scores the same test images. More seeds narrow the
interval around *this* test set's difference, never around the difference on new patients:
one VASC image moves balanced accuracy by half a point on HAM10000's test split. So the test
images are resampled too (Efron & Tibshirani 1993, ch. 6; clusters as in Field & Welsh 2007,
"Bootstrapping clustered data", JRSS B 69:369):

* **by lesion**: images of one lesion are not independent draws, so whole lesions are drawn
  (the lesion ids come from ``split.json``; a folder without them draws images one by one);
* **stratified by class**: each class keeps its number of lesions, so every class stays
  present and balanced accuracy stays defined;
* **one resample for everything**: each resample reweights the same images for both arms of a
  seed and for every seed, as the one real test set does, so the pairing is kept.

Each resample is a weight per image (how often its lesion was drawn); every metric is then a
function of the weighted confusion matrix (macro AUC of the weighted ranks), computed for all
resamples at once. The covariance across resamples of two different seeds' differences is the
test set's own share of the variance, ``SE_test^2`` (:func:`between_seed_se`), which
``cce_bench.report._families`` adds to the seeds' own. Seeded: the same
folder gives the same resamples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cce_bench.report._families import DERIVED, RECALL_PREFIX, AnalysisPlan
from cce_bench.report._tables import REPORT_METRICS

#: Resamples of the test set: the standard error of a standard error from B resamples is about
#: 1/sqrt(2B) of it, 2% here, and 1000 resamples of HAM10000's 2,000 test images take seconds.
TEST_RESAMPLES = 1000
#: Seed of the resampling, fixed so that a rebuilt report is byte-identical.
RESAMPLING_SEED = 0

Predictions = tuple[np.ndarray, np.ndarray, np.ndarray]
PredictionLoader = Callable[[str, str, int], Predictions | None]


@dataclass(frozen=True)
class LesionClusters:
    """The test images in one fixed order, their labels and their lesions (cluster codes)."""

    image_ids: np.ndarray
    y_true: np.ndarray
    clusters: np.ndarray
    by_lesion: bool

    @property
    def lesions(self) -> int:
        return int(np.unique(self.clusters).size)


@dataclass(frozen=True)
class SamplingVariance:
    """SE_test per (backbone, arm, metric), and how it was obtained (for the report's note)."""

    se: dict[tuple[str, str, str], float] = field(default_factory=dict)
    clusters: LesionClusters | None = None
    resamples: int = TEST_RESAMPLES
    problem: str = ""


def _weight_per_score(
    weights: np.ndarray, scores: np.ndarray, positive: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``[B, S]`` weights of the positives and of the negatives at each distinct score S."""
    resamples = weights.shape[0]
    values, level = np.unique(scores, return_inverse=True)
    offset = (np.arange(resamples)[:, None] * values.size + level[None, :]).ravel()
    shape, length = (resamples, values.size), resamples * values.size
    pos = np.bincount(offset, (weights * positive).ravel(), length).reshape(shape)
    neg = np.bincount(offset, (weights * ~positive).ravel(), length).reshape(shape)
    return pos, neg


def lesion_clusters(manifest: Mapping, image_ids: np.ndarray, y_true: np.ndarray) -> LesionClusters:
    """The test set in ``image_ids`` order, clustered by the lesion ids ``split.json`` records.

    Without lesion ids (a folder written before they were stored), every image is its own
    cluster, which understates the variance when lesions have several images.
    """
    part = (manifest.get("parts") or {}).get("test") or {}
    ids, lesions = part.get("image_ids"), part.get("lesion_ids")
    order = np.argsort(image_ids, kind="stable")
    image_ids, y_true = np.asarray(image_ids)[order], np.asarray(y_true)[order]
    if ids and lesions and len(ids) == len(lesions):
        lesion_of = dict(zip(map(str, ids), map(str, lesions), strict=True))
        if all(str(image) in lesion_of for image in image_ids):
            names = np.array([lesion_of[str(image)] for image in image_ids])
            codes = np.unique(names, return_inverse=True)[1]
            return LesionClusters(image_ids, y_true, codes, by_lesion=True)
    return LesionClusters(image_ids, y_true, np.arange(image_ids.size), by_lesion=False)


def resample_weights(
    test: LesionClusters, resamples: int, seed: int = RESAMPLING_SEED
) -> np.ndarray:
    """``[resamples, N]`` image weights: lesions drawn with replacement within each class.

    A lesion's class is its first image's (a HAM10000 lesion has one diagnosis). Each class
    stratum of k lesions draws k of them; an image's weight is how often its lesion was drawn.
    """
    rng = np.random.default_rng(seed)
    n_clusters = int(test.clusters.max()) + 1
    cluster_class = np.full(n_clusters, -1)
    first = np.unique(test.clusters, return_index=True)[1]
    cluster_class[test.clusters[first]] = test.y_true[first]
    counts = np.zeros((resamples, n_clusters))
    for label in np.unique(cluster_class):
        members = np.flatnonzero(cluster_class == label)
        draws = rng.integers(0, members.size, size=(resamples, members.size))
        flat = (np.arange(resamples)[:, None] * members.size + draws).ravel()
        drawn = np.bincount(flat, minlength=resamples * members.size)
        counts[:, members] = drawn.reshape(resamples, members.size)
    return counts[:, test.clusters]


def weighted_metrics(
    weights: np.ndarray, y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Every tested metric of one run under each resample's weights: ``{metric: [B]}``.

    The conventions of ``cce_bench.metrics`` carried over to counts (``[B, C, C]`` weighted
    confusion matrices): balanced accuracy over the classes present, macro F1 and the paper's
    ratios over all classes with an undefined ratio counting 0, per-class recall NaN for an
    absent class. With unit weights they equal the run's stored metrics.
    """
    c = len(class_names)
    y_pred = proba.argmax(axis=1)
    onehot = np.zeros((y_true.size, c * c))
    onehot[np.arange(y_true.size), y_true * c + y_pred] = 1.0
    cm = (weights @ onehot).reshape(-1, c, c)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted, total = cm.sum(axis=2), cm.sum(axis=1), cm.sum(axis=(1, 2))
    fp, fn = predicted - tp, support - tp
    tn = total[:, None] - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        metrics = {
            "top1": tp.sum(axis=1) / total,
            "balanced_accuracy": np.nanmean(recall, axis=1),
            "macro_f1": _ratio_or_zero(2 * tp, 2 * tp + fp + fn).mean(axis=1),
            "paper_precision": _ratio_or_zero(tp, tp + fp).mean(axis=1),
            "paper_specificity": _ratio_or_zero(tn, tn + fp).mean(axis=1),
            "macro_auc": _weighted_macro_auc(weights, y_true, proba),
        }
    index = {name: k for k, name in enumerate(class_names)}
    for k, name in enumerate(class_names):
        metrics[RECALL_PREFIX + name] = recall[:, k]
    metrics["melanoma_sensitivity"] = recall[:, index["mel"]] if "mel" in index else _nan(cm)
    for key in (m for m in REPORT_METRICS if m.startswith("pair_error_")):
        a, b = key.removeprefix("pair_error_").split("_")
        if a in index and b in index:
            ia, ib = index[a], index[b]
            swapped = cm[:, ia, ib] + cm[:, ib, ia]
            with np.errstate(invalid="ignore", divide="ignore"):
                metrics[key] = swapped / (support[:, ia] + support[:, ib])
        else:
            metrics[key] = _nan(cm)
    return metrics


def _ratio_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _nan(cm: np.ndarray) -> np.ndarray:
    return np.full(cm.shape[0], np.nan)


def _weighted_macro_auc(weights: np.ndarray, y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC per class from weighted ranks, averaged over classes with both sides.

    AUC = P(score of a positive > score of a negative) + P(tie) / 2 (Mann-Whitney), each image
    counted with its weight: the area ``roc_auc_score`` computes, for every resample at once.
    """
    resamples, aucs = weights.shape[0], []
    for c in range(proba.shape[1]):
        positive = y_true == c
        if not 0 < np.count_nonzero(positive) < y_true.size:
            continue
        pos, neg = _weight_per_score(weights, proba[:, c], positive)
        below = np.cumsum(neg, axis=1) - neg
        wins = (pos * (below + 0.5 * neg)).sum(axis=1)
        aucs.append(wins / (pos.sum(axis=1) * neg.sum(axis=1)))
    return np.mean(aucs, axis=0) if aucs else np.full(resamples, np.nan)


def sampling_variance(
    plan: AnalysisPlan,
    pairs: Mapping[tuple[str, str], Sequence[int]],
    *,
    baseline: str,
    manifest: Mapping,
    class_names: Sequence[str],
    load: PredictionLoader,
    resamples: int = TEST_RESAMPLES,
) -> SamplingVariance:
    """SE_test of every comparison: ``pairs`` maps (backbone, arm) to its paired seeds.

    The resamples are drawn once, on the first readable run's test images, and reused for every
    run. A comparison whose predictions are missing, or whose runs scored other images, gets
    no SE (NaN) and its combined interval is left out.
    """
    first = _first_readable(pairs, baseline, load)
    if first is None:
        return SamplingVariance(problem="no stored test predictions could be read")
    test = lesion_clusters(manifest, first[0], first[1])
    weights = resample_weights(test, resamples)
    cache: dict[tuple[str, str, int], dict[str, np.ndarray] | None] = {}

    def run_metrics(backbone: str, arm: str, seed: int) -> dict[str, np.ndarray] | None:
        if (backbone, arm, seed) not in cache:
            found = load(backbone, arm, seed)
            aligned = _aligned(found, test) if found is not None else None
            cache[(backbone, arm, seed)] = (
                weighted_metrics(weights, test.y_true, aligned, class_names)
                if aligned is not None
                else None
            )
        return cache[(backbone, arm, seed)]

    se: dict[tuple[str, str, str], float] = {}
    for (backbone, arm), seeds in pairs.items():
        per_seed = [
            (run_metrics(backbone, baseline, s), run_metrics(backbone, arm, s)) for s in seeds
        ]
        if not per_seed or any(a is None or b is None for a, b in per_seed):
            continue
        for metric in per_seed[0][0]:
            if plan.family_of(metric, arm) == DERIVED:
                continue
            diffs = np.stack([b[metric] - a[metric] for a, b in per_seed])
            se[(backbone, arm, metric)] = between_seed_se(diffs)
    return SamplingVariance(se=se, clusters=test, resamples=resamples)


def between_seed_se(diffs: np.ndarray) -> float:
    """SE_test from ``[K, B]`` differences (seed x test-set resample): the between-seed
    covariance across resamples, square-rooted.

    A seed's difference on a resampled test set is the population difference, plus the test
    set's deviation shared by every seed, plus the seed's own deviation (its training noise and
    its seed x image interaction). The variance of the mean over seeds across resamples holds
    the shared part once and each seed's interaction / K: that second part is already in the
    seeds' spread s^2/K, so adding it here counted it twice (17-34% too wide an interval,
    measured by ``benchmarks/bench_test_sampling.py``). The covariance of two different seeds'
    differences across resamples holds the shared part only; its mean over the K(K - 1) pairs
    of seeds, floored at 0 (it is an estimate), is SE_test^2. Resamples where the metric is
    undefined for some seed are left out; fewer than two seeds or resamples give NaN.
    """
    d = np.asarray(diffs, dtype=np.float64)
    d = d[:, np.all(np.isfinite(d), axis=0)] if d.ndim == 2 else d
    if d.ndim != 2 or d.shape[0] < 2 or d.shape[1] < 2:
        return math.nan
    k = d.shape[0]
    cov = np.cov(d)
    between = (float(cov.sum()) - float(np.trace(cov))) / (k * (k - 1))
    return math.sqrt(max(between, 0.0))


def _first_readable(
    pairs: Mapping[tuple[str, str], Sequence[int]], baseline: str, load: PredictionLoader
) -> Predictions | None:
    for (backbone, _), seeds in pairs.items():
        for seed in seeds:
            found = load(backbone, baseline, seed)
            if found is not None:
                return found
    return None


def _aligned(found: Predictions, test: LesionClusters) -> np.ndarray | None:
    """A run's probabilities in the test set's image order; None if it scored other images."""
    image_ids, y_true, proba = found
    order = np.argsort(image_ids, kind="stable")
    if not np.array_equal(np.asarray(image_ids)[order], test.image_ids):
        return None
    if not np.array_equal(np.asarray(y_true)[order], test.y_true):
        return None
    return np.asarray(proba, dtype=np.float64)[order]
