"""The loss family: cross entropy, the paper's Confusion-aware Cross Entropy, and two baselines.

Every loss takes ``logits`` ``[N, C]`` (any float dtype) and ``target`` ``[N]`` int64 class
indices and returns a float32 loss (float64 for float64 logits): float16/bfloat16 logits from
autocast are upcast first, because exp and log-sum-exp in half precision lose the small
probabilities a loss is made of. Every loss is reachable by the name a study file uses,
``get_loss("cce_tau", tau=0.5)``; adding one is one factory decorated with :func:`register_loss`
(the registry lives in :mod:`cce_bench.loss_registry`, which imports no torch, so that a study
file's loss names are checked without it; this module re-exports its functions).

Input checks run on every training step, so they stay cheap: shapes and dtypes are metadata, and
the target range is one ``aminmax`` on CPU. On an accelerator the range is asserted on the device
(``torch._assert_async``) instead of being read back, so a loss call never forces a host-device
sync; a bad target there fails as a device-side assert, as in ``F.cross_entropy``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from cce_bench.errors import LossInputError
from cce_bench.loss_registry import (
    LossParameterError,
    available_losses,
    get_loss,
    register_loss,
    tunable_parameters,
)

__all__ = [
    "CCELoss",
    "CELoss",
    "FocalLoss",
    "LabelSmoothingLoss",
    "LossParameterError",
    "available_losses",
    "cce_loss",
    "ce_loss",
    "confusion_set",
    "focal_loss",
    "get_loss",
    "label_smoothing_loss",
    "register_loss",
    "tunable_parameters",
]

#: The values ``reduction`` takes, as in ``torch.nn.functional.cross_entropy``.
REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise LossParameterError(f"reduction={reduction!r} is not one of {REDUCTIONS}.")


def _shape_of(value: object) -> object:
    return tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__


def _check_inputs(logits: Tensor, target: Tensor, reduction: str) -> None:
    """Raise :class:`LossInputError` unless ``logits [N, C]`` and ``target [N]`` fit together."""
    _check_reduction(reduction)
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise LossInputError(
            f"logits must be a 2-D tensor [N, C]; got {_shape_of(logits)}. "
            "Flatten extra dimensions first."
        )
    if not logits.is_floating_point():
        raise LossInputError(f"logits must be floating point; got {logits.dtype}.")
    n, c = logits.shape
    if c < 2:
        raise LossInputError(f"logits have C = {c} classes; a classification loss needs C >= 2.")
    if not isinstance(target, Tensor) or target.shape != (n,):
        raise LossInputError(
            f"target must have shape ({n},) to match logits {(n, c)}; got {_shape_of(target)}."
        )
    if target.dtype != torch.int64:
        raise LossInputError(
            f"target must hold int64 class indices; got {target.dtype}. Use target.long()."
        )
    if target.device != logits.device:
        raise LossInputError(
            f"target is on {target.device} but logits are on {logits.device}; move one of them."
        )
    if n == 0:
        return
    if target.device.type == "cuda":  # checked on the device: no host sync per training step
        torch._assert_async((target >= 0).all() & (target < c).all(), "target outside [0, C)")
        return
    low, high = (int(v) for v in torch.aminmax(target))
    if low < 0 or high >= c:
        bad = low if low < 0 else high
        raise LossInputError(f"target holds class {bad}, outside [0, {c}) for C = {c} logits.")


def _float32_at_least(logits: Tensor) -> Tensor:
    """Upcast float16/bfloat16 to float32 (differentiably); float32 and float64 stay as they are."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


#: Valid values of each loss parameter (inclusive; tau may be -inf, which gives CE).
PARAMETER_RANGES: dict[str, tuple[float, float]] = {
    "tau": (-math.inf, math.inf),
    "gamma": (0.0, math.inf),
    "epsilon": (0.0, 1.0),
}


def _check_parameter(name: str, value: float) -> float:
    low, high = PARAMETER_RANGES[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LossParameterError(f"{name} must be a number; got {value!r}.") from None
    if not low <= number <= high:  # also rejects NaN
        raise LossParameterError(f"{name} = {value!r} is outside [{low}, {high}].")
    return number


def _confusion_threshold(
    logits: Tensor, true_logit: Tensor, hardest: Tensor, flat_target: Tensor, tau: float
) -> Tensor:
    """Per sample ``mu_neg + tau * sigma_neg``, capped just below the hardest negative logit.

    mu is ``(row sum - l_y) / (C - 1)``. sigma (population std, computed only when tau != 0)
    uses two passes, so logits of magnitude 1e4 with a small spread do not cancel. The cap
    ``nextafter(hardest, -inf)`` puts every negative equal to the hardest one into H.
    """
    c = logits.shape[1]
    mu = (logits.sum(dim=1) - true_logit) / (c - 1)
    if tau == math.inf:
        threshold = torch.full_like(mu, math.inf)
    elif tau != 0.0:
        squared_deviation = (logits - mu[:, None]).square_()
        squared_deviation.view(-1).index_fill_(0, flat_target, 0.0)
        sigma = (squared_deviation.sum(dim=1) / (c - 1)).sqrt_()
        threshold = mu + tau * sigma
    else:
        threshold = mu
    return torch.minimum(threshold, torch.nextafter(hardest, torch.full_like(hardest, -math.inf)))


class _ConfusionAwareCrossEntropy(torch.autograd.Function):
    """Per-sample CCE with the analytic gradient ``softmax over {y} ∪ H (0 elsewhere) - onehot``.

    Why a Function with in-place ops: measured at N = 65536, C = 7 (forward + backward, 1 CPU
    thread, relative to ``F.cross_entropy``), this is 0.36x, the same rule through autograd
    (``masked_fill`` + ``F.cross_entropy``) 1.7x, and ``torch.compile`` of it 1.5x. On CPU
    ``masked_fill``, ``where`` and ``log_softmax`` along a 7-wide dim are slow, and ``exp`` of
    ``-inf`` or of anything below ``log(tiny)`` leaves the vectorised path (5-10x slower). So
    ``exp`` only sees values clamped to ``[log(tiny), 0]``, and H is applied afterwards as a 0/1
    factor, which also makes the probability, and the gradient, of a negative outside H exactly 0.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, tau: float) -> Tensor:  # type: ignore[override]
        n, c = logits.shape
        logits = logits.contiguous()
        flat_target = torch.arange(n, device=logits.device) * c + target
        true_logit = logits.view(-1).take(flat_target)
        negative_logits = logits.clone()  # eq. 2: l_neg, with the true class masked by -inf
        negative_logits.view(-1).index_fill_(0, flat_target, -math.inf)
        hardest = negative_logits.amax(dim=1)
        row_max = torch.maximum(true_logit, hardest)  # NaN anywhere in a row propagates here
        # Terms below tiny cannot move a sum that is >= 1 (the row max contributes exp(0)).
        exponentials = (
            (logits - row_max[:, None]).clamp_(min=math.log(torch.finfo(logits.dtype).tiny)).exp_()
        )
        if tau != -math.inf:
            threshold = _confusion_threshold(logits, true_logit, hardest, flat_target, tau)
            # sign(l_j - threshold) is exact in floating point, so this is eq. 3's strict ">"
            # with no rounding; the true class (-inf here) is then put back into the sum.
            in_confusion_set = negative_logits.sub_(threshold[:, None]).sign_().clamp_(min=0.0)
            in_confusion_set.view(-1).index_fill_(0, flat_target, 1.0)
            exponentials.mul_(in_confusion_set)
        total = exponentials.sum(dim=1)
        probabilities = exponentials.div_(total[:, None])
        ctx.save_for_backward(probabilities, flat_target)
        return total.log_().add_(row_max - true_logit)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        probabilities, flat_target = ctx.saved_tensors
        grad = probabilities * grad_loss[:, None]
        grad.view(-1).index_add_(0, flat_target, -grad_loss)
        return grad, None, None


def cce_loss(logits: Tensor, target: Tensor, tau: float = 0.0, reduction: str = "mean") -> Tensor:
    """Confusion-aware Cross Entropy: CE restricted to the true class and the confused set H.

    With the true class removed from the logits (eq. 2), ``H = {j != y : l_j > mu_neg + tau *
    sigma_neg}`` for the mean and population standard deviation of the C - 1 negative logits,
    and the loss is ``-log(exp(l_y) / (exp(l_y) + sum_{j in H} exp(l_j)))`` (eq. 3).

    ``tau = 0`` is the paper's rule, ``tau = -inf`` gives plain cross entropy, and larger tau
    keeps fewer negatives. One deviation from the paper: the hardest negative (every negative
    equal to the largest one) is always in H. The paper's strict ``>`` leaves H empty when the
    negatives tie, e.g. always with C = 2, which gives a zero loss even for a wrong prediction.
    H is chosen without gradient; negatives outside H get exactly zero gradient. The loss is
    computed in float32 for float16/bfloat16 logits and is finite for logits up to 1e4 in
    magnitude; NaN logits give a NaN loss.

    Args:
        logits: ``[N, C]`` scores before softmax, C >= 2.
        target: ``[N]`` int64 true classes in ``[0, C)``.
        tau: how many negative-logit standard deviations above their mean a class must score to
            count as confused; a real number or ``-inf``/``inf``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample losses).

    Example:
        >>> logits = torch.tensor([[2.0, 1.5, -1.0, -3.0]])  # mu_neg = -0.83: H = {1}
        >>> round(cce_loss(logits, torch.tensor([0])).item(), 4)
        0.4741
        >>> round(ce_loss(logits, torch.tensor([0])).item(), 4)
        0.5087
    """
    tau = _check_parameter("tau", tau)
    _check_inputs(logits, target, reduction)
    per_sample = _ConfusionAwareCrossEntropy.apply(_float32_at_least(logits), target, tau)
    return _reduce(per_sample, reduction)


@torch.no_grad()
def confusion_set(logits: Tensor, target: Tensor, tau: float = 0.0) -> Tensor:
    """The confused set H of eq. 3 per sample, as ``cce_loss`` chooses it: bool ``[N, C]``.

    ``H[i, j]`` is True when class j is a negative of sample i scoring above ``mu_neg + tau *
    sigma_neg`` (capped just below the hardest negative, which is always in H); the true class
    is never in H. It depends on logit differences only, so log-probabilities give the same H
    as the logits they came from. Used to show what the loss does, never to train.
    """
    tau = _check_parameter("tau", tau)
    _check_inputs(logits, target, "none")
    logits = _float32_at_least(logits.detach()).contiguous()
    n, c = logits.shape
    flat_target = torch.arange(n, device=logits.device) * c + target
    true_logit = logits.view(-1).take(flat_target)
    negative_logits = logits.clone()
    negative_logits.view(-1).index_fill_(0, flat_target, -math.inf)
    hardest = negative_logits.amax(dim=1)
    if tau == -math.inf:
        in_h = torch.ones_like(logits, dtype=torch.bool)
    else:
        threshold = _confusion_threshold(logits, true_logit, hardest, flat_target, tau)
        in_h = negative_logits > threshold[:, None]
    in_h.view(-1).index_fill_(0, flat_target, False)
    return in_h


def ce_loss(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Cross entropy, ``-log softmax(l)_y`` (eq. 1), computed by ``F.cross_entropy``.

    Example:
        >>> round(ce_loss(torch.zeros(1, 4), torch.tensor([2])).item(), 4)  # log 4
        1.3863
    """
    _check_inputs(logits, target, reduction)
    return F.cross_entropy(_float32_at_least(logits), target, reduction=reduction)


def focal_loss(
    logits: Tensor, target: Tensor, gamma: float = 2.0, reduction: str = "mean"
) -> Tensor:
    """Focal loss ``-(1 - p_y)^gamma log p_y`` (Lin et al. 2017, eq. 4).

    ``gamma = 0`` is cross entropy. ``1 - p_y`` is computed as ``-expm1(log p_y)`` (exact when
    p_y is near 1) and floored at the smallest normal float, so ``gamma < 1`` keeps a finite
    gradient when a confident prediction rounds p_y to exactly 1.

    Example:
        >>> round(focal_loss(torch.zeros(1, 4), torch.tensor([2]), gamma=2.0).item(), 4)
        0.7798
    """
    gamma = _check_parameter("gamma", gamma)
    _check_inputs(logits, target, reduction)
    log_probs = F.log_softmax(_float32_at_least(logits), dim=1)
    true_log_prob = log_probs.gather(1, target[:, None]).squeeze(1)
    miss = (-torch.expm1(true_log_prob)).clamp(min=torch.finfo(log_probs.dtype).tiny)
    return _reduce(-(miss**gamma) * true_log_prob, reduction)


def label_smoothing_loss(
    logits: Tensor, target: Tensor, epsilon: float = 0.1, reduction: str = "mean"
) -> Tensor:
    """Cross entropy against ``(1 - epsilon) * onehot + epsilon / C`` (Szegedy et al. 2016, 7).

    ``epsilon = 0`` is cross entropy; computed by ``F.cross_entropy(label_smoothing=epsilon)``.

    Example:
        >>> round(label_smoothing_loss(torch.zeros(1, 4), torch.tensor([2])).item(), 4)
        1.3863
    """
    epsilon = _check_parameter("epsilon", epsilon)
    _check_inputs(logits, target, reduction)
    return F.cross_entropy(
        _float32_at_least(logits), target, reduction=reduction, label_smoothing=epsilon
    )


class _LossModule(nn.Module):
    """A loss function with its parameters and reduction fixed, as ``nn.Module`` users expect."""

    def __init__(self, function: Callable[..., Tensor], reduction: str, **params: float) -> None:
        super().__init__()
        _check_reduction(reduction)
        self._function = function
        self._parameter_names = tuple(params)
        for name, value in params.items():
            setattr(self, name, _check_parameter(name, value))  # loss.tau, loss.gamma, ...
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        params = {name: getattr(self, name) for name in self._parameter_names}
        return self._function(logits, target, **params, reduction=self.reduction)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in self._parameter_names)


class CELoss(_LossModule):
    """:func:`ce_loss` as a module."""

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__(ce_loss, reduction)


class CCELoss(_LossModule):
    """:func:`cce_loss` as a module; ``tau = 0`` is the paper's rule."""

    def __init__(self, tau: float = 0.0, *, reduction: str = "mean") -> None:
        super().__init__(cce_loss, reduction, tau=tau)


class FocalLoss(_LossModule):
    """:func:`focal_loss` as a module."""

    def __init__(self, gamma: float = 2.0, *, reduction: str = "mean") -> None:
        super().__init__(focal_loss, reduction, gamma=gamma)


class LabelSmoothingLoss(_LossModule):
    """:func:`label_smoothing_loss` as a module."""

    def __init__(self, epsilon: float = 0.1, *, reduction: str = "mean") -> None:
        super().__init__(label_smoothing_loss, reduction, epsilon=epsilon)
