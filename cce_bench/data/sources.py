"""Data sources by name: ``load_source("ham10000", path)`` -> ``LabeledImages``.

Every source maps its labels to ``HAM10000_CLASSES`` (alphabetical akiec .. vasc), so studies,
metrics and reports never see a source's own label order. Sources:

- ``ham10000``: ``HAM10000_metadata.csv`` (original or Dataverse variant) + JPEGs below it;
- ``isic2018``: ISIC 2018 Task 3 one-hot ground truth + images (also an external test set);
- ``dermamnist``: a MedMNIST ``.npz`` with its official split;
- ``hmnist``: Kaggle's ``hmnist_*.csv`` pixel tables;
- ``synthetic``: the procedural generator (no path; options ``n_images``, ``image_size``,
  ``seed``, ``difficulty``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cce_bench.data.array_sources import load_dermamnist, load_hmnist
from cce_bench.data.ham10000 import (
    is_ham10000_metadata,
    is_isic2018_ground_truth,
    load_ham10000,
    load_isic2018,
)
from cce_bench.data.image_folder import DatasetNotFoundError, csv_header
from cce_bench.data.labeled import LabeledImages
from cce_bench.data.synthetic import generate_synthetic
from cce_bench.errors import DataError, UnknownNameError, did_you_mean


class SourceOptionError(DataError):
    """A source was given an option it does not take."""


def _load_synthetic(
    path: str | os.PathLike[str] | None,
    *,
    n_images: int = 2000,
    image_size: int = 64,
    seed: int = 0,
    difficulty: float = 0.5,
) -> LabeledImages:
    if path is not None:
        raise SourceOptionError(
            f"source 'synthetic' generates its images and takes no path (got {path}); to read "
            "a set written by `cce-bench data synth`, use source 'ham10000'."
        )
    return generate_synthetic(n_images, image_size, seed=seed, difficulty=difficulty)


SOURCES: dict[str, Callable[..., LabeledImages]] = {
    "ham10000": load_ham10000,
    "isic2018": load_isic2018,
    "dermamnist": load_dermamnist,
    "hmnist": load_hmnist,
    "synthetic": _load_synthetic,
}


def available_sources() -> list[str]:
    """Names accepted by ``load_source`` (and a study's ``data.source``)."""
    return list(SOURCES)


def load_source(
    name: str, path: str | os.PathLike[str] | None = None, **options: Any
) -> LabeledImages:
    """Read (or generate) the source called ``name``; ``None`` options are ignored.

    Example: ``load_source("ham10000", "data/ham10000", metadata="data/ham10000/meta.csv")``.
    """
    if name not in SOURCES:
        hint = did_you_mean(name, SOURCES)
        raise UnknownNameError(
            f"unknown data source {name!r}; choose one of {available_sources()}.{hint}"
        )
    loader = SOURCES[name]
    given = {key: value for key, value in options.items() if value is not None}
    accepted = [p for p in inspect.signature(loader).parameters if p != "path"]
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise SourceOptionError(
            f"source {name!r} does not take option(s) {unknown}; it takes {accepted or 'none'}."
        )
    return loader(path, **given)


def detect_source(path: str | os.PathLike[str]) -> str:
    """The source a file or folder looks like, from its file names and CSV headers.

    A ``.npz`` is DermaMNIST; a CSV of ``pixel...`` columns is hmnist; a one-hot
    ``image,MEL,...`` CSV is ISIC 2018; HAM10000 metadata (``lesion_id,image_id,dx``) is
    HAM10000. A folder is judged by the files directly in it, HAM10000 metadata first.
    """
    target = Path(path).expanduser()
    if not target.exists():
        raise DatasetNotFoundError(f"{target}: no such file or folder; check the path.")
    files = [target] if target.is_file() else sorted(p for p in target.iterdir() if p.is_file())
    headers = {p: csv_header(p) for p in files if p.suffix.lower() == ".csv"}
    checks: list[tuple[str, Callable[[Path], bool]]] = [
        ("ham10000", lambda p: is_ham10000_metadata(headers.get(p, []))),
        ("isic2018", lambda p: is_isic2018_ground_truth(headers.get(p, []))),
        ("hmnist", lambda p: "label" in headers.get(p, []) and _has_pixel_columns(headers[p])),
        ("dermamnist", lambda p: p.suffix.lower() == ".npz"),
    ]
    for name, matches in checks:
        if any(matches(p) for p in files):
            return name
    raise DataError(
        f"{target}: cannot tell which source this is (no HAM10000 metadata, ISIC 2018 ground "
        f"truth, hmnist CSV or .npz directly in it); pass --source, one of {available_sources()}."
    )


def _has_pixel_columns(header: list[str]) -> bool:
    return any(column.startswith("pixel") for column in header)
