"""From a source and its split to the ``PreparedData`` a training run consumes.

``prepare_data`` decodes (or maps) the images once through the cache and attaches the split;
``prepare_cache`` is what ``cce-bench data prepare`` runs: build the cache for a dataset at a
size ahead of a study, so that the study's first trial does not pay for decoding.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cce_bench.data.cache import Progress, cache_file, load_images, resize_mode_name
from cce_bench.data.labeled import LabeledImages, PreparedData
from cce_bench.data.sources import detect_source, load_source


@dataclass(frozen=True)
class CacheSummary:
    """What ``prepare_cache`` did: the cache file (None for in-memory sources) and its cost."""

    source: str
    images: int
    size: int
    resize_mode: str
    cache_file: Path | None
    reused: bool
    seconds: float
    megabytes: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


def prepare_data(
    labeled: LabeledImages,
    parts: dict[str, np.ndarray],
    *,
    size: int,
    resize_mode: str = "squash",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> PreparedData:
    """Images decoded to ``size`` (via the cache) plus the split's parts, for ``train_run``."""
    images = load_images(
        labeled, size=size, resize_mode=resize_mode, cache_dir=cache_dir, progress=progress
    )
    return PreparedData(
        images=images,
        labels=np.asarray(labeled.labels, dtype=np.int64),
        image_ids=np.asarray(labeled.image_ids),
        group_ids=np.asarray(labeled.group_ids),
        class_names=tuple(labeled.class_names),
        parts={name: np.asarray(index, dtype=np.int64) for name, index in parts.items()},
    )


def prepare_cache(
    path: str | os.PathLike[str],
    *,
    size: int,
    source: str | None = None,
    metadata: str | os.PathLike[str] | None = None,
    resize_mode: str = "squash",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> CacheSummary:
    """Load the dataset at ``path`` (source detected unless given) and build its cache."""
    name = source or detect_source(path)
    labeled = load_source(name, path, metadata=metadata)
    mode = resize_mode_name(resize_mode)
    target = cache_file(labeled, size=size, resize_mode=mode, cache_dir=cache_dir)
    reused = target is not None and target.is_file()
    started = time.perf_counter()
    images = load_images(
        labeled, size=size, resize_mode=mode, cache_dir=cache_dir, progress=progress
    )
    return CacheSummary(
        source=name,
        images=len(labeled),
        size=size,
        resize_mode=mode,
        cache_file=target,
        reused=reused,
        seconds=time.perf_counter() - started,
        megabytes=images.nbytes / 2**20,
    )
