"""Tuning noise inside the comparison: ``tune.replicates = R`` tunes each arm R times
independently, and evaluation seed i trains with replicate i mod R's best setting.

The runs are stand-ins (``train_fn``) whose validation score depends on the learning rate and
on the run's seed, so that independent tunings find different best settings; the engine around
them (Ray, Optuna storage, results folder) is the real one.
"""

from __future__ import annotations

import math
import socket

import numpy as np
import optuna
import pytest

from cce_bench.config import load_study
from cce_bench.report import build_report
from cce_bench.study import run_study, study_status
from cce_bench.study.storage import open_storage
from cce_bench.study.store import ResultsStore
from cce_bench.train import RunResult

pytestmark = pytest.mark.usefixtures("ray_local")

STUDY = """
name = "replicates"
[data]
source = "synthetic"
n_images = 120
image_size = 32
[models]
backbones = ["resnet10t"]
[losses]
arms = ["ce", "cce"]
[train]
epochs = 1
batch_size = 16
[tune]
n_trials = 2
pruner = "none"
replicates = {replicates}
[evaluate]
seeds = 2
[resources]
max_concurrent = 2
max_retries = 0
"""


def lr_scored():
    """A ``train_run`` stand-in (a closure, so Ray pickles it by value): the validation score
    peaks at a seed-dependent lr, so independent tunings find different settings; test: 0.6."""

    def train(spec, data, reporter=None):
        value = 0.6
        if spec.eval_part == "val":
            peak = -2.5 - 0.3 * spec.seed
            value = 0.9 - 0.1 * (math.log10(spec.lr) - peak) ** 2
        history = [{"epoch": 1, "balanced_accuracy": value}]
        if reporter is not None:
            reporter(1, history[0])
        return RunResult(
            outcome="completed", metrics={"balanced_accuracy": value}, history=history,
            image_ids=np.array(["a"]), y_true=np.array([0]),
            proba=np.ones((1, 7), np.float32) / 7, wall_time_s=0.0, images_per_s=0.0,
            peak_memory_mb=0.0, device="cpu", versions={}, node=socket.gethostname(),
        )  # fmt: skip

    return train


@pytest.fixture(scope="module")
def two_replicates(ray_local, tmp_path_factory):
    folder = tmp_path_factory.mktemp("replicates")
    path = folder / "study.toml"
    path.write_text(STUDY.format(replicates=2))
    outcome = run_study(load_study(path), folder / "results", train_fn=lr_scored())
    return outcome.results_dir


def arm_studies(root, arm):
    store = ResultsStore(root)
    storage = open_storage(store.storage_url)
    names = [store.optuna_study_name("resnet10t", arm, r) for r in (0, 1)]
    return [optuna.load_study(study_name=name, storage=storage) for name in names]


@pytest.mark.parametrize("arm", ["ce", "cce"])
def test_each_replicate_is_an_independent_tuning_with_the_full_budget(two_replicates, arm):
    first, second = arm_studies(two_replicates, arm)
    assert first.study_name.endswith(f"/{arm}") and second.study_name.endswith(f"/{arm}/r1")
    for replicate, study in enumerate((first, second)):
        trials = study.get_trials()
        assert len(trials) == 2
        assert {t.user_attrs["spec"]["seed"] for t in trials} == {replicate}  # sampler_seed + r
    assert [t.params["lr"] for t in first.trials] != [t.params["lr"] for t in second.trials]


@pytest.mark.parametrize("arm", ["ce", "cce"])
def test_evaluation_seed_i_uses_replicate_i_mod_r(two_replicates, arm):
    best = [study.best_params for study in arm_studies(two_replicates, arm)]
    assert best[0] != best[1]
    records = [r for r in ResultsStore(two_replicates).read_runs() if r["arm"] == arm]
    assert {r["seed"]: r["params"] for r in records} == {seed: best[seed % 2] for seed in range(2)}


def test_status_and_report_count_and_name_the_replicates(two_replicates):
    status = study_status(two_replicates)
    assert {arm.complete for arm in status.arms} == {4}  # 2 trials x 2 replicates per arm
    text = build_report(two_replicates).read_text()
    assert "2 independent replicates" in text
    assert "the paired differences include tuning's randomness" in text
