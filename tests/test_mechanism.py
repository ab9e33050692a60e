"""The CCE mechanism as measured: the confused set H, its blind spots, spread and calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cce_bench.data.labeled import HAM10000_CLASSES, PreparedData
from cce_bench.losses import cce_loss, confusion_set
from cce_bench.mechanism import (
    ConfusionTally,
    confusion_tau,
    expected_calibration_error,
    prediction_mechanism,
)
from cce_bench.train import RunSpec
from cce_bench.train._loop import train_run

CLASSES = ("a", "b", "c", "d")


@pytest.mark.parametrize("tau", [0.0, 0.7, -1.0])
def test_confusion_set_is_the_set_the_loss_trains_on(tau: float) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 7, generator=generator, dtype=torch.float64) * 3
    target = torch.randint(0, 7, (500,), generator=generator)
    kept = confusion_set(logits, target, tau)
    kept[torch.arange(500), target] = True
    literal = (
        torch.logsumexp(logits.masked_fill(~kept, -math.inf), 1) - logits[torch.arange(500), target]
    )
    assert torch.allclose(cce_loss(logits, target, tau, reduction="none"), literal)


def test_the_true_class_is_never_in_the_confusion_set() -> None:
    logits = torch.tensor([[5.0, 4.0, -1.0, -2.0]])
    assert confusion_set(logits, torch.tensor([1])).tolist() == [[True, False, False, False]]


def test_tally_counts_h_size_and_membership_per_class() -> None:
    tally = ConfusionTally(4, 0.0, torch.device("cpu"))
    # negatives of sample 1 (class 0): 4, -1, -2 -> mean 1/3 -> H = {1}
    # negatives of sample 2 (class 1): 0, 1, 2 -> mean 1 -> H = {3}
    logits = torch.tensor([[5.0, 4.0, -1.0, -2.0], [0.0, 3.0, 1.0, 2.0]])
    tally.update(logits, torch.tensor([0, 1]))
    summary = tally.summary(CLASSES)
    assert summary["confusion_set_size"] == 1.0
    assert summary["in_confusion_set_a"] == 0.0  # once a negative, not in H
    assert summary["in_confusion_set_b"] == 1.0  # once a negative, in H
    assert summary["in_confusion_set_c"] == 0.0
    assert summary["in_confusion_set_d"] == 0.5


def test_tally_restarts_after_each_summary() -> None:
    tally = ConfusionTally(4, 0.0, torch.device("cpu"))
    tally.update(torch.tensor([[5.0, 4.0, -1.0, -2.0]]), torch.tensor([0]))
    tally.summary(CLASSES)
    assert math.isnan(tally.summary(CLASSES)["confusion_set_size"])


def test_blind_spot_is_a_wrong_class_above_the_true_one_but_outside_h() -> None:
    # True class 3 (logit 0). Negatives 5, 4, 0.5 -> mean 3.17: H = {0, 1}; class 2 (0.5)
    # outranks the true class from outside H: a blind spot. Image 2 is classified right.
    logits = np.array([[5.0, 4.0, 0.5, 0.0], [3.0, 0.0, 0.0, 0.0]])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = prediction_mechanism(np.array([3, 0]), proba, 0.0, CLASSES)
    assert result["blind_spot_rate"] == 0.5
    assert result["blind_spot_d"] == 1.0 and result["blind_spot_a"] == 0.0
    assert math.isnan(result["blind_spot_b"])


def test_logit_spread_is_read_from_probabilities_up_to_a_shift() -> None:
    logits = np.array([[2.0, 0.0, -2.0, 0.0]])
    proba = np.exp(logits) / np.exp(logits).sum()
    spread = prediction_mechanism(np.array([0]), proba, 0.0, CLASSES)["logit_spread"]
    assert spread == pytest.approx(np.std(logits))


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    proba = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(np.array([0, 0, 0, 1]), proba) == pytest.approx(0.0)


def test_ece_of_an_underconfident_classifier_is_its_gap() -> None:
    proba = np.array([[0.6, 0.4]] * 5)
    assert expected_calibration_error(np.zeros(5, dtype=int), proba) == pytest.approx(0.4)


def test_measured_tau_is_the_arms_own_for_cce_tau_and_the_papers_otherwise() -> None:
    assert confusion_tau("cce_tau", {"tau": 0.8}) == 0.8
    assert confusion_tau("cce", {}) == 0.0
    assert confusion_tau("ce", {"lr": 1e-3}) == 0.0


def test_each_epoch_of_a_run_records_the_confusion_set() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(HAM10000_CLASSES), 48)
    data = PreparedData(
        images=rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8),
        labels=labels,
        image_ids=np.array([f"ISIC_{i:07d}" for i in range(48)]),
        group_ids=np.array([f"HAM_{i:07d}" for i in range(48)]),
        class_names=HAM10000_CLASSES,
        parts={"train": np.arange(32), "val": np.arange(32, 48)},
    )
    spec = RunSpec(
        backbone="mobilenetv3_small_050", image_size=32, epochs=2, batch_size=16, threads=1,
        augment_policy="none", loss="cce_tau", loss_params={"tau": 0.5},
    )  # fmt: skip
    history = train_run(spec, data).history
    assert [epoch["confusion_tau"] for epoch in history] == [0.5, 0.5]
    assert all(1.0 <= epoch["confusion_set_size"] <= 6.0 for epoch in history)
    assert all(f"in_confusion_set_{name}" in history[0] for name in HAM10000_CLASSES)
