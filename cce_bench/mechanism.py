"""What CCE does to a classifier, measured: the confused set H, blind spots, spread, calibration.

CCE's gradient is ``softmax over {y} ∪ H minus one-hot``: a negative outside H gets exactly zero
gradient, so once a class sits below the negative mean nothing pushes it down. These functions
measure that mechanism so a report can show it beside the accuracies:

- during training (``ConfusionTally``, per epoch): the mean size of H and, per class, how often
  it is in H when it is a negative;
- on predictions (``prediction_mechanism``, from the stored probabilities): the blind-spot rate
  (a wrong class ranks above the true class but lies outside H, so the loss cannot correct it),
  the per-image logit spread (sd across classes) and the expected calibration error.

H is chosen by ``losses.confusion_set``, the rule the loss itself uses. It depends on logit
differences only, so the log of stored probabilities gives the same H as the logits did, and an
old run with stored predictions can be measured without retraining.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

__all__ = [
    "ECE_BINS",
    "ConfusionTally",
    "confusion_tau",
    "expected_calibration_error",
    "prediction_mechanism",
]

#: Equal-width confidence bins of the ECE (Guo et al. 2017 use 15).
ECE_BINS = 15
#: The losses whose confused set is the one the loss trains on; every other loss is measured
#: against the paper's rule (tau = 0), to show where its logits would put H.
CCE_FAMILY = ("cce", "cce_tau")


def confusion_tau(loss: str, params: dict[str, Any] | None) -> float:
    """The tau whose H is measured for a run of ``loss``: its own for a CCE-family loss, the
    paper's 0 otherwise (``cce`` has tau fixed at 0; ``cce_tau`` carries it in ``params``)."""
    if loss == "cce_tau":
        return float((params or {}).get("tau", 0.0))
    return 0.0


class ConfusionTally:
    """Per-epoch sums of H's size and of each class's membership in H, kept on the device.

    ``update`` adds a training batch's logits with a few tensor operations and never reads a
    value back, so it costs a fraction of a training step and no host-device sync; ``summary``
    reads the totals once per epoch and starts a new epoch.
    """

    def __init__(self, num_classes: int, tau: float, device: torch.device) -> None:
        import torch

        self.tau = tau
        self._in_h = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self._negative = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self._samples = torch.zeros((), dtype=torch.float64, device=device)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: ``logits [N, C]`` as the loss saw them, ``target [N]`` int64."""
        import torch

        from cce_bench.losses import confusion_set

        with torch.no_grad():
            in_h = confusion_set(logits, target, self.tau)
            negative = torch.ones_like(in_h)
            negative[torch.arange(len(target), device=target.device), target] = False
            self._in_h += in_h.sum(dim=0)
            self._negative += negative.sum(dim=0)
            self._samples += len(target)

    def summary(self, class_names: Sequence[str]) -> dict[str, float]:
        """``confusion_tau``, ``confusion_set_size`` (mean |H| per image) and per class
        ``in_confusion_set_<class>`` (share of its negative occurrences in H; NaN when it was
        never a negative); then the tally restarts."""
        in_h = self._in_h.cpu().numpy()
        negative = self._negative.cpu().numpy()
        samples = float(self._samples)
        out = {
            "confusion_tau": self.tau,
            "confusion_set_size": float(in_h.sum() / samples) if samples else float("nan"),
        }
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = np.where(negative > 0, in_h / np.maximum(negative, 1), np.nan)
        for name, rate in zip(class_names, rates, strict=True):
            out[f"in_confusion_set_{name}"] = float(rate)
        self._in_h.zero_()
        self._negative.zero_()
        self._samples.zero_()
        return out


def expected_calibration_error(
    y_true: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Top-label ECE: the mean |accuracy - confidence| over equal-width confidence bins,
    weighted by their share of images (Guo et al. 2017, eq. 3). 0 is perfectly calibrated."""
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    if len(y_true) == 0:
        return float("nan")
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in np.unique(which):
        members = which == b
        total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(total / len(y_true))


def prediction_mechanism(
    y_true: np.ndarray, proba: np.ndarray, tau: float, class_names: Sequence[str]
) -> dict[str, float]:
    """The mechanism on one run's predictions (e.g. its test set), from probabilities alone.

    Returns ``blind_spot_rate`` (share of images where some wrong class ranks above the true
    class but lies outside H), ``blind_spot_<class>`` (the same among the images of that true
    class; NaN for a class with no image), ``confusion_set_size`` (mean |H|), ``logit_spread``
    (the mean over images of the sd of the logits across classes, from log-probabilities: the
    same up to a per-image shift) and ``ece``.
    """
    import torch

    from cce_bench.losses import confusion_set

    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    logits = np.log(np.clip(proba, np.finfo(np.float64).tiny, None))
    target = torch.from_numpy(y_true)
    in_h = confusion_set(torch.from_numpy(logits), target, tau).numpy()
    true_logit = logits[np.arange(len(y_true)), y_true]
    outranks = logits > true_logit[:, None]  # the true class never outranks itself
    blind = (outranks & ~in_h).any(axis=1)
    out = {
        "blind_spot_rate": float(blind.mean()) if len(blind) else float("nan"),
        "confusion_set_size": float(in_h.sum(axis=1).mean()) if len(blind) else float("nan"),
        "logit_spread": float(logits.std(axis=1).mean()) if len(blind) else float("nan"),
        "ece": expected_calibration_error(y_true, proba),
    }
    for index, name in enumerate(class_names):
        members = y_true == index
        out[f"blind_spot_{name}"] = float(blind[members].mean()) if members.any() else float("nan")
    return out
