"""Pruners, measured: what each ``tune.pruner`` spends on one arm's tuning and what it finds,
as ratios to no pruning, side by side in one run.

One arm (``--loss`` on ``--backbone``) is tuned with each pruner for ``--trials`` trials on each
of ``--seeds`` sampler seeds, through the study engine's own pieces: the arm's Optuna study with
the study's sampler and pruner (``open_arm_study``), its trial specs on the tuning split and
the pruning decision after every epoch (``ArmTuner``, as the driver calls it), and
``train_run``. Only Ray is left out: trials run one after another in one process, as in a study
with ``resources.max_concurrent = 1``. The recipe is the quickstart's (lr 1e-3..1e-2 log-uniform,
augmentation strength 0..1, AdamW, batch 32, one warm-up epoch) on synthetic images. The sampler
seed is also every trial's training seed (``tune.sampler_seed``), so a seed changes both.

Per pruner, as ratios to ``none`` (mean over seeds, then each seed):

- images: training images consumed, the sum over trials of the epochs actually trained times
  the train part's images;
- best: the best validation score (``tune.metric``) of a complete trial, the setting a study
  would go on to evaluate.

Images are counted, not timed, so load from other processes does not change the table.

    .venv/bin/python benchmarks/bench_pruners.py [--trials 10] [--seeds 3] [--epochs 5]
        [--images 400] [--workers 2]

Measured with the defaults on seeds 0-5 (AMD EPYC, 2 cores shared with other jobs,
2026-12-02), as ratios to ``none`` over the 6 seeds, images / best score: median 0.69 / 0.86,
successive_halving 0.72 / 0.88, hyperband 0.66 / 0.90; the two tables and their reading are in
docs/benchmarks.md, "Pruners, measured".
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cce_bench.config import default_study_path, load_study
from cce_bench.config.schema import PRUNERS, StudySpec
from cce_bench.data.pipeline import load_run_data

BASELINE = "none"


@dataclass(frozen=True)
class Tuned:
    """One arm tuned with one pruner on one sampler seed."""

    pruner: str
    seed: int
    images: int
    best: float
    complete: int
    pruned: int


def bench_spec(args: argparse.Namespace, pruner: str, seed: int) -> StudySpec:
    """The quickstart study cut to one arm, with this benchmark's sizes, pruner and seed."""
    spec = load_study(default_study_path())
    return replace(
        spec,
        name="bench-pruners",
        data=replace(spec.data, n_images=args.images, image_size=args.image_size),
        models=replace(spec.models, backbones=(args.backbone,)),
        losses=replace(spec.losses, arms=(args.loss,), baseline=args.loss),
        train=replace(spec.train, epochs=args.epochs, device="cpu"),
        tune=replace(spec.tune, n_trials=args.trials, pruner=pruner, sampler_seed=seed),
        resources=replace(spec.resources, threads_per_run=args.threads),
    )


def load_data(spec: StudySpec, cache_dir: str) -> Any:
    """The study's prepared images, split as a study splits them."""
    _, prepared, _ = load_run_data(
        spec.data.source,
        spec.data.path,
        image_size=spec.image_size_for(spec.models.backbones[0]),
        split=spec.data.split,
        test_fraction=spec.data.test_fraction,
        val_fraction=spec.data.val_fraction,
        split_seed=spec.data.split_seed,
        n_images=spec.data.n_images,
        difficulty=spec.data.difficulty,
        resize_mode=spec.data.resize_mode,
        cache_dir=cache_dir,
    )
    return prepared


def tune_arm(spec: StudySpec, data: Any) -> Tuned:
    """Every trial of the arm's study, each reporting its epochs to the pruner as a study does."""
    import optuna

    from cce_bench.study._arms import Arm
    from cce_bench.study._executor import JobDone
    from cce_bench.study._tuning import ArmTuner, open_arm_study
    from cce_bench.train import train_run

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    arm = Arm(spec.models.backbones[0], spec.losses.arms[0])
    study = open_arm_study(
        optuna.storages.InMemoryStorage(), spec, arm, study_name=f"{spec.name}/{arm.label}"
    )
    tuner = ArmTuner(study, spec, arm, data_ref=None)
    n_train, epochs = len(data.parts["train"]), 0
    while (job := tuner.next_job()) is not None:

        def reporter(epoch: int, metrics: dict[str, Any], job: Any = job) -> bool:
            return tuner.on_report(job, epoch, float(metrics.get(job.report_metric, math.nan)))

        result = train_run(job.run_spec, data, reporter)
        epochs += len(result.history)  # a pruned run's last epoch is in its history
        tuner.on_done(JobDone(job, result=result))
    states = [t.state for t in study.trials]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    return Tuned(
        pruner=spec.tune.pruner,
        seed=spec.tune.sampler_seed,
        images=epochs * n_train,
        best=float(study.best_value) if complete else math.nan,
        complete=complete,
        pruned=states.count(optuna.trial.TrialState.PRUNED),
    )


def _tune_cell(args: argparse.Namespace, pruner: str, seed: int, data: Any) -> Tuned:
    return tune_arm(bench_spec(args, pruner, seed), data)


def cpu_model() -> str:
    """``lscpu``'s model name, the machine the table was measured on."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else "unknown CPU"


def table(results: list[Tuned], pruners: list[str], seeds: list[int]) -> str:
    """Per pruner: images and best score as ratios to ``none`` (mean, then per seed)."""
    by = {(r.pruner, r.seed): r for r in results}
    lines = [
        f"{'pruner':20s} {'images/none':>11s}  {'per seed':18s} {'best/none':>9s}  "
        f"{'per seed':18s} {'pruned':>9s}  best per seed",
    ]
    for pruner in pruners:
        rows = [(by[(pruner, s)], by[(BASELINE, s)]) for s in seeds]
        images = [r.images / base.images for r, base in rows]
        best = [r.best / base.best for r, base in rows]
        pruned = sum(r.pruned for r, _ in rows)
        trials = sum(r.pruned + r.complete for r, _ in rows)
        lines.append(
            f"{pruner:20s} {np.mean(images):11.3f}  {' '.join(f'{v:.2f}' for v in images):18s} "
            f"{np.nanmean(best):9.3f}  {' '.join(f'{v:.3f}' for v in best):18s} "
            f"{pruned:3d} / {trials:<3d} " + " ".join(f"{r.best:.3f}" for r, _ in rows)
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pruners", nargs="+", default=list(PRUNERS), choices=PRUNERS)
    parser.add_argument("--trials", type=int, default=10, help="trials per pruner and seed")
    parser.add_argument("--seeds", type=int, default=3, help="how many sampler seeds")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--images", type=int, default=400, help="synthetic images in all")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--backbone", default="test_resnet")
    parser.add_argument("--loss", default="ce")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    parser.add_argument("--workers", type=int, default=2, help="(pruner, seed) cells at once")
    args = parser.parse_args()
    pruners = [BASELINE] + [p for p in args.pruners if p != BASELINE]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache_dir:
        data = load_data(bench_spec(args, BASELINE, 0), cache_dir)
    n_train, n_val = len(data.parts["train"]), len(data.parts["val"])
    cells = [(p, s) for s in seeds for p in pruners]  # seed by seed: a cut run still compares
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
        futures = [pool.submit(_tune_cell, args, p, s, data) for p, s in cells]
        results = []
        for future in as_completed(futures):  # one line per cell, so a cut run still tells
            results.append(future.result())
            print(results[-1], file=sys.stderr, flush=True)
    print(
        f"Pruners, measured: {args.loss} on {args.backbone}, synthetic {args.images} images "
        f"({n_train} train, {n_val} val) at {args.image_size} px, {args.epochs} epochs, "
        f"{args.trials} trials per pruner, sampler seeds {' '.join(map(str, seeds))}"
    )
    print(
        f"CPU: {cpu_model()} (lscpu), {args.threads} thread(s) per trial, {args.workers} "
        f"worker(s); {time.perf_counter() - started:.0f} s; none consumed "
        + ", ".join(f"{by.images:,}" for by in results if by.pruner == BASELINE)
        + " images"
    )
    print(table(results, pruners, seeds))


if __name__ == "__main__":
    main()
