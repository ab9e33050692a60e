"""The names study files give losses, their parameters and tunable ranges, without torch.

A study file names its losses ("ce", "cce_tau", ...), and checking those names and the tunable
ranges must not wait for torch (about 2 s to import) when the file is wrong. The registry
therefore lives here, and each factory imports the loss modules of :mod:`cce_bench.losses` only
when it builds one. Adding a loss is one factory decorated with :func:`register_loss`;
:mod:`cce_bench.losses` re-exports these functions, so either import works.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cce_bench.errors import LossInputError, UnknownNameError, did_you_mean

if TYPE_CHECKING:
    from torch import nn


class LossParameterError(LossInputError):
    """A loss was asked for with a parameter it does not take, or a value outside its range."""


@dataclass(frozen=True)
class _RegisteredLoss:
    factory: Callable[..., nn.Module]
    parameters: tuple[str, ...]
    tunable: Mapping[str, tuple[float, float]]


_REGISTRY: dict[str, _RegisteredLoss] = {}


def register_loss(
    name: str, *, tunable: Mapping[str, tuple[float, float]] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``factory(**params) -> nn.Module`` under ``name``, the name study files use.

    The factory's keyword arguments are the loss's parameters; ``tunable`` gives the default
    Optuna search range of those a study may tune.

    Example:
        >>> @register_loss("ce_sum_example")
        ... def _ce_sum() -> nn.Module:
        ...     from cce_bench.losses import CELoss
        ...     return CELoss(reduction="sum")
        >>> "ce_sum_example" in available_losses()
        True
        >>> del _REGISTRY["ce_sum_example"]
    """
    tunable = dict(tunable or {})

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        parameters = tuple(inspect.signature(factory).parameters)
        if name in _REGISTRY:
            raise ValueError(f"loss {name!r} is already registered")
        if not set(tunable) <= set(parameters):
            raise ValueError(f"loss {name!r}: tunable {sorted(tunable)} not in {parameters}")
        _REGISTRY[name] = _RegisteredLoss(factory, parameters, tunable)
        return factory

    return decorate


def _lookup(name: str) -> _RegisteredLoss:
    if name not in _REGISTRY:
        hint = did_you_mean(name, _REGISTRY)
        raise UnknownNameError(f"unknown loss {name!r}; known: {', '.join(_REGISTRY)}.{hint}")
    return _REGISTRY[name]


def available_losses() -> list[str]:
    """Names of the registered losses, in registration order."""
    return list(_REGISTRY)


def tunable_parameters(name: str) -> dict[str, tuple[float, float]]:
    """The parameters Optuna tunes for loss ``name`` and their default search ranges."""
    return dict(_lookup(name).tunable)


def get_loss(name: str, **params: float) -> nn.Module:
    """Build the loss registered as ``name`` with ``params`` (e.g. ``get_loss("focal", gamma=2)``).

    Raises:
        UnknownNameError: ``name`` is not registered (the message suggests the closest name).
        LossParameterError: a parameter the loss does not take, or a value out of its range.
    """
    entry = _lookup(name)
    for key in params:
        if key not in entry.parameters:
            takes = ", ".join(entry.parameters) or "no parameters"
            others = [other for other, e in _REGISTRY.items() if key in e.parameters]
            hint = f" Loss {others[0]!r} takes {key!r}." if others else ""
            raise LossParameterError(f"loss {name!r} takes {takes}, not {key!r}.{hint}")
    return entry.factory(**params)


@register_loss("ce")
def _ce() -> nn.Module:
    from cce_bench.losses import CELoss

    return CELoss()


@register_loss("cce")
def _cce() -> nn.Module:
    """The paper's CCE: tau fixed at 0."""
    from cce_bench.losses import CCELoss

    return CCELoss(tau=0.0)


@register_loss("cce_tau", tunable={"tau": (-1.0, 1.5)})
def _cce_tau(tau: float = 0.0) -> nn.Module:
    """CCE with the threshold tau as a parameter; tau = 0 is the paper, -1 keeps most negatives."""
    from cce_bench.losses import CCELoss

    return CCELoss(tau=tau)


@register_loss("focal", tunable={"gamma": (0.5, 5.0)})
def _focal(gamma: float = 2.0) -> nn.Module:
    """Focal loss; the range covers Lin et al.'s ablation (gamma 0.5 to 5)."""
    from cce_bench.losses import FocalLoss

    return FocalLoss(gamma)


@register_loss("label_smoothing", tunable={"epsilon": (0.0, 0.3)})
def _label_smoothing(epsilon: float = 0.1) -> nn.Module:
    """Label smoothing; Szegedy et al. use 0.1, the range brackets it."""
    from cce_bench.losses import LabelSmoothingLoss

    return LabelSmoothingLoss(epsilon)
