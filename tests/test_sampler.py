"""Class-balanced sampling: each class equally likely, seeded, recorded, and shown in the report."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_config import study_file

from cce_bench.errors import StudyConfigError
from cce_bench.train import RunSpec, RunSpecError
from cce_bench.train._loop import balanced_batches, epoch_batches

FIXTURE = Path(__file__).parent / "fixtures" / "report_study"
GENERATED = ("report.md", "runs.csv", "summary.csv", "stats.csv", "figures")
#: HAM10000-like imbalance: one class holds two thirds of the images.
LABELS = np.repeat(np.arange(3), [700, 200, 100])


def test_balanced_batches_draw_every_class_about_equally() -> None:
    rng = np.random.default_rng(0)
    drawn = np.concatenate([np.concatenate(balanced_batches(LABELS, 64, rng)) for _ in range(20)])
    shares = np.bincount(LABELS[drawn], minlength=3) / len(drawn)
    assert np.all(np.abs(shares - 1 / 3) < 0.02)  # 20,000 draws: sd of a share is 0.003


def test_balanced_batches_keep_the_epochs_length_and_batch_size() -> None:
    batches = balanced_batches(LABELS, 64, np.random.default_rng(0))
    reference = epoch_batches(len(LABELS), 64, np.random.default_rng(0))
    assert [len(b) for b in batches] == [len(b) for b in reference]


def test_balanced_batches_are_determined_by_the_seed() -> None:
    first = balanced_batches(LABELS, 64, np.random.default_rng(7))
    again = balanced_batches(LABELS, 64, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_run_spec_records_the_sampler_and_refuses_an_unknown_one() -> None:
    assert RunSpec().to_dict()["sampler"] == "shuffle"
    assert RunSpec.from_dict(RunSpec(sampler="balanced").to_dict()).sampler == "balanced"
    with pytest.raises(RunSpecError, match="sampler"):
        RunSpec(sampler="weighted")


def test_study_file_sampler_reaches_every_run_spec(tmp_path: Path) -> None:
    from cce_bench.config import load_study
    from cce_bench.study._arms import Arm, build_run_spec

    spec = load_study(study_file(tmp_path, {"train": {"sampler": "balanced"}}))
    params = {"lr": 1e-3, "aug_strength": 0.5}
    run = build_run_spec(spec, Arm("resnet50", "ce"), params, seed=0, train_parts=("train",),
                         eval_part="val")  # fmt: skip
    assert run.sampler == "balanced"


def test_study_file_refuses_an_unknown_sampler(tmp_path: Path) -> None:
    from cce_bench.config import load_study

    with pytest.raises(StudyConfigError, match=r"train\.sampler"):
        load_study(study_file(tmp_path, {"train": {"sampler": "weighted"}}))


def test_report_study_section_names_balanced_sampling(tmp_path: Path) -> None:
    from cce_bench.report._build import _header_facts
    from cce_bench.report._results import load_results
    from cce_bench.report._sections import study_section

    folder = tmp_path / "report_study"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns(*GENERATED, "__pycache__"))
    study = folder / "study.toml"
    study.write_text(study.read_text().replace("[train]\n", '[train]\nsampler = "balanced"\n'))
    results = load_results(folder)
    text = study_section(results, _header_facts(results, []))
    assert "| Training sampler | `balanced`: each epoch draws" in text
