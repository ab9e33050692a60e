"""The two shapes data takes on its way to a model.

``LabeledImages`` is what a source reads off disk: ids, labels, lesion groups, and either file
paths (decoded later, once, into the cache) or images already in memory (DermaMNIST, hmnist,
synthetic). ``PreparedData`` is what a training run consumes: every image decoded to one square
size as uint8 NHWC plus the split manifest as index arrays. One ``PreparedData`` is put in Ray's
object store per study and image size, so its numpy arrays reach every task zero-copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: HAM10000 diagnosis codes in the alphabetical order every source maps its labels to.
HAM10000_CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")

#: Image counts per class in HAM10000 (Tschandl et al. 2018, Table 1; verified on the metadata).
HAM10000_CLASS_COUNTS: dict[str, int] = {
    "akiec": 327,
    "bcc": 514,
    "bkl": 1099,
    "df": 115,
    "mel": 1113,
    "nv": 6705,
    "vasc": 142,
}

#: The pairs the paper calls easily confused (section 1, Fig. 1), tested by the report.
CONFUSED_PAIRS: tuple[tuple[str, str], ...] = (("nv", "mel"), ("akiec", "bcc"), ("bkl", "mel"))


@dataclass(frozen=True)
class LabeledImages:
    """A labelled image collection as read from its source, before any decoding or split.

    Exactly one of ``paths`` (files to decode) and ``images`` (uint8 NHWC in memory) is set.
    ``group_ids`` holds the lesion id of each image (the image id itself when the source has no
    grouping), so that a grouped split never puts one lesion's images on both sides.
    ``official_parts`` holds a part name ("train", "val", "test") per image for sources that ship
    their own split (DermaMNIST), else None.
    """

    source: str
    image_ids: np.ndarray
    labels: np.ndarray
    group_ids: np.ndarray
    class_names: tuple[str, ...] = HAM10000_CLASSES
    paths: tuple[Path, ...] | None = None
    images: np.ndarray | None = None
    official_parts: np.ndarray | None = None
    root: Path | None = None
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class PreparedData:
    """Decoded images at one size plus the split, ready for ``train_run``.

    ``parts`` maps a part name ("train", "val", "test", optionally "external") to int64 indices
    into ``images``; a run names the parts it trains on and the part it evaluates.
    """

    images: np.ndarray
    labels: np.ndarray
    image_ids: np.ndarray
    group_ids: np.ndarray
    class_names: tuple[str, ...]
    parts: dict[str, np.ndarray] = field(default_factory=dict)

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        """Pickle every array as a plain ``ndarray``, so its bytes go out of band.

        ``np.memmap`` (the decoded cache, ``cache.load_images``) is an ndarray subclass, and
        numpy pickles a subclass in-band even under protocol 5: Ray would copy the whole image
        array into every run's heap (1.5-4.3 GB at 224-380 px) instead of placing it once in
        the node's object store, where every run on the node maps the same zero-copy copy.
        A plain view of the mapped file has the same bytes, and no copy is made here.
        """
        return (
            PreparedData,
            (
                _plain(self.images),
                _plain(self.labels),
                _plain(self.image_ids),
                _plain(self.group_ids),
                self.class_names,
                {name: _plain(index) for name, index in self.parts.items()},
            ),
        )

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def indices(self, part_names: tuple[str, ...] | list[str] | str) -> np.ndarray:
        """Indices of the union of the named parts, in a stable order."""
        names = (part_names,) if isinstance(part_names, str) else tuple(part_names)
        missing = [name for name in names if name not in self.parts]
        if missing:
            raise KeyError(f"no part {missing} in prepared data (have {sorted(self.parts)})")
        return np.concatenate([self.parts[name] for name in names]).astype(np.int64)


def _plain(array: np.ndarray) -> np.ndarray:
    """``array`` as a base-class ``ndarray`` view (a memmap's view reads the same pages)."""
    return array.view(np.ndarray) if type(array) is not np.ndarray else array
