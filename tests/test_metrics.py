"""Specification of cce_bench.metrics: the paper's Table 1 metrics and the clinical ones."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from cce_bench.data.labeled import HAM10000_CLASSES
from cce_bench.metrics import (
    HIGHER_IS_BETTER,
    METRIC_LABELS,
    MetricsInputError,
    classification_metrics,
    confused_pair_rates,
    evaluate_predictions,
    paper_metrics,
)

# Three classes, six images; per class one-vs-rest (TP, FP, FN, TN) by hand:
# class 0: (1, 1, 1, 3), class 1: (2, 1, 0, 3), class 2: (1, 0, 1, 4).
HAND_TRUE = np.array([0, 0, 1, 1, 2, 2])
HAND_PRED = np.array([0, 1, 1, 1, 2, 0])


def ham_indices(names: list[str]) -> np.ndarray:
    return np.array([HAM10000_CLASSES.index(name) for name in names])


def random_case(seed: int, n: int = 200, num_classes: int = 7):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, num_classes, n)
    proba = rng.dirichlet(np.ones(num_classes), n)
    proba[np.arange(n), y_true] += rng.uniform(0, 0.5, n)  # better than chance, not perfect
    proba /= proba.sum(axis=1, keepdims=True)
    return y_true, proba.argmax(axis=1), proba


def test_paper_metrics_match_hand_computed_case():
    result = paper_metrics(HAND_TRUE, HAND_PRED, 3)
    assert result["accuracy"] == pytest.approx((4 / 6 + 5 / 6 + 5 / 6) / 3)
    assert result["sensitivity"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert result["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert result["specificity"] == pytest.approx((3 / 4 + 3 / 4 + 1) / 3)
    assert result["undefined"] == []


@settings(max_examples=60, deadline=None)
@given(
    num_classes=st.integers(2, 9),
    pairs=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=60),
)
def test_paper_accuracy_equals_one_minus_twice_error_rate_over_classes(num_classes, pairs):
    y_true = np.array([t % num_classes for t, _ in pairs])
    y_pred = np.array([p % num_classes for _, p in pairs])
    top1 = float(np.mean(y_true == y_pred))
    accuracy = paper_metrics(y_true, y_pred, num_classes)["accuracy"]
    assert accuracy == pytest.approx(1 - 2 * (1 - top1) / num_classes)


def test_paper_metrics_match_scikit_learn_one_vs_rest_macro_averages():
    y_true, y_pred, _ = random_case(seed=1)
    labels = list(range(7))
    result = paper_metrics(y_true, y_pred, 7)
    sensitivity = recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    precision = precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    specificity = np.mean([recall_score(y_true != c, y_pred != c) for c in labels])
    assert result["sensitivity"] == pytest.approx(sensitivity)
    assert result["precision"] == pytest.approx(precision)
    assert result["specificity"] == pytest.approx(specificity)


def test_absent_class_counts_zero_sensitivity_and_is_reported():
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])
    result = paper_metrics(y_true, y_pred, 3, class_names=("akiec", "bcc", "df"))
    assert result["sensitivity"] == pytest.approx((1 + 1 + 0) / 3)
    assert result["undefined"] == [
        "sensitivity of df: no df images",
        "precision of df: never predicted",
    ]


def test_never_predicted_class_counts_zero_precision_and_is_reported():
    y_true, y_pred = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 1])
    result = paper_metrics(y_true, y_pred, 3)
    assert result["precision"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert result["undefined"] == ["precision of class 2: never predicted"]


def test_specificity_is_undefined_when_every_image_is_one_class():
    result = paper_metrics(np.array([1, 1]), np.array([1, 1]), 2, class_names=("mel", "nv"))
    assert "specificity of nv: every image is nv" in result["undefined"]


def test_classification_metrics_match_scikit_learn_when_every_class_is_present():
    y_true, y_pred, proba = random_case(seed=2)
    result = classification_metrics(y_true, y_pred, proba, 7)
    assert result["top1"] == pytest.approx(np.mean(y_true == y_pred))
    assert result["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert result["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert result["macro_auc"] == pytest.approx(roc_auc_score(y_true, proba, multi_class="ovr"))
    np.testing.assert_array_equal(result["confusion_matrix"], confusion_matrix(y_true, y_pred))
    np.testing.assert_allclose(
        result["per_class_recall"], recall_score(y_true, y_pred, average=None)
    )


def test_confusion_matrix_keeps_rows_and_columns_of_unseen_classes():
    y = np.array([0, 1])
    result = classification_metrics(y, y, np.eye(4)[y], 4)
    assert result["confusion_matrix"].shape == (4, 4)


def test_per_class_recall_is_nan_for_absent_class_and_balanced_accuracy_ignores_it():
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    result = classification_metrics(y_true, y_pred, np.eye(3)[y_pred], 3)
    np.testing.assert_array_equal(result["per_class_recall"], [0.5, 1.0, np.nan])
    assert result["balanced_accuracy"] == pytest.approx(0.75)


def test_macro_f1_counts_a_never_predicted_class_as_zero():
    y_true, y_pred = np.array([0, 1, 2]), np.array([0, 1, 1])
    result = classification_metrics(y_true, y_pred, np.eye(3)[y_pred], 3)
    # F1: class 0 = 1, class 1 = 2/3 (P 1/2, R 1), class 2 = 0 (never predicted).
    assert result["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_macro_auc_leaves_out_a_class_absent_from_the_labels():
    y_true = np.array([0, 0, 1, 1])
    proba = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.4, 0.5, 0.1], [0.1, 0.2, 0.7]])
    result = classification_metrics(y_true, proba.argmax(axis=1), proba, 3)
    # Class 0: positives 0.8, 0.3 vs negatives 0.4, 0.1, 3 of 4 pairs ordered: AUC 3/4.
    # Class 1: positives 0.5, 0.2 vs negatives 0.1, 0.6, 2 of 4 pairs ordered: AUC 1/2.
    # Class 2 has no positive image: no ROC curve, left out (not averaged in as 0 or 0.5).
    assert result["macro_auc"] == pytest.approx((3 / 4 + 1 / 2) / 2)


def test_macro_auc_is_nan_when_no_class_has_positives_and_negatives():
    y = np.array([2, 2, 2])
    result = classification_metrics(y, y, np.eye(3)[y], 3)
    assert math.isnan(result["macro_auc"])


def test_confused_pair_rates_match_hand_count():
    y_true = ham_indices(["nv", "nv", "nv", "mel", "mel", "bkl", "bkl", "akiec"])
    y_pred = ham_indices(["nv", "mel", "bkl", "nv", "mel", "mel", "bkl", "akiec"])
    rates = confused_pair_rates(y_true, y_pred, HAM10000_CLASSES)
    # nv<->mel: 1 nv->mel + 1 mel->nv of 5 images (nv->bkl is not this pair's confusion).
    assert rates == {"nv<->mel": 0.4, "akiec<->bcc": 0.0, "bkl<->mel": 0.25}


def test_confused_pair_rate_is_nan_without_images_of_the_pair():
    y = ham_indices(["nv", "mel"])
    assert math.isnan(confused_pair_rates(y, y, HAM10000_CLASSES)["akiec<->bcc"])


def test_confused_pair_rate_is_nan_when_the_dataset_lacks_the_class():
    y = np.array([0, 1])
    assert math.isnan(confused_pair_rates(y, y, ("nv", "other"))["nv<->mel"])


def test_evaluate_predictions_has_the_record_keys_and_is_json_able():
    y_true, _, proba = random_case(seed=3)
    record = evaluate_predictions(y_true, proba, HAM10000_CLASSES)
    assert set(record) == {*METRIC_LABELS, "per_class_recall", "confusion_matrix", "undefined"}
    assert all(type(record[key]) is float for key in METRIC_LABELS)
    assert json.loads(json.dumps(record)) == record


def test_evaluate_predictions_predicts_the_argmax_class():
    y_true, y_pred, proba = random_case(seed=4)
    record = evaluate_predictions(y_true, proba, HAM10000_CLASSES)
    assert record["top1"] == pytest.approx(np.mean(y_true == y_pred))


def test_melanoma_sensitivity_is_the_recall_of_mel():
    y_true, _, proba = random_case(seed=5)
    record = evaluate_predictions(y_true, proba, HAM10000_CLASSES)
    assert record["melanoma_sensitivity"] == record["per_class_recall"]["mel"]


def test_melanoma_sensitivity_is_nan_without_a_mel_class():
    y = np.array([0, 1, 1])
    record = evaluate_predictions(y, np.eye(2)[y], ("benign", "malignant"))
    assert math.isnan(record["melanoma_sensitivity"])


def test_pair_errors_are_lower_is_better_and_the_rest_higher():
    assert [key for key, higher in HIGHER_IS_BETTER.items() if not higher] == [
        "pair_error_nv_mel",
        "pair_error_akiec_bcc",
        "pair_error_bkl_mel",
    ]


def test_label_outside_the_classes_is_rejected():
    with pytest.raises(MetricsInputError, match=r"outside 0\.\.2"):
        paper_metrics(np.array([0, 3]), np.array([0, 1]), 3)


def test_probabilities_of_the_wrong_width_are_rejected():
    with pytest.raises(MetricsInputError, match="shape"):
        evaluate_predictions(np.array([0, 1]), np.ones((2, 3)) / 3, HAM10000_CLASSES)


def test_non_finite_probabilities_are_rejected():
    proba = np.array([[0.5, 0.5], [math.nan, 0.5]])
    with pytest.raises(MetricsInputError, match="NaN"):
        classification_metrics(np.array([0, 1]), np.array([0, 1]), proba, 2)
