"""How long a study will take, said before its first trial.

CPUs differ about fivefold in training speed (resnet18 at 32 px on one thread: ~384 images/s on
an AVX-512/AMX Intel core, 66-71 on an AVX2-only AMD EPYC core), so a wall time written in a
study file is true on one machine only. The driver therefore times a few training steps of
each backbone on this machine (``probe_images_per_s``) and turns the study's remaining budget
into seconds (``estimate_study_seconds``, ``estimate_remaining``). Once runs finish, their
measured durations replace this estimate (``_progress.estimate_eta``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cce_bench.models import create_backbone
from cce_bench.study._evaluation import EVALUATION_PARTS
from cce_bench.study._progress import ArmProgress, format_duration
from cce_bench.study._tuning import TUNING_EVAL_PART, TUNING_PARTS

if TYPE_CHECKING:
    from cce_bench.config import StudySpec

#: Scoring an image costs about a third of training on it (a forward pass against forward,
#: backward and the optimiser step), the usual rule of thumb for convolutional networks.
EVAL_COST = 1 / 3
#: Timed steps after one untimed warm-up step (which pays for lazy initialisation).
PROBE_STEPS = 3


@dataclass(frozen=True)
class JobImages:
    """Images one job of an arm trains on and scores, over all its epochs."""

    trained: int
    scored: int

    def seconds(self, images_per_s: float) -> float:
        return (self.trained + EVAL_COST * self.scored) / images_per_s


@dataclass(frozen=True)
class StudyEstimate:
    """The predicted wall time of what is left of a study, and what it rests on."""

    seconds: float
    jobs: int
    images_per_s: Mapping[str, float]  # backbone -> measured training images/s on one slot
    image_sizes: Mapping[str, int]
    slots: int

    def describe(self) -> str:
        """``estimate: 2m30s for 42 jobs (probe on this CPU: a 1,700 img/s at 32 px, ...)``."""
        rates = ", ".join(
            f"{name} {rate:,.0f} img/s at {self.image_sizes[name]} px"
            for name, rate in self.images_per_s.items()
        )
        return (
            f"estimate: about {format_duration(self.seconds)} for {self.jobs} trials and runs, "
            f"{self.slots} at a time (probe on this machine: {rates}; pruned trials end sooner)"
        )


def job_images(epochs: int, trained_per_epoch: int, scored_per_epoch: int) -> JobImages:
    """A run trains on its training parts and scores its evaluation part after every epoch."""
    return JobImages(trained=epochs * trained_per_epoch, scored=epochs * scored_per_epoch)


def estimate_study_seconds(
    jobs_left: Iterable[tuple[str, int, JobImages]],
    images_per_s: Mapping[str, float],
    *,
    slots: int,
) -> float:
    """Seconds for ``jobs_left`` (backbone, number of jobs, images per job) on ``slots`` runs
    at once, each backbone at its measured rate. Pruning only shortens it."""
    total = sum(count * images.seconds(images_per_s[name]) for name, count, images in jobs_left)
    return total / max(1, slots)


def probe_images_per_s(
    backbone: str,
    *,
    image_size: int,
    batch_size: int,
    num_classes: int,
    threads: int,
    steps: int = PROBE_STEPS,
) -> float:
    """Training images per second of ``backbone`` on this machine's CPU, with ``threads`` torch
    threads as a run gets them: a few AdamW steps on random images of the run's shape."""
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        model = create_backbone(backbone, num_classes).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        images = torch.rand(batch_size, 3, image_size, image_size, generator=generator)
        labels = torch.randint(0, num_classes, (batch_size,), generator=generator)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()

        step()  # warm-up: allocations and kernel selection
        started = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * batch_size / max(time.perf_counter() - started, 1e-9)
    finally:
        torch.set_num_threads(previous_threads)


def estimate_remaining(
    spec: StudySpec,
    prepared: dict[int, Any],
    arms: tuple[ArmProgress, ...],
    phases: tuple[str, ...],
    *,
    slots: int | None = None,
) -> StudyEstimate | None:
    """The wall time of the trials and runs still to do, from a throughput probe of each
    backbone on this machine; None for a GPU study (the driver's CPU says nothing about a GPU
    node's speed, so its ETA waits for the first finished runs) or when nothing is left.
    ``slots``: runs in flight at once (``fit_concurrency``), else ``max_concurrent``."""
    gpu_study = any(spec.resources.gpus_for(b) > 0 for b in spec.models.backbones)
    if gpu_study or spec.train.device not in ("auto", "cpu"):
        return None
    epochs, jobs_left = spec.train.epochs, []
    for progress in arms:
        backbone = progress.arm.backbone
        data = prepared[spec.image_size_for(backbone)]
        if "tune" in phases:
            trials = progress.n_trials - progress.complete - progress.pruned - progress.failed
            per_trial = job_images(
                epochs, len(data.indices(TUNING_PARTS)), len(data.indices(TUNING_EVAL_PART))
            )
            jobs_left.append((backbone, max(0, trials), per_trial))
        if "evaluate" in phases:
            scored = len(data.indices([p for p in data.parts if p not in EVALUATION_PARTS]))
            per_run = job_images(epochs, len(data.indices(EVALUATION_PARTS)), scored)
            jobs_left.append((backbone, max(0, progress.eval_total - progress.eval_done), per_run))
    jobs = sum(count for _, count, _ in jobs_left)
    if jobs == 0:
        return None
    sizes = {b: spec.image_size_for(b) for b in spec.models.backbones}
    rates = {
        backbone: probe_images_per_s(
            backbone,
            image_size=size,
            batch_size=spec.train.batch_size,
            num_classes=prepared[size].num_classes,
            threads=spec.resources.threads_per_run or spec.resources.cpus_per_run,
        )
        for backbone, size in sizes.items()
    }
    wanted = spec.resources.max_concurrent
    slots = slots or (wanted if isinstance(wanted, int) else 1)
    seconds = estimate_study_seconds(jobs_left, rates, slots=slots)
    return StudyEstimate(seconds, jobs, rates, sizes, slots)
