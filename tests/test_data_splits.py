"""Splits: disjoint parts, no lesion on two sides, stratified counts, seeded, a JSON manifest."""

import json

import numpy as np
import pytest

from cce_bench.data.labeled import LabeledImages
from cce_bench.data.splits import SplitError, make_split, split_manifest
from cce_bench.errors import UnknownNameError

PROPORTIONS = np.array([327, 514, 1099, 115, 1113, 6705, 142]) / 10015


def _labeled(n_lesions: int = 450, seed: int = 0, official_parts=None) -> LabeledImages:
    """Lesions of 1-4 images each with HAM10000's class mix (labels and groups only)."""
    rng = np.random.default_rng(seed)
    lesion_labels = rng.choice(7, n_lesions, p=PROPORTIONS)
    sizes = rng.choice([1, 1, 1, 2, 2, 3, 4], n_lesions)
    labels = np.repeat(lesion_labels, sizes)
    groups = np.repeat([f"HAM_{i:07d}" for i in range(n_lesions)], sizes)
    ids = np.array([f"ISIC_{i:07d}" for i in range(len(labels))])
    return LabeledImages(
        "test",
        ids,
        labels,
        groups,
        official_parts=official_parts(len(labels)) if official_parts else None,
    )


def _split(labeled, kind="lesion", seed=0, test_fraction=0.2, val_fraction=0.15):
    return make_split(
        labeled, kind, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed
    )


@pytest.mark.parametrize("kind", ["paper", "lesion"])
def test_parts_are_disjoint_int64_and_cover_every_image(kind):
    labeled = _labeled()
    parts = _split(labeled, kind)
    joined = np.concatenate([parts["train"], parts["val"], parts["test"]])
    assert all(index.dtype == np.int64 for index in parts.values())
    assert np.array_equal(np.sort(joined), np.arange(len(labeled)))


def test_lesion_split_has_no_shared_lesion():
    labeled = _labeled()
    parts = _split(labeled, "lesion")
    lesions = {name: set(labeled.group_ids[index]) for name, index in parts.items()}
    assert not lesions["train"] & lesions["test"]
    assert not lesions["train"] & lesions["val"]
    assert not lesions["val"] & lesions["test"]


def test_paper_split_class_counts_are_within_one_image_of_the_target():
    labeled = _labeled(seed=1)
    parts = _split(labeled, "paper", test_fraction=0.2, val_fraction=0.15)
    totals = np.bincount(labeled.labels, minlength=7)
    test_counts = np.bincount(labeled.labels[parts["test"]], minlength=7)
    assert np.all(np.abs(test_counts - 0.2 * totals) <= 1)
    rest = totals - test_counts
    val_counts = np.bincount(labeled.labels[parts["val"]], minlength=7)
    assert np.all(np.abs(val_counts - 0.15 / 0.8 * rest) <= 1)


def test_lesion_split_keeps_the_class_mix_and_fractions_close():
    labeled = _labeled(n_lesions=1500, seed=2)
    parts = _split(labeled, "lesion")
    assert len(parts["test"]) / len(labeled) == pytest.approx(0.2, abs=0.01)
    assert len(parts["val"]) / len(labeled) == pytest.approx(0.15, abs=0.01)
    totals = np.bincount(labeled.labels, minlength=7)
    test_counts = np.bincount(labeled.labels[parts["test"]], minlength=7)
    assert np.all(np.abs(test_counts - 0.2 * totals) <= 2)


@pytest.mark.parametrize("kind", ["paper", "lesion"])
def test_same_seed_gives_the_same_split_and_another_seed_does_not(kind):
    labeled = _labeled()
    first, again, other = (
        _split(labeled, kind, 5),
        _split(labeled, kind, 5),
        _split(labeled, kind, 6),
    )
    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert not np.array_equal(first["test"], other["test"])


def test_official_split_returns_the_parts_the_source_ships():
    def parts_of(n):
        return np.array(["train", "val", "test"] * (n // 3) + ["train"] * (n % 3))

    labeled = _labeled(official_parts=parts_of)
    parts = _split(labeled, "official")
    for name in ("train", "val", "test"):
        assert np.array_equal(parts[name], np.flatnonzero(labeled.official_parts == name))


def test_official_split_of_a_source_without_one_is_rejected():
    with pytest.raises(SplitError, match="official split"):
        _split(_labeled(), "official")


def test_unknown_split_suggests_the_closest_name():
    with pytest.raises(UnknownNameError, match="lesion"):
        _split(_labeled(), "lesions")


def test_fractions_leaving_no_training_images_are_rejected():
    with pytest.raises(SplitError, match="sum below 1"):
        _split(_labeled(), "paper", test_fraction=0.6, val_fraction=0.4)


def test_manifest_is_json_and_records_counts_and_no_shared_lesions():
    labeled = _labeled()
    parts = _split(labeled, "lesion")
    manifest = json.loads(json.dumps(split_manifest(labeled, parts)))
    assert manifest["parts"]["test"]["images"] == len(parts["test"])
    assert manifest["parts"]["test"]["image_ids"] == list(labeled.image_ids[parts["test"]])
    assert sum(manifest["parts"]["train"]["class_counts"].values()) == len(parts["train"])
    assert set(manifest["shared_lesions"].values()) == {0}
    assert manifest["images"] == len(labeled)


def test_manifest_records_the_lesion_of_every_image():
    labeled = _labeled()
    parts = _split(labeled, "lesion")
    test = split_manifest(labeled, parts)["parts"]["test"]
    assert test["lesion_ids"] == list(labeled.group_ids[parts["test"]].astype(str))
    assert len(set(test["lesion_ids"])) == test["lesions"]
