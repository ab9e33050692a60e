"""One training run: seeded, paired across losses, stoppable, and never crashing on divergence."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from cce_bench.data.labeled import HAM10000_CLASSES, PreparedData
from cce_bench.train import RunSpec, RunSpecError
from cce_bench.train._loop import (
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
    from cce_bench.data.pipeline import load_run_data

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
    for row in ("ACC (paper)", "Specificity (paper)", "Balanced accuracy", "Macro AUC"):
        assert row in out
    assert "images/s" in out


def test_train_command_refuses_a_too_small_image_size_with_exit_code_2(capsys):
    from cce_bench.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--backbone", "inception_v3", "--image-size", "64"])
    assert exit_.value.code == 2
    assert "at least 75 px" in capsys.readouterr().err


# -- scoring extra parts (an external test set) with the final model -------------------------


@pytest.fixture(scope="module")
def data_with_test(data) -> PreparedData:
    """The same images with a third part, ``test``, carved from the end of ``val``."""
    from dataclasses import replace

    parts = {"train": np.arange(96), "val": np.arange(96, 112), "test": np.arange(112, 128)}
    return replace(data, parts=parts)


def test_extra_parts_are_scored_by_the_final_model_of_the_run(data_with_test):
    spec = tiny_spec(epochs=1, extra_eval_parts=("test",))
    result = train_run(spec, data_with_test)
    scored_directly = train_run(tiny_spec(epochs=1, eval_part="test"), data_with_test)
    extra = result.extra_predictions["test"]
    np.testing.assert_array_equal(extra["image_ids"], data_with_test.image_ids[112:])
    np.testing.assert_array_equal(extra["proba"], scored_directly.proba)
    assert result.extra_metrics["test"]["top1"] == scored_directly.metrics["top1"]
    np.testing.assert_array_equal(result.image_ids, data_with_test.image_ids[96:112])


def test_a_pruned_run_scores_no_extra_part(data_with_test):
    spec = tiny_spec(epochs=2, extra_eval_parts=("test",))
    result = train_run(spec, data_with_test, reporter=lambda epoch, metrics: True)
    assert result.outcome == "pruned"
    assert result.extra_metrics == {} and result.extra_predictions == {}


def test_a_missing_extra_part_is_refused_before_training(data):
    with pytest.raises(RunSpecError, match=r"\['external'\].*extra_eval_parts"):
        Trainer.build(tiny_spec(extra_eval_parts=("external",)), data)


def test_extra_part_predictions_are_stored_where_the_store_reads_them(tmp_path):
    from cce_bench.study.store import ResultsStore
    from cce_bench.train import RunResult

    def arrays(ids):
        return {"image_ids": np.array(ids), "y_true": np.zeros(len(ids), np.int64),
                "proba": np.full((len(ids), 7), 1 / 7, np.float32)}  # fmt: skip

    result = RunResult(
        outcome="completed", metrics={}, history=[], **arrays(["a", "b"]), wall_time_s=0.0,
        images_per_s=0.0, peak_memory_mb=0.0, device="cpu", versions={}, node="host",
        extra_metrics={"external": {"top1": 0.5}}, extra_predictions={"external": arrays(["x"])},
    )  # fmt: skip
    store = ResultsStore(tmp_path)
    record = store.append_run({"backbone": "b", "arm": "ce", "seed": 0}, result.predictions())
    assert list(store.load_predictions(record)[0]) == ["a", "b"]
    assert list(store.load_predictions(record, part="external")[0]) == ["x"]
    assert result.to_record()["extra_metrics"] == {"external": {"top1": 0.5}}


# -- provenance: the commit that ran -------------------------------------------------------


def _git(folder, *args):
    import subprocess

    identity = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    done = subprocess.run(["git", "-C", str(folder), *identity, *args], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def test_commit_of_a_checkout_is_its_head_and_marked_dirty_once_edited(tmp_path):
    from cce_bench.train._device import commit_of

    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("a = 1\n")
    _git(tmp_path, "add", "code.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert commit_of(tmp_path) == head
    (tmp_path / "code.py").write_text("a = 2\n")
    assert commit_of(tmp_path) == f"{head}-dirty"


def test_commit_of_a_folder_that_is_no_checkout_root_is_none(tmp_path):
    from cce_bench.train._device import commit_of

    _git(tmp_path, "init", "-q")
    (tmp_path / "site-packages").mkdir()
    assert commit_of(tmp_path / "site-packages") is None


def test_commit_is_none_when_git_is_not_installed(tmp_path, monkeypatch):
    from cce_bench.train._device import commit_of

    (tmp_path / ".git").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert commit_of(tmp_path) is None


def test_run_versions_name_the_git_commit_only_when_there_is_one(monkeypatch):
    import cce_bench.train._device as hardware

    monkeypatch.setattr(hardware, "source_commit", lambda: "0123abcd")
    assert hardware.library_versions(torch.device("cpu"))["git_commit"] == "0123abcd"
    monkeypatch.setattr(hardware, "source_commit", lambda: None)
    assert "git_commit" not in hardware.library_versions(torch.device("cpu"))


# -- difficulty and resize mode reach the data -------------------------------------------------


def _run_data(source, path=None, **options):
    from cce_bench.data.pipeline import load_run_data

    return load_run_data(source, path, split="lesion", test_fraction=0.2, val_fraction=0.15,
                         split_seed=0, **options)  # fmt: skip


def test_difficulty_changes_the_synthetic_images():
    easy = _run_data("synthetic", image_size=16, n_images=60, difficulty=0.0)[1]
    hard = _run_data("synthetic", image_size=16, n_images=60, difficulty=1.0)[1]
    assert not np.array_equal(easy.images, hard.images)


def test_resize_mode_decides_how_a_wide_image_becomes_a_square(tmp_path):
    from PIL import Image

    from cce_bench.data.synthetic import write_synthetic_dataset

    folder = write_synthetic_dataset(tmp_path / "ham", 60, 16, seed=0)
    for jpeg in folder.rglob("*.jpg"):
        Image.open(jpeg).resize((32, 16)).save(jpeg)  # 2:1, as dermoscopy photos are wider
    cache = tmp_path / "cache"
    squash = _run_data("ham10000", folder, image_size=16, cache_dir=cache)[1].images
    pad = _run_data("ham10000", folder, image_size=16, resize_mode="pad", cache_dir=cache)[1]
    assert squash[:, :4].max() > 0  # a squashed image fills the square
    assert pad.images[:, :4].max() <= 8  # a padded one has (JPEG-)black bands above and below


def test_train_command_hands_difficulty_and_resize_mode_to_the_data(monkeypatch):
    import cce_bench.data.pipeline
    from cce_bench.cli import main
    from cce_bench.errors import DataError

    seen = {}

    def stop_after_reading_the_options(*args, **options):
        seen.update(options)
        raise DataError("stop before training")

    monkeypatch.setattr(cce_bench.data.pipeline, "load_run_data", stop_after_reading_the_options)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--difficulty", "0.2", "--resize-mode", "pad"])
    assert exit_.value.code == 2
    assert (seen["difficulty"], seen["resize_mode"]) == (0.2, "pad")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loss", "cce_tua"], "unknown loss 'cce_tua'"),
        (["--loss", "ce", "--tau", "0.5"], "loss 'ce' takes no parameters, not 'tau'"),
        (["--weights", "model.pt"], "model.pt is not a state dict that loads safely"),
    ],
)
def test_train_command_checks_loss_and_weights_before_loading_data(
    flags, message, tmp_path, monkeypatch, capsys
):
    import cce_bench.data.pipeline
    from cce_bench.cli import main

    def never_load(*args, **options):
        raise AssertionError("the data was loaded before the flags were checked")

    monkeypatch.setattr(cce_bench.data.pipeline, "load_run_data", never_load)
    monkeypatch.chdir(tmp_path)
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")  # a pickled model, not weights
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--backbone", "resnet10t", *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_train_command_refuses_difficulty_for_a_real_dataset(tmp_path, capsys):
    from cce_bench.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--data", str(tmp_path), "--difficulty", "0.2"])
    assert exit_.value.code == 2
    assert "synthetic only" in capsys.readouterr().err
