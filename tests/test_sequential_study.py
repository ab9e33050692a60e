"""The anytime design in a real study: seeds are added look by look and a backbone stops once
its answer is in, never before the evidence allows and never past ``max_seeds``.

The runs are stand-ins (``train_fn``) whose test balanced accuracy is a fixed function of the arm
and the seed, so what is checked is the engine's schedule and the verdicts it reads, not
training. The real engine is used throughout: Ray, Optuna storage, the results folder.
"""

from __future__ import annotations

import re
import socket
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from cce_bench.config import load_study
from cce_bench.report import build_report
from cce_bench.study import run_study
from cce_bench.study.store import ResultsStore
from cce_bench.train import RunResult

pytestmark = pytest.mark.usefixtures("ray_local")

STUDY = """
name = "sequential"
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
n_trials = 1
[evaluate]
seeds = 3
stopping = "anytime"
max_seeds = {max_seeds}
[analysis]
margin = 0.01
[resources]
max_concurrent = 2
max_retries = 0
"""


def scored_train(effect: float, noise: float):
    """A ``train_run`` stand-in: test balanced accuracy 0.6 + seed noise, plus ``effect`` for
    CCE; validation runs (tuning) score 0.5. The noise is a fixed function of (arm, seed)."""

    def train(spec, data, reporter=None):
        value = 0.5
        if spec.eval_part == "test":
            arm_index = {"ce": 1, "cce": 2}[spec.loss]
            draw = np.random.default_rng([spec.seed, arm_index]).normal()
            value = 0.6 + (effect if spec.loss == "cce" else 0.0) + noise * draw
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


def write(tmp_path, max_seeds: int):
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(max_seeds=max_seeds))
    return load_study(path)


def evaluation_seeds(root) -> Counter:
    return Counter(
        (r["arm"], r["seed"]) for r in ResultsStore(root).read_runs() if r["phase"] == "evaluate"
    )


@pytest.fixture(scope="module")
def worse_study(ray_local, tmp_path_factory):
    """An anytime study whose CCE arm is 5 pp worse than CE on every seed (sd 0.5 pp)."""
    folder = tmp_path_factory.mktemp("worse")
    events = []
    outcome = run_study(
        write(folder, max_seeds=20),
        folder / "results",
        train_fn=scored_train(effect=-0.05, noise=0.005),
        on_event=lambda progress: events.append(progress.event),
    )
    return outcome.results_dir, events


def test_a_clearly_worse_arm_stops_the_backbone_before_max_seeds(worse_study):
    root, events = worse_study
    runs = evaluation_seeds(root)
    seeds = sorted({seed for _, seed in runs})
    [stop] = [e for e in events if "stopped after" in e]
    decided = int(re.search(r"stopped after (\d+) seeds", stop).group(1))
    # m = 1: the e-value can reach 1/alpha = 20 from 5 paired seeds on, so 5 <= stop < 20.
    assert 5 <= decided < 20 and "ce better" in stop
    # Idle slots may train a seed ahead of the rule (2 slots: at most one), never read.
    assert decided <= len(seeds) <= decided + 1
    assert seeds == list(range(len(seeds)))  # added in order
    assert set(runs.values()) == {1}  # each (arm, seed) ran once


def test_the_report_reads_the_anytime_verdict_and_shows_its_sequence_and_compute(worse_study):
    root, _ = worse_study
    runs = evaluation_seeds(root)
    seeds = len({seed for _, seed in runs})
    text = build_report(root).read_text()
    stats_csv = pd.read_csv(root / "stats.csv")
    decided = int(stats_csv[stats_csv["family"] == "confirmatory"].iloc[0]["verdict_seeds"])
    answer = text.split("## Answer")[1].split("\n## ")[0]
    assert f"CE better (decided at {decided} seeds, {decided} paired" in answer
    if decided < 6:  # the sign-flip test's minimum for one comparison at alpha 0.05
        assert "rests on normality" in answer
    assert "e-value" in answer and "confidence sequence" in answer
    assert "**not the verdict**" in answer
    design = text.split("## Sequential evaluation")[1].split("\n## ")[0]
    assert f"- resnet10t: {seeds} seeds; every comparison was decided" in design
    if seeds > decided:  # a seed trained ahead of the rule is counted, never read
        assert f"at {decided} seeds; {seeds - decided} seed" in design and "never read" in design
    assert "### Compute per verdict" in design
    compute = design.split("### Compute per verdict")[1]
    row = next(line for line in compute.splitlines() if line.startswith("| resnet10t"))
    assert f"| {seeds} | {len(runs)} |" in row and "| 20 |" in row  # seeds, runs; fixed: 20
    assert (root / "figures" / "sequence.png").stat().st_size > 0
    assert "one tuning per arm, so the paired differences are conditional" in text
    stats_csv = pd.read_csv(root / "stats.csv")
    confirmatory = stats_csv[stats_csv["family"] == "confirmatory"].iloc[0]
    assert confirmatory["verdict"] == "CE better"
    assert confirmatory["e_value"] >= 20 and confirmatory["cs_high"] < 0
    assert confirmatory["verdict_seeds"] == decided


def test_identical_arms_never_claim_an_effect(tmp_path):
    events = []
    outcome = run_study(
        write(tmp_path, max_seeds=9),
        tmp_path / "results",
        train_fn=scored_train(effect=0.0, noise=0.02),
        on_event=lambda progress: events.append(progress.event),
    )
    seeds = {seed for _, seed in evaluation_seeds(outcome.results_dir)}
    assert seeds == set(range(9))  # sd 2 pp against a 1 pp margin: open until max_seeds
    assert not any("better" in e for e in events)
    assert any("reached max_seeds = 9" in e and "inconclusive" in e for e in events)


def test_an_interrupted_anytime_study_resumes_without_losing_or_repeating_a_run(tmp_path):
    spec = write(tmp_path, max_seeds=20)
    train = scored_train(effect=-0.05, noise=0.005)
    finished = []

    def stop_mid_seed(progress):
        if progress.event.startswith("finished evaluate/"):
            finished.append(progress.event)
            if len(finished) == 7:  # seed 3 of one arm done, its partner not yet recorded
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path / "results", train_fn=train, on_event=stop_mid_seed)
    root = tmp_path / "results" / "sequential"
    before = evaluation_seeds(root)
    assert sum(before.values()) == 7
    run_study(spec, tmp_path / "results", train_fn=train)
    after = evaluation_seeds(root)
    assert set(after.values()) == {1}  # nothing lost, nothing run twice
    assert set(before) <= set(after)
    seeds = sorted({seed for _, seed in after})
    assert after == Counter({(arm, s): 1 for arm in ("ce", "cce") for s in seeds})


def test_raising_max_seeds_after_an_inconclusive_stop_adds_seeds_after_the_last(tmp_path):
    train = scored_train(effect=0.0, noise=0.02)
    run_study(write(tmp_path, max_seeds=5), tmp_path / "results", train_fn=train)
    root = tmp_path / "results" / "sequential"
    assert {s for _, s in evaluation_seeds(root)} == set(range(5))
    run_study(write(tmp_path, max_seeds=7), tmp_path / "results", train_fn=train)
    runs = evaluation_seeds(root)
    assert {s for _, s in runs} == set(range(7)) and set(runs.values()) == {1}
    log = (root / "budget_changes.jsonl").read_text()
    assert "evaluate.max_seeds" in log
