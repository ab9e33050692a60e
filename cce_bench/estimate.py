"""How long a study will take, said before its first trial.

CPUs differ about fivefold in training speed (resnet18 at 32 px on one thread: ~384 images/s on
an AVX-512/AMX Intel core, 66-71 on an AVX2-only AMD EPYC core), so a wall time written in a
study file is true on one machine only. The driver therefore times a few training steps of
each backbone on this machine (``probe_images_per_s``) and turns the study's remaining budget
into seconds (``estimate_study_seconds``). Once runs finish, their measured durations replace
this estimate (``study_progress.estimate_eta``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s`` or ``?``: short enough for a progress line."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


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

    from cce_bench.models import create_backbone

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
