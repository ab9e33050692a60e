"""What ``cce-bench data check`` reports: counts, image sizes and problems of a dataset.

A check reads labels and file headers only (no pixel decoding), so it takes about a second on
all of HAM10000. A metadata-only folder is still summarised from its metadata, with the
missing images listed as the problem, because "which labels does this CSV hold" is a question
people ask of it.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cce_bench.data.image_folder import MissingImagesError
from cce_bench.data.labeled import LabeledImages
from cce_bench.data.sources import detect_source, load_source

_SHOWN = 5

#: The version of ``data check --json``'s shape; removing or renaming a field increments it.
DATA_CHECK_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DatasetCheck:
    """A dataset's summary: ``problems`` make it unusable as is, ``warnings`` do not."""

    source: str
    path: Path | None
    images: int
    lesions: int
    class_counts: dict[str, int]
    image_sizes: dict[str, int]
    images_found: int
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json_dict(self) -> dict[str, Any]:
        """What ``cce-bench data check --json`` prints (docs/data-check.schema.json)."""
        return {
            "schema_version": DATA_CHECK_SCHEMA_VERSION,
            "source": self.source,
            "path": None if self.path is None else str(self.path),
            "ok": self.ok,
            "images": self.images,
            "images_found": self.images_found,
            "lesions": self.lesions,
            "class_counts": dict(self.class_counts),
            "image_sizes": dict(self.image_sizes),
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


def check_dataset(
    path: str | os.PathLike[str] | None,
    *,
    source: str | None = None,
    metadata: str | os.PathLike[str] | None = None,
) -> DatasetCheck:
    """Summarise the dataset at ``path`` (source detected from its files unless given).

    Errors that leave nothing to count (no metadata, a missing column, an unknown ``dx``)
    propagate as their ``DataError``; listed-but-missing images and unreadable files become
    ``problems`` of the returned check.
    """
    name = source or detect_source(path)
    problems: list[str] = []
    found: tuple[Path, ...] | None = None  # None: every listed image has its file
    try:
        labeled = load_source(name, path, metadata=metadata)
    except MissingImagesError as error:
        if error.listed is None:
            raise
        labeled, found = error.listed, error.found
        problems.append(str(error))
    sizes, unreadable = _image_sizes(labeled, found)
    if unreadable:
        shown = ", ".join(str(p) for p in unreadable[:_SHOWN])
        problems.append(
            f"{len(unreadable)} file(s) cannot be opened as images (first: {shown}); replace "
            "or delete them and their metadata rows."
        )
    counts = np.bincount(labeled.labels, minlength=labeled.num_classes)
    files = len(labeled) if found is None else len(found)
    return DatasetCheck(
        source=name,
        path=Path(path) if path is not None else None,
        images=len(labeled),
        lesions=len(np.unique(labeled.group_ids)),
        class_counts=dict(zip(labeled.class_names, map(int, counts), strict=True)),
        image_sizes=sizes,
        images_found=files - len(unreadable),
        problems=tuple(problems),
        warnings=labeled.warnings,
    )


def _image_sizes(
    labeled: LabeledImages, found: tuple[Path, ...] | None = None
) -> tuple[dict[str, int], list[Path]]:
    """``"WxH"`` -> image count, read from file headers (Pillow decodes no pixels on open).

    ``found``: the files that exist when some listed images have none (else every path).
    """
    if labeled.images is not None:
        _, height, width, _ = labeled.images.shape
        return {f"{width}x{height}": len(labeled)}, []
    paths = found if found is not None else labeled.paths
    if paths is None:
        return {}, []
    from PIL import Image, UnidentifiedImageError

    sizes: Counter[str] = Counter()
    unreadable: list[Path] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (UnidentifiedImageError, OSError):
            unreadable.append(path)
            continue
        sizes[f"{width}x{height}"] += 1
    return dict(sizes.most_common()), unreadable
