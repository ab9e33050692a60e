"""The check of ``models.pretrained``: each backbone's initial weights, before any work starts.

A weights file is resolved against the study file's folder, hashed (SHA-256, the name under
which run records and the report cite it), read (``weights_only=True``) and fitted to its
backbone key for key and shape for shape, so that a file saved from another architecture fails
here in seconds instead of in every run's worker, after Ray started and the results folder was
written.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from pathlib import Path

from cce_bench.config._reader import StudyFileError
from cce_bench.config.schema import ModelsSpec
from cce_bench.errors import ModelError
from cce_bench.models import check_weights_fit, resolve_backbone, weights_sha256

Fail = Callable[[str, str], StudyFileError]
Resolve = Callable[[Path], Path | None]


def check_initialisations(models: ModelsSpec, *, fail: Fail, resolve: Resolve) -> ModelsSpec:
    """``models`` with its weights files resolved and hashed (``weights_sha256``), or the first
    problem raised as ``fail(key, detail)``."""
    _check_form(models, fail)
    files = {}
    for backbone in models.backbones:
        initialisation = models.initialisation(backbone)
        if isinstance(initialisation, Path):
            files[backbone] = _existing_file(initialisation, _key(models, backbone), fail, resolve)
    hashes = {backbone: weights_sha256(path) for backbone, path in files.items()}
    _one_architecture_per_file(files, hashes, fail)
    for backbone, path in files.items():
        try:
            check_weights_fit(backbone, path)
        except ModelError as error:
            key = _key(models, backbone)
            raise fail(key, f"`{key}`: {error}") from error
    pretrained = models.pretrained
    if isinstance(pretrained, dict):
        pretrained = {name: files.get(name, value) for name, value in pretrained.items()}
    elif isinstance(pretrained, Path):
        pretrained = files[models.backbones[0]]
    return dataclasses.replace(models, pretrained=pretrained, weights_sha256=hashes)


def _check_form(models: ModelsSpec, fail: Fail) -> None:
    """One file for one backbone only; a table names backbones of the study only."""
    pretrained = models.pretrained
    if isinstance(pretrained, Path) and len(models.backbones) > 1:
        raise fail(
            "models.pretrained",
            f"`models.pretrained` is one weights file for {len(models.backbones)} backbones "
            f"({', '.join(models.backbones)}), but a file fits one architecture; use the "
            f"table form, one line per backbone: [models.pretrained] then "
            f'"{models.backbones[0]}" = "{pretrained}"',
        )
    if not isinstance(pretrained, dict):
        return
    for name in pretrained:
        if name not in models.backbones:
            close = difflib.get_close_matches(name, models.backbones, n=1)
            hint = f"did you mean {close[0]!r}, or " if close else ""
            raise fail(
                "models.pretrained",
                f"`models.pretrained` names {name!r}, which is not one of "
                f"`models.backbones` ({', '.join(models.backbones)}); {hint}add it to "
                "the backbones, or remove its line",
            )


def _key(models: ModelsSpec, backbone: str) -> str:
    """The dotted key that set ``backbone``'s weights."""
    table = isinstance(models.pretrained, dict)
    return f"models.pretrained.{backbone}" if table else "models.pretrained"


def _existing_file(path: Path, key: str, fail: Fail, resolve: Resolve) -> Path:
    weights = resolve(path)
    if weights is None or not weights.is_file():
        raise fail(
            key,
            f"`{key}` weights file {weights} does not exist; fix the path, "
            "or set it to true (timm's weights) or false (random initialisation)",
        )
    return weights


def _one_architecture_per_file(files: dict[str, Path], hashes: dict[str, str], fail: Fail) -> None:
    """Refuse one set of weights (same contents, whatever the path) for two timm models:
    weights fit the architecture they were saved from, and the check of keys and shapes cannot
    tell two models that share them (``efficientnet_lite0`` and ``tf_efficientnet_lite0``)
    apart. ``x`` and ``x@label`` are one model and may share a file."""
    first: dict[str, str] = {}
    for backbone, digest in hashes.items():
        other = first.setdefault(digest, backbone)
        if _architecture(other) != _architecture(backbone):
            raise fail(
                "models.pretrained",
                f"`models.pretrained` gives the same weights ({files[backbone]}) to "
                f"{other} and {backbone}, two different timm models "
                f"({_architecture(other)}, {_architecture(backbone)}); a weights file fits "
                "the architecture it was saved from: give each backbone its own file, or false",
            )


def _architecture(backbone: str) -> str:
    """The timm model a backbone builds, without variant label or pretrained tag."""
    return resolve_backbone(backbone).timm_name.split(".", 1)[0]
