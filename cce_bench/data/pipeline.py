"""The one path from a dataset to ``train_run``: source -> split -> decoded cache.

``cce-bench train`` and the study engine both call ``load_run_data``, so a single run from the
command line sees exactly the images, split and preprocessing a study would.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cce_bench.data import SYNTHETIC_N_IMAGES
from cce_bench.data.prepare import prepare_data
from cce_bench.data.sources import detect_source, load_source
from cce_bench.data.splits import make_split, split_manifest

if TYPE_CHECKING:
    from cce_bench.data.labeled import LabeledImages, PreparedData

#: The synthetic set is a fixed dataset: its generator seed never follows the split seed, so
#: that changing the split reshuffles the same images instead of drawing new ones.
SYNTHETIC_DATA_SEED = 0


def load_run_data(
    source: str | None,
    path: str | os.PathLike[str] | None,
    *,
    image_size: int,
    split: str,
    test_fraction: float,
    val_fraction: float,
    split_seed: int,
    n_images: int | None = None,
    difficulty: float | None = None,
    resize_mode: str = "squash",
    metadata: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[..., Any] | None = None,
) -> tuple[LabeledImages, PreparedData, dict[str, Any]]:
    """Load a source, split it and decode it once at ``image_size``.

    ``source`` None (or ``"auto"``) detects the source from ``path``; ``"synthetic"`` needs no
    path and generates ``n_images`` images (``SYNTHETIC_N_IMAGES`` by default) at
    ``image_size`` and ``difficulty`` (None: the generator's default). ``resize_mode``
    (``squash``, ``center_crop`` or ``pad``) is how a non-square image becomes a square; it is
    part of the cache key (``cce_bench.data.cache``). ``metadata`` points HAM10000 / hmnist
    sources to their CSV when it is not beside the images. Returns the labelled images, the
    prepared data with parts ``train``/``val``/``test``, and the split manifest
    (``splits.split_manifest`` plus the split settings under ``"split"``).
    """
    if source in (None, "auto"):
        source = "synthetic" if path is None else detect_source(path)
    options = _source_options(source, image_size, n_images, difficulty, metadata)
    labeled = load_source(source, path, **options)
    parts = make_split(
        labeled, split, test_fraction=test_fraction, val_fraction=val_fraction, seed=split_seed
    )
    data = prepare_data(
        labeled,
        parts,
        size=image_size,
        resize_mode=resize_mode,
        cache_dir=cache_dir,
        progress=progress,
    )
    settings = {"kind": split, "test_fraction": test_fraction, "val_fraction": val_fraction}
    manifest = {"split": {**settings, "seed": split_seed}, **split_manifest(labeled, parts)}
    return labeled, data, manifest


def _source_options(
    source: str,
    image_size: int,
    n_images: int | None,
    difficulty: float | None,
    metadata: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """What the source's loader takes: the synthetic source's size and seed, a metadata CSV."""
    options: dict[str, Any] = {}
    if source == "synthetic":
        options.update(
            n_images=SYNTHETIC_N_IMAGES if n_images is None else n_images,
            image_size=image_size,
            seed=SYNTHETIC_DATA_SEED,
        )
        if difficulty is not None:
            options["difficulty"] = difficulty
    if metadata is not None:
        options["metadata"] = Path(metadata)
    return options


def split_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """How the split of freshly loaded data differs from a stored manifest; empty if it does not.

    Compared per part: the image ids in order, then the class counts, so that a moved or copied
    dataset continues a study only when it yields the same images in the same parts with the
    same labels (``data.path`` itself is not part of a study's fingerprint).
    """
    changes = []
    before_parts, now_parts = stored.get("parts", {}), current.get("parts", {})
    for part in sorted(set(before_parts) | set(now_parts)):
        before, now = before_parts.get(part, {}), now_parts.get(part, {})
        ids_before = [str(i) for i in before.get("image_ids", [])]
        ids_now = [str(i) for i in now.get("image_ids", [])]
        if ids_before != ids_now:
            gone = sorted(set(ids_before) - set(ids_now))
            new = sorted(set(ids_now) - set(ids_before))
            changes.append(
                f"part {part!r}: {len(ids_before)} images then, {len(ids_now)} now "
                f"({len(gone)} gone, e.g. {gone[:3]}; {len(new)} new, e.g. {new[:3]})"
            )
        elif before.get("class_counts") != now.get("class_counts"):
            changes.append(
                f"part {part!r}: class counts {before.get('class_counts')} then, "
                f"{now.get('class_counts')} now"
            )
    return changes
