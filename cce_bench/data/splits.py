"""Train / validation / test splits: the paper's, a lesion-grouped one, and DermaMNIST's own.

- ``paper``: stratified random by image, as the paper did (80/20). HAM10000 holds several
  images of many lesions (10,015 images of 7,470 lesions), so this split lets one lesion sit in
  both train and test; it is kept to reproduce the paper, and the report says so.
- ``lesion``: stratified and grouped by ``lesion_id``: no lesion has images on both sides.
- ``official``: the split a source ships (DermaMNIST's ``train``/``val``/``test`` arrays).

The validation part is carved out of the training part with the same rule, so tuning never
sees a test image (nor, for ``lesion``, a test lesion). ``test_fraction`` and ``val_fraction``
are fractions of the whole set (the study file's convention: 0.2 and 0.15 leave 0.65 to train).
Every split is a pure function of the labels, the groups and ``seed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cce_bench.data.labeled import LabeledImages
from cce_bench.errors import DataError, UnknownNameError, did_you_mean

SPLIT_KINDS: tuple[str, ...] = ("paper", "lesion", "official")
PART_NAMES: tuple[str, ...] = ("train", "val", "test")


class SplitError(DataError):
    """A split cannot be made from this dataset with these settings."""


def available_splits() -> list[str]:
    """Names accepted by ``make_split(kind=...)``."""
    return list(SPLIT_KINDS)


def make_split(
    labeled: LabeledImages,
    kind: str,
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Disjoint sorted int64 indices into ``labeled`` for ``train``, ``val`` and ``test``.

    Example: ``make_split(labeled, "lesion", test_fraction=0.2, val_fraction=0.15, seed=0)``.
    """
    if kind not in SPLIT_KINDS:
        hint = did_you_mean(kind, SPLIT_KINDS)
        raise UnknownNameError(f"unknown split {kind!r}; choose one of {list(SPLIT_KINDS)}.{hint}")
    if kind == "official":
        return _official_split(labeled)
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise SplitError(
            f"test_fraction={test_fraction}, val_fraction={val_fraction}: each must be in (0, 1) "
            "(val may be 0) with a sum below 1; e.g. 0.2 and 0.15."
        )
    labels = np.asarray(labeled.labels)
    groups = np.arange(len(labels)) if kind == "paper" else np.asarray(labeled.group_ids)
    rng = np.random.default_rng(seed)
    everything = np.arange(len(labels))
    test = _stratified_group_pick(everything, labels, groups, test_fraction, rng)
    rest = np.setdiff1d(everything, test)
    val_share = val_fraction / (1.0 - test_fraction)
    val = _stratified_group_pick(rest, labels, groups, val_share, rng)
    train = np.setdiff1d(rest, val)
    if len(train) == 0 or len(test) == 0:
        raise SplitError(
            f"{labeled.source}: {len(labels)} images are too few for a {kind} split with "
            f"test_fraction={test_fraction}; use more images or a larger fraction."
        )
    return {"train": train, "val": val, "test": np.sort(test)}


def _stratified_group_pick(
    candidates: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Whole groups of ``candidates`` whose per-class image counts come closest to ``fraction``.

    A greedy stratified group shuffle split: groups are visited in random order and a group is
    taken when taking it brings the picked per-class counts closer to their targets in L1.
    With single-image groups this ends within half an image of every class's target, i.e. the
    rounded target. (Visiting large lesions first fits the targets a little tighter but, on
    HAM10000, filled the test part with multi-image lesions: 2,005 images of only 727
    lesions; random order keeps the images-per-lesion mix of every part alike.)
    scikit-learn's ``StratifiedGroupKFold`` does the same job, but only for fractions 1/k;
    the study's fractions (0.2 of all, then 0.15 / 0.8 of the rest) are not.
    """
    if fraction <= 0 or len(candidates) == 0:
        return np.empty(0, dtype=np.int64)
    group_codes, group_of = np.unique(groups[candidates], return_inverse=True)
    classes, label_of = np.unique(labels[candidates], return_inverse=True)
    counts = np.zeros((len(group_codes), len(classes)), dtype=np.int64)
    np.add.at(counts, (group_of, label_of), 1)
    target = counts.sum(axis=0) * fraction
    picked_counts = np.zeros(len(classes), dtype=np.float64)
    order = rng.permutation(len(group_codes))
    picked = np.zeros(len(group_codes), dtype=bool)
    for group in order:
        with_group = picked_counts + counts[group]
        gain = np.abs(picked_counts - target).sum() - np.abs(with_group - target).sum()
        if gain > 0:
            picked[group] = True
            picked_counts = with_group
    return np.sort(candidates[picked[group_of]]).astype(np.int64)


def _official_split(labeled: LabeledImages) -> dict[str, np.ndarray]:
    if labeled.official_parts is None:
        raise SplitError(
            f"source {labeled.source!r} ships no split of its own; use split 'paper' or "
            "'lesion' (only dermamnist has an official split)."
        )
    parts = np.asarray(labeled.official_parts)
    return {name: np.flatnonzero(parts == name).astype(np.int64) for name in PART_NAMES}


def split_manifest(labeled: LabeledImages, parts: dict[str, np.ndarray]) -> dict[str, Any]:
    """A JSON-able record of a split: per part, its image ids, image, lesion and class counts.

    Saved beside a study's results so a report can prove which images were trained and tested
    on, and that no lesion crossed parts (``shared_lesions`` between every pair of parts).
    ``lesion_ids`` (one per image id, same order) lets the report resample the test images by
    lesion: images of one lesion are not independent, so a bootstrap that draws them one by one
    understates how much the test set's own sampling moves a metric.
    """
    image_ids = np.asarray(labeled.image_ids).astype(str)
    group_ids = np.asarray(labeled.group_ids).astype(str)
    labels = np.asarray(labeled.labels)
    manifest_parts: dict[str, Any] = {}
    for name, index in parts.items():
        class_counts = np.bincount(labels[index], minlength=labeled.num_classes)
        manifest_parts[name] = {
            "images": len(index),
            "lesions": len(np.unique(group_ids[index])),
            "class_counts": dict(zip(labeled.class_names, map(int, class_counts), strict=True)),
            "image_ids": image_ids[index].tolist(),
            "lesion_ids": group_ids[index].tolist(),
        }
    names = list(parts)
    shared = {
        f"{a}/{b}": len(np.intersect1d(group_ids[parts[a]], group_ids[parts[b]]))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }
    return {
        "source": labeled.source,
        "images": len(labeled),
        "lesions": len(np.unique(group_ids)),
        "class_names": list(labeled.class_names),
        "shared_lesions": shared,
        "parts": manifest_parts,
    }
