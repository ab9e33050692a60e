"""The synthetic generator: shape, determinism, HAM10000 proportions, lesions, learnability."""

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import balanced_accuracy_score

from cce_bench.data.labeled import HAM10000_CLASS_COUNTS, HAM10000_CLASSES
from cce_bench.data.sources import load_source
from cce_bench.data.splits import make_split
from cce_bench.data.synthetic import (
    SyntheticConfigError,
    generate_synthetic,
    write_synthetic_dataset,
)
from cce_bench.errors import UnknownNameError


def test_images_are_uint8_squares_with_ham10000_class_names():
    data = generate_synthetic(30, 16, seed=0)
    assert data.images.shape == (30, 16, 16, 3)
    assert data.images.dtype == np.uint8
    assert data.class_names == HAM10000_CLASSES
    assert len(data.labels) == len(data.group_ids) == len(data.image_ids) == 30


def test_same_seed_gives_the_same_images_and_another_seed_does_not():
    first = generate_synthetic(40, 16, seed=1)
    again = generate_synthetic(40, 16, seed=1)
    other = generate_synthetic(40, 16, seed=2)
    assert np.array_equal(first.images, again.images)
    assert np.array_equal(first.group_ids, again.group_ids)
    assert not np.array_equal(first.images, other.images)


def test_default_class_counts_follow_ham10000_within_one_image():
    data = generate_synthetic(1000, 8, seed=0)
    counts = np.bincount(data.labels, minlength=7)
    total = sum(HAM10000_CLASS_COUNTS.values())
    expected = [HAM10000_CLASS_COUNTS[name] * 1000 / total for name in HAM10000_CLASSES]
    assert np.all(np.abs(counts - expected) <= 1)


def test_every_class_appears_even_in_a_tiny_set():
    assert set(generate_synthetic(7, 8, seed=0).labels) == set(range(7))


def test_lesions_hold_several_images_of_one_class():
    data = generate_synthetic(600, 8, seed=0)
    lesions, sizes = np.unique(data.group_ids, return_counts=True)
    assert 1.3 < len(data) / len(lesions) < 2.0
    assert sizes.max() > 2
    for lesion in lesions[sizes > 1]:
        assert len(set(data.labels[data.group_ids == lesion])) == 1


def test_class_proportions_by_name_leave_out_unnamed_classes():
    data = generate_synthetic(50, 8, class_proportions={"nv": 1, "mel": 1})
    assert set(np.asarray(HAM10000_CLASSES)[data.labels]) == {"nv", "mel"}


def test_unknown_class_in_proportions_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="'mel'"):
        generate_synthetic(10, 8, class_proportions={"mell": 1})


@pytest.mark.parametrize("arguments", [dict(n_images=0), dict(image_size=4), dict(difficulty=1.5)])
def test_impossible_requests_are_rejected(arguments):
    kwargs = dict(n_images=10, image_size=16) | arguments
    n_images, image_size = kwargs.pop("n_images"), kwargs.pop("image_size")
    with pytest.raises(SyntheticConfigError):
        generate_synthetic(n_images, image_size, **kwargs)


def _linear_balanced_accuracy(difficulty: float) -> float:
    """A linear classifier on 8x8 mean-pooled pixels, trained and tested on a lesion split."""
    data = generate_synthetic(1200, 32, seed=0, difficulty=difficulty)
    parts = make_split(data, "lesion", test_fraction=0.3, val_fraction=0.0, seed=0)
    features = data.images.reshape(len(data), 8, 4, 8, 4, 3).mean(axis=(2, 4))
    features = features.reshape(len(data), -1) / 255
    model = LinearDiscriminantAnalysis().fit(features[parts["train"]], data.labels[parts["train"]])
    predicted = model.predict(features[parts["test"]])
    return balanced_accuracy_score(data.labels[parts["test"]], predicted)


def test_classes_are_learnable_but_not_trivially():
    score = _linear_balanced_accuracy(0.5)
    assert 0.35 < score < 0.95  # chance is 1/7 = 0.14


def test_difficulty_makes_the_confusable_pairs_harder():
    assert _linear_balanced_accuracy(0.0) > _linear_balanced_accuracy(1.0) + 0.1


def test_written_dataset_reads_back_through_the_ham10000_loader(tmp_path):
    folder = write_synthetic_dataset(tmp_path / "synth", 24, 16, seed=3)
    expected = generate_synthetic(24, 16, seed=3)
    loaded = load_source("ham10000", folder)
    assert list(loaded.image_ids) == list(expected.image_ids)
    assert np.array_equal(loaded.labels, expected.labels)
    assert np.array_equal(loaded.group_ids, expected.group_ids)
    assert (folder / "HAM10000_images_part_1").is_dir()
    header = (folder / "HAM10000_metadata.csv").read_text().splitlines()[0]
    assert header == "lesion_id,image_id,dx,dx_type,age,sex,localization"


def test_writing_into_a_non_empty_folder_is_refused_and_writes_nothing(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(SyntheticConfigError, match="not an empty folder"):
        write_synthetic_dataset(target, 10, 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
