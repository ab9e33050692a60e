"""An arm of a study, one (backbone, loss) pair, and what its tuner and evaluator share.

Every arm gets its own Optuna study, the same tuning budget, and the same evaluation seeds. The
driver loop asks each arm's current source of jobs, its tuner and then its evaluator, for work
in turn; both are :class:`JobSource`\\ s and both build their runs with :func:`build_run_spec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cce_bench.train import RunSpec

if TYPE_CHECKING:
    from cce_bench.config import StudySpec
    from cce_bench.study._executor import Job, JobDone


@dataclass(frozen=True)
class Arm:
    """One (backbone, loss) pair: the unit that gets its own Optuna study and budget."""

    backbone: str
    loss: str

    @property
    def label(self) -> str:
        return f"{self.backbone}/{self.loss}"


def study_arms(spec: StudySpec) -> list[Arm]:
    """Every arm of a study, backbones outer: the order of every table."""
    return [Arm(backbone, loss) for backbone in spec.models.backbones for loss in spec.losses.arms]


def tuning_replicate(spec: StudySpec, seed: int) -> int:
    """Which tuning replicate's best setting evaluation seed ``seed`` uses: i mod R.

    With ``tune.replicates`` R > 1 each arm is tuned R times independently; spreading the seeds
    over the replicates puts the randomness of tuning inside the paired differences
    (Bouthillier et al. 2021, "Accounting for variance in machine learning benchmarks").
    """
    return (int(seed) - spec.evaluate.first_seed) % spec.tune.replicates


class JobSource(Protocol):
    """One arm's tuner or evaluator, as the driver loop uses it.

    Only the driver process calls these, so a source keeps its bookkeeping in plain attributes.
    """

    def next_job(self) -> Job | None:
        """The next run to start, or None when the source has nothing to start now."""

    def on_report(self, job: Job, epoch: int, value: float) -> bool:
        """An epoch's validation value of one of this source's jobs; True stops the job."""

    def on_done(self, done: JobDone) -> dict[str, Any] | None:
        """A job finished; the run record it appended to ``runs.jsonl``, if any."""

    def requeue(self, job: Job, reason: str) -> None:
        """The machine failed ``job``: forget it without counting it, so it runs again."""

    def abandon_running(self, reason: str) -> None:
        """Ctrl-C: forget the jobs in flight, leaving the study resumable."""

    def in_flight(self) -> int:
        """How many of this source's jobs are running."""


def build_run_spec(
    spec: StudySpec,
    arm: Arm,
    params: Mapping[str, float],
    *,
    seed: int,
    train_parts: tuple[str, ...],
    eval_part: str,
) -> RunSpec:
    """The ``RunSpec`` of one trial or evaluation run: the study's recipe plus tuned ``params``.

    ``lr`` and ``aug_strength`` are recipe fields; every other parameter (tau, gamma, epsilon)
    belongs to the loss.
    """
    loss_params = {k: float(v) for k, v in params.items() if k not in ("lr", "aug_strength")}
    return RunSpec(
        backbone=arm.backbone,
        image_size=spec.image_size_for(arm.backbone),
        loss=arm.loss,
        loss_params=loss_params,
        optimizer=spec.train.optimizer,
        lr=float(params["lr"]),
        weight_decay=spec.train.weight_decay,
        batch_size=spec.train.batch_size,
        epochs=spec.train.epochs,
        warmup_epochs=spec.train.warmup_epochs,
        augment_policy=spec.train.augment_policy,
        aug_strength=float(params["aug_strength"]),
        seed=seed,
        train_parts=tuple(train_parts),
        eval_part=eval_part,
        device=run_device(spec, arm.backbone),
        threads=spec.resources.threads_per_run or spec.resources.cpus_per_run,
        precision=spec.train.precision,
        deterministic=bool(spec.train.deterministic),
        pretrained=_pretrained(spec.models.initialisation(arm.backbone)),
        pretrained_sha256=spec.models.weights_sha256.get(arm.backbone),
        sampler=spec.train.sampler,
    )


def run_device(spec: StudySpec, backbone: str) -> str:
    """``train.device`` as each run sees it: ``auto`` is ``cuda`` when the backbone's runs ask
    Ray for a GPU share, ``cpu`` when they ask for none.

    A run given a GPU never falls back to the CPU: a driver older than torch's CUDA build or a
    card that fell off the bus would otherwise train it about 100x slower, with its seed's
    pair on a GPU (the worker checks CUDA first, ``train.require_cuda``). Ray narrows
    ``CUDA_VISIBLE_DEVICES`` only for a task it gives GPUs; a task that asked for none sees
    every GPU of its node, so ``auto`` would put a study planned for CPUs on ``cuda:0``.
    """
    if spec.train.device != "auto":
        return spec.train.device
    return "cuda" if spec.resources.gpus_for(backbone) > 0 else "cpu"


def _pretrained(value: bool | Any) -> bool | str:
    """A weights path travels as a string (RunSpec stays JSON-able)."""
    return value if isinstance(value, bool) else str(value)
