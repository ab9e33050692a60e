"""The names a command-line option accepts, as ``Literal`` types so that Typer offers them to
shell completion and lists them in ``--help`` and in its error for a wrong one.

Losses, data sources and dataset names stay plain strings with a completion list
(:func:`completion`): the library refuses a wrong one itself, with the closest name ("did you
mean 'cce_tau'?"), which a choice type's error would lose.

They repeat the library's registries (``cce_bench.losses``, ``cce_bench.data``, ...) rather
than import them, because importing those loads torch, and ``--help`` and completion must stay
fast; ``tests/test_cli_choices.py`` fails when a registry and its choice drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

LossName = Literal["ce", "cce", "cce_tau", "focal", "label_smoothing"]
SplitName = Literal["paper", "lesion", "official"]
DeviceName = Literal["auto", "cpu", "cuda"]
SourceName = Literal["ham10000", "isic2018", "dermamnist", "hmnist", "synthetic"]
DatasetName = Literal[
    "ham10000", "isic2018-test", "dermamnist", "dermamnist-64", "dermamnist-128", "dermamnist-224"
]
ResizeModeName = Literal["squash", "center_crop", "pad"]
PolicyName = Literal["none", "flips", "standard", "strong"]


def names(choice: object) -> tuple[str, ...]:
    """The names of a choice type, in order: ``names(SplitName)`` -> ``("paper", ...)``."""
    return tuple(str(name) for name in get_args(choice))


def completion(choice: object) -> Callable[[str], list[str]]:
    """A Typer ``autocompletion`` callback offering the names of ``choice`` that match."""

    def complete(incomplete: str) -> list[str]:
        return [name for name in names(choice) if name.startswith(incomplete)]

    return complete
