"""One training run: seeded, paired across losses, stoppable, and never crashing on divergence."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from cce_bench.data.labeled import HAM10000_CLASSES, PreparedData
from cce_bench.train import (
    RunSpec,
    RunSpecError,
    Trainer,
    epoch_batches,
    steps_per_epoch,
    train_run,
    warmup_cosine_factor,
)

SIZE = 32


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data() -> PreparedData:
    """96 training and 32 validation images whose red channel encodes the class."""
    rng = np.random.default_rng(0)
    n = 128
    labels = rng.integers(0, len(HAM10000_CLASSES), n)
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    images[..., 0] = (labels * 36)[:, None, None]
    return PreparedData(
        images=images,
        labels=labels,
        image_ids=np.array([f"ISIC_{i:07d}" for i in range(n)]),
        group_ids=np.array([f"HAM_{i:07d}" for i in range(n)]),
        class_names=HAM10000_CLASSES,
        parts={"train": np.arange(96), "val": np.arange(96, n)},
    )


def tiny_spec(**changes) -> RunSpec:
    settings = dict(
        backbone="mobilenetv3_small_050",
        image_size=SIZE,
        epochs=2,
        batch_size=16,
        threads=1,
        augment_policy="flips",
    )
    return RunSpec(**{**settings, **changes})


def test_same_spec_twice_gives_identical_metrics_and_probabilities(data):
    spec = tiny_spec(augment_policy="standard")
    first, second = train_run(spec, data), train_run(spec, data)
    assert first.outcome == second.outcome == "completed"
    np.testing.assert_array_equal(first.proba, second.proba)
    assert first.metrics == second.metrics


def test_ce_and_cce_runs_of_one_seed_share_initial_weights_and_batch_order(data):
    ce = Trainer.build(tiny_spec(loss="ce", seed=3), data)
    cce = Trainer.build(tiny_spec(loss="cce", seed=3), data)
    ce_state, cce_state = ce.model.state_dict(), cce.model.state_dict()
    assert ce_state.keys() == cce_state.keys()
    assert all(torch.equal(ce_state[key], cce_state[key]) for key in ce_state)
    ce_order = epoch_batches(96, 16, ce.order_rng)
    cce_order = epoch_batches(96, 16, cce.order_rng)
    assert all(np.array_equal(a, b) for a, b in zip(ce_order, cce_order, strict=True))
    assert torch.equal(ce.augment_generator.get_state(), cce.augment_generator.get_state())


def test_different_seeds_give_different_initial_weights(data):
    a = Trainer.build(tiny_spec(seed=0), data).model.state_dict()["conv_stem.weight"]
    b = Trainer.build(tiny_spec(seed=1), data).model.state_dict()["conv_stem.weight"]
    assert not torch.equal(a, b)


def test_absurd_learning_rate_ends_the_run_as_diverged_without_raising(data):
    result = train_run(tiny_spec(lr=1e6, backbone="resnet10t"), data)
    assert result.outcome == "diverged"
    assert isinstance(result.diverged_at_step, int)
    assert 0 <= result.diverged_at_step < 2 * steps_per_epoch(96, 16)


def test_reporter_returning_true_stops_the_run_as_pruned_with_its_history(data):
    result = train_run(tiny_spec(epochs=3), data, reporter=lambda epoch, metrics: epoch == 1)
    assert result.outcome == "pruned"
    assert [entry["epoch"] for entry in result.history] == [1]
    assert len(result.proba) == 32


def test_reporter_sees_every_epoch_with_the_evaluation_metrics_and_loss(data):
    seen = []
    train_run(tiny_spec(), data, reporter=lambda epoch, metrics: seen.append((epoch, metrics)))
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert {"paper_accuracy", "balanced_accuracy", "macro_auc", "loss", "nll"} <= set(seen[0][1])


def test_probabilities_align_with_the_evaluated_images(data):
    result = train_run(tiny_spec(epochs=1), data)
    np.testing.assert_array_equal(result.image_ids, data.image_ids[96:])
    np.testing.assert_array_equal(result.y_true, data.labels[96:])
    assert result.proba.dtype == np.float32
    np.testing.assert_allclose(result.proba.sum(axis=1), 1.0, rtol=1e-5)


def test_run_record_is_json_serialisable_and_carries_cost_and_provenance(data):
    record = train_run(tiny_spec(epochs=1), data).to_record()
    json.dumps(record, allow_nan=True)
    assert record["images_per_s"] > 0 and record["peak_memory_mb"] > 0
    assert record["device"] == "cpu" and {"torch", "timm", "numpy", "cce_bench"} <= set(
        record["versions"]
    )
    assert RunSpec.from_dict(record["spec"]) == tiny_spec(epochs=1)


def test_run_sets_the_thread_count_from_its_spec(data):
    torch.set_num_threads(2)
    train_run(tiny_spec(epochs=1, threads=1), data)
    assert torch.get_num_threads() == 1


def test_a_last_batch_of_one_image_is_dropped_and_other_remainders_kept():
    rng = np.random.default_rng(0)
    assert [len(b) for b in epoch_batches(33, 16, rng)] == [16, 16]
    assert [len(b) for b in epoch_batches(34, 16, rng)] == [16, 16, 2]


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_zero():
    factors = [warmup_cosine_factor(step, 4, 20) for step in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in itertools.pairwise(factors[3:]))
    assert factors[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 15 / 16)))


def test_spec_round_trips_through_a_plain_dict():
    spec = tiny_spec(loss="cce_tau", loss_params={"tau": 0.5}, train_parts=("train", "val"))
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_spec_refuses_a_batch_of_one():
    with pytest.raises(RunSpecError, match="batch_size = 1"):
        tiny_spec(batch_size=1)


def test_spec_from_dict_names_unknown_settings():
    with pytest.raises(RunSpecError, match="learning_rate"):
        RunSpec.from_dict({"learning_rate": 0.1})


def test_missing_part_is_named_with_the_parts_available(data):
    with pytest.raises(RunSpecError, match=r"\['test'\].*\['train', 'val'\]"):
        train_run(tiny_spec(eval_part="test"), data)


def test_run_data_splits_and_prepares_a_synthetic_set_without_shared_lesions():
    from cce_bench.run_data import load_run_data

    labeled, prepared, manifest = load_run_data(
        "synthetic",
        None,
        image_size=SIZE,
        split="lesion",
        test_fraction=0.2,
        val_fraction=0.15,
        split_seed=0,
        n_images=100,
    )
    assert prepared.images.shape == (len(labeled), SIZE, SIZE, 3)
    assert set(prepared.parts) == {"train", "val", "test"}
    assert manifest["split"]["kind"] == "lesion"
    assert set(manifest["shared_lesions"].values()) == {0}


def test_train_command_prints_the_metrics_table(capsys):
    from cce_bench.cli import main

    argv = ["train", "--backbone", "resnet10t", "--n-images", "120", "--epochs", "1"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--batch-size", "16", "--threads", "1", "--policy", "flips"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for row in ("accuracy (paper", "specificity (paper)", "balanced accuracy", "macro AUC"):
        assert row in out
    assert "images/s" in out


def test_train_command_refuses_a_too_small_image_size_with_exit_code_2(capsys):
    from cce_bench.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--backbone", "inception_v3", "--image-size", "64"])
    assert exit_.value.code == 2
    assert "at least 75 px" in capsys.readouterr().err
