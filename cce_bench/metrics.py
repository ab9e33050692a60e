"""The paper's metrics and the clinical ones, from labels, predictions and probabilities.

Two families are reported side by side because they answer different questions:

* :func:`paper_metrics` reproduces the paper's Table 1: the macro (unweighted) mean over classes
  of one-vs-rest accuracy, sensitivity, precision and specificity (paper eqs. 4-7). Its "ACC" is
  *not* top-1 accuracy: each misclassified image is one false negative of its true class and one
  false positive of the predicted class, so ``ACC = 1 - 2 * (1 - top1) / C``; with C = 7 it sits
  near 97% even when top-1 is 90%.
* :func:`classification_metrics` gives what a clinician or a reviewer reads: top-1, balanced
  accuracy, macro F1, per-class recall (melanoma sensitivity among them), macro one-vs-rest ROC
  AUC and the confusion matrix.

:func:`confused_pair_rates` measures the paper's central claim (section 1, Fig. 1): how often the
easily confused pairs are mistaken for each other. :func:`evaluate_predictions` bundles them all
into the flat, JSON-able dictionary a run record stores.

Every class counts even when it is absent from the evaluated part or never predicted: the class
set comes from ``num_classes`` / ``class_names``, never from the labels seen.

scikit-learn (with scipy and pandas, about 1 s) is imported inside the functions that score, so
that a study file's check, which reads only the metric names below, imports none of it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike

from cce_bench.data.labeled import CONFUSED_PAIRS
from cce_bench.errors import ResultsError


class MetricsInputError(ResultsError, ValueError):
    """Labels, predictions or probabilities that cannot be scored (wrong shape or range)."""


#: Human labels of the scalar keys of :func:`evaluate_predictions`, for tables and figures.
METRIC_LABELS: dict[str, str] = {
    "paper_accuracy": "ACC (paper)",
    "paper_sensitivity": "Sensitivity (paper)",
    "paper_precision": "Precision (paper)",
    "paper_specificity": "Specificity (paper)",
    "top1": "Top-1 accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro F1",
    "macro_auc": "Macro AUC",
    "melanoma_sensitivity": "Melanoma sensitivity",
    "pair_error_nv_mel": "NV↔MEL error",
    "pair_error_akiec_bcc": "AKIEC↔BCC error",
    "pair_error_bkl_mel": "BKL↔MEL error",
}

#: Direction of improvement per scalar key: a confused-pair error rate is better when lower.
HIGHER_IS_BETTER: dict[str, bool] = {
    key: not key.startswith("pair_error_") for key in METRIC_LABELS
}

#: Metrics that are a fixed function of another metric of the same run, so that a paired test
#: of one is a test of the other: the paper's ACC is ``1 - 2 * (1 - top1) / C`` (each error is
#: one FN and one FP, see :func:`paper_metrics`), and its sensitivity is balanced accuracy times
#: (classes with test images) / C, equal to it when every class has test images. A report shows
#: them but never tests them, and an analysis plan cannot name them as its primary metric.
DERIVED_METRICS: dict[str, str] = {
    "paper_accuracy": "top1",
    "paper_sensitivity": "balanced_accuracy",
}


def metric_scale(metric: str) -> tuple[float, str]:
    """(factor, unit) for display: ratios as percent, AUC as it is (0.5 is chance, not 50%).

    The report, ``cce-bench status`` and their JSON all show a metric in this one unit.
    """
    return (1.0, "") if metric.endswith("macro_auc") else (100.0, "%")


def _class_name(class_names: tuple[str, ...] | list[str] | None, c: int) -> str:
    return str(class_names[c]) if class_names is not None else f"class {c}"


def _check_labels(y: ArrayLike, num_classes: int, what: str) -> np.ndarray:
    """Validate one label vector at the boundary: 1-D integers in ``[0, num_classes)``."""
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise MetricsInputError(f"{what} must be a non-empty 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise MetricsInputError(f"{what} must hold integer class indices, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= num_classes:
        raise MetricsInputError(
            f"{what} holds class index {int(y.min()) if y.min() < 0 else int(y.max())}, "
            f"outside 0..{num_classes - 1}; check that num_classes / class_names match the data"
        )
    return y.astype(np.int64)


def _check_pair(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    y_true = _check_labels(y_true, num_classes, "y_true")
    y_pred = _check_labels(y_pred, num_classes, "y_pred")
    if y_true.shape != y_pred.shape:
        raise MetricsInputError(
            f"y_true has {y_true.size} labels but y_pred has {y_pred.size}; "
            "they must describe the same images in the same order"
        )
    return y_true, y_pred


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


def paper_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    num_classes: int,
    *,
    class_names: tuple[str, ...] | list[str] | None = None,
) -> dict:
    """Macro one-vs-rest accuracy, sensitivity, precision and specificity (paper eqs. 4-7).

    For each class c, the images are split one-vs-rest into TP, FP, FN and TN; each ratio is
    computed per class and averaged with equal weight over all ``num_classes`` classes. This is
    the paper's Table 1 convention, so its "ACC" equals ``1 - 2 * (1 - top1) / C`` (each error
    is one FN and one FP) rather than top-1 accuracy.

    A ratio whose denominator is zero (sensitivity of a class absent from ``y_true``, precision
    of a class never predicted, specificity when every image is one class) counts as 0, as
    scikit-learn's ``zero_division=0`` does, and is named in ``undefined`` so a report can say
    which numbers rest on it.

    Args:
        y_true: int class indices ``[N]``.
        y_pred: int predicted class indices ``[N]``.
        num_classes: C; every class in ``range(C)`` is averaged, seen or not.
        class_names: optional names used in the ``undefined`` messages (else "class c").

    Returns:
        ``{"accuracy", "sensitivity", "precision", "specificity": float, "undefined": [str]}``.
    """
    y_true, y_pred = _check_pair(y_true, y_pred, num_classes)
    from sklearn.metrics import multilabel_confusion_matrix  # imported late: see the module note

    # multilabel_confusion_matrix[c] = [[TN, FP], [FN, TP]] for class c against the rest.
    per_class = multilabel_confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))
    sums = {"accuracy": 0.0, "sensitivity": 0.0, "precision": 0.0, "specificity": 0.0}
    undefined: list[str] = []
    n = int(y_true.size)
    for c, ((tn, fp), (fn, tp)) in enumerate(per_class.tolist()):
        name = _class_name(class_names, c)
        ratios = {
            "accuracy": ((tp + tn) / n, ""),
            "sensitivity": (_ratio(tp, tp + fn), f"no {name} images"),
            "precision": (_ratio(tp, tp + fp), "never predicted"),
            "specificity": (_ratio(tn, tn + fp), f"every image is {name}"),
        }
        for key, (value, reason) in ratios.items():
            if value is None:
                undefined.append(f"{key} of {name}: {reason}")
            else:
                sums[key] += value
    result: dict = {key: total / num_classes for key, total in sums.items()}
    result["undefined"] = undefined
    return result


def _macro_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over the classes that have both positives and negatives.

    A class absent from ``y_true`` (or the only class present) has no ROC curve, so it is left
    out rather than counted as 0.5 or 0; NaN when no class qualifies.
    """
    from sklearn.metrics import roc_auc_score

    aucs = [
        roc_auc_score(y_true == c, proba[:, c])
        for c in range(proba.shape[1])
        if 0 < np.count_nonzero(y_true == c) < y_true.size
    ]
    return float(np.mean(aucs)) if aucs else math.nan


def classification_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, proba: ArrayLike, num_classes: int
) -> dict:
    """Top-1, balanced accuracy, macro F1, macro AUC, per-class recall and confusion matrix.

    Conventions (all scikit-learn's, computed with it):

    * ``balanced_accuracy`` is the mean recall over the classes *present* in ``y_true``
      (``balanced_accuracy_score``); it equals the NaN-ignoring mean of ``per_class_recall``.
    * ``macro_f1`` averages over all ``range(C)``, an undefined F1 counting 0
      (``labels=range(C), zero_division=0``), so a never-predicted class pulls it down.
    * ``macro_auc`` is the one-vs-rest ROC AUC from ``proba`` averaged over the classes present
      with both positives and negatives (as ``roc_auc_score(multi_class="ovr")`` when every
      class is present); NaN if none qualifies.
    * ``per_class_recall`` is a float array ``[C]``, NaN for a class with no images (its recall
      is undefined, and 0 would read as "every such lesion missed").
    * ``confusion_matrix`` is an int array ``[C, C]``, rows true, columns predicted.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

    y_true, y_pred = _check_pair(y_true, y_pred, num_classes)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (y_true.size, num_classes):
        raise MetricsInputError(
            f"proba must have shape (N, C) = ({y_true.size}, {num_classes}), got {proba.shape}"
        )
    if not np.isfinite(proba).all():
        raise MetricsInputError(
            "proba contains NaN or infinity (a diverged model?); score only finite outputs"
        )
    labels = list(range(num_classes))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.diag(matrix) / support, np.nan)
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true": expected when a model predicts an absent class.
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(y_true, y_pred)
    return {
        "top1": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "macro_auc": _macro_auc(y_true, proba),
        "per_class_recall": recall,
        "confusion_matrix": matrix,
    }


def confused_pair_rates(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    class_names: tuple[str, ...] | list[str],
    pairs: tuple[tuple[str, str], ...] = CONFUSED_PAIRS,
) -> dict[str, float]:
    """Share of a confused pair's images predicted as the other class of the pair.

    For the pair (a, b): ``(#a predicted b + #b predicted a) / (#a + #b)``, the quantity the
    paper's CCE loss is meant to lower (section 1: NV↔MEL, AKIEC↔BCC; BKL↔MEL from Fig. 1).
    Errors to a third class do not count: they are not this pair's confusion. NaN when the pair
    has no images, or when a class of the pair is not in ``class_names`` (another dataset).

    Returns:
        ``{"nv<->mel": rate, ...}``, one key per pair, in ``pairs`` order.
    """
    y_true, y_pred = _check_pair(y_true, y_pred, len(class_names))
    index = {name: c for c, name in enumerate(class_names)}
    rates: dict[str, float] = {}
    for a, b in pairs:
        key = f"{a}<->{b}"
        if a not in index or b not in index:
            rates[key] = math.nan
            continue
        ia, ib = index[a], index[b]
        in_pair = (y_true == ia) | (y_true == ib)
        swapped = ((y_true == ia) & (y_pred == ib)) | ((y_true == ib) & (y_pred == ia))
        count = int(np.count_nonzero(in_pair))
        rates[key] = int(np.count_nonzero(swapped)) / count if count else math.nan
    return rates


def evaluate_predictions(
    y_true: ArrayLike, proba: ArrayLike, class_names: tuple[str, ...] | list[str]
) -> dict:
    """Everything a run record stores about its predictions, as plain JSON-able values.

    The prediction is the argmax of ``proba`` (ties go to the lower class index, as
    ``np.argmax``). Keys: ``paper_accuracy``, ``paper_sensitivity``, ``paper_precision``,
    ``paper_specificity`` (:func:`paper_metrics`), ``top1``, ``balanced_accuracy``,
    ``macro_f1``, ``macro_auc`` (:func:`classification_metrics`), ``melanoma_sensitivity``
    (recall of class "mel"; NaN without a "mel" class or image), ``pair_error_nv_mel``,
    ``pair_error_akiec_bcc``, ``pair_error_bkl_mel`` (:func:`confused_pair_rates`),
    ``per_class_recall`` ({class: recall}), ``confusion_matrix`` (list of lists) and
    ``undefined`` (the paper ratios counted as 0). NaN stays NaN (``json`` writes it as NaN).
    """
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != len(class_names):
        raise MetricsInputError(
            f"proba must have shape (N, {len(class_names)}) for classes {list(class_names)}, "
            f"got {proba.shape}"
        )
    y_pred = proba.argmax(axis=1)
    num_classes = len(class_names)
    paper = paper_metrics(y_true, y_pred, num_classes, class_names=class_names)
    clinical = classification_metrics(y_true, y_pred, proba, num_classes)
    recall = {
        name: float(r) for name, r in zip(class_names, clinical["per_class_recall"], strict=True)
    }
    record: dict = {
        f"paper_{key}": float(paper[key])
        for key in ("accuracy", "sensitivity", "precision", "specificity")
    }
    record.update({key: clinical[key] for key in ("top1", "balanced_accuracy", "macro_f1")})
    record["macro_auc"] = clinical["macro_auc"]
    record["melanoma_sensitivity"] = recall.get("mel", math.nan)
    for key, rate in confused_pair_rates(y_true, y_pred, class_names).items():
        record["pair_error_" + key.replace("<->", "_")] = float(rate)
    record["per_class_recall"] = recall
    record["confusion_matrix"] = clinical["confusion_matrix"].astype(int).tolist()
    record["undefined"] = list(paper["undefined"])
    return record
