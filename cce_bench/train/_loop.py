"""One training run: ``train_run(spec, data, reporter) -> RunResult``, nothing global, no printing.

Every Optuna trial and every evaluation seed is one call, possibly thousands on a cluster, so a
run sets all the process state it depends on (thread count, seeds, cuDNN flags) at its start
instead of trusting what a pooled worker process was left with, and it never raises for a run
that merely went badly: a non-finite loss ends it as ``diverged``.

Layout: channels_last is used everywhere (``channels_last="auto"``). Measured training
throughput on CPU, 1 thread, batch 32, AdamW, img/s contiguous -> channels_last (ratio):
resnet18 32 px 282 -> 302 (1.07), 64 px 146 -> 163 (1.12); resnet10t 32 px 1.05, 64 px 1.20;
resnet50 32 px 1.10; densenet121 32 px 1.25; inception_v3 80 px 1.17; mobilenetv3_small_100
32 px 574 -> 1025 (1.79), 64 px 1.58; mobilenetv3_small_050 32 px 1.05, 64 px 1.69;
efficientnet_b0 32 px 191 -> 399 (2.09), 64 px 1.53; lcnet_050 32 px 1.69, 64 px 1.53. No
family was slower, so there is nothing to decide per family; on CUDA it is the layout that
cuDNN's tensor-core convolutions use under AMP.
"""

from __future__ import annotations

import contextlib
import math
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cce_bench.mechanism import ConfusionTally, confusion_tau
from cce_bench.models import backbone_normalization, check_image_size, create_backbone
from cce_bench.train._device import (
    PartOnDevice,
    autocast_dtype,
    device_label,
    library_versions,
    memory_format,
    peak_memory_mb,
    peak_reserved_mb,
    reset_peak_memory,
    resolve_device,
    set_backend_flags,
)
from cce_bench.train._spec import RunResult, RunSpec, part_indices

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from cce_bench.data.labeled import PreparedData

#: On CUDA the loss is checked for NaN/inf every this many steps, not every step: each check
#: waits for the GPU, and a diverged run only trains this many steps too long before it stops.
CUDA_DIVERGENCE_CHECK_STEPS = 16


def train_run(
    spec: RunSpec,
    data: PreparedData,
    reporter: Callable[[int, dict[str, Any]], bool] | None = None,
) -> RunResult:
    """Train ``spec.backbone`` with ``spec.loss`` on ``spec.train_parts`` of ``data``.

    After every epoch the model is evaluated on ``spec.eval_part`` and ``reporter(epoch,
    metrics)`` is called with the ``evaluate_predictions`` metrics plus ``loss`` (the epoch's
    mean training loss) and ``nll`` (cross entropy on the evaluated part, comparable across
    losses); a True answer stops the run as ``pruned``. A NaN or infinite training loss stops it
    as ``diverged`` with the step (counted from 0 over the whole run) where it was seen.
    """
    import torch

    started = time.perf_counter()
    torch.set_num_threads(spec.threads)
    trainer = Trainer.build(spec, data)
    progress = _Progress(proba=np.zeros((0, data.num_classes), dtype=np.float32))
    for epoch in range(1, spec.epochs + 1):
        if not _run_epoch(trainer, epoch, progress, reporter):
            break
    has_predictions = len(progress.proba) > 0
    # Read before the extra parts are uploaded and scored: those are not training memory.
    data_bytes = trainer.train_feed.device_bytes + trainer.eval_feed.device_bytes
    peak_mb = peak_memory_mb(trainer.device, data_bytes)
    reserved_mb = peak_reserved_mb(trainer.device)
    extra_metrics, extra_predictions = (
        _score_extra_parts(trainer) if progress.outcome == "completed" else ({}, {})
    )
    return RunResult(
        outcome=progress.outcome,
        metrics=progress.metrics,
        history=progress.history,
        image_ids=data.image_ids[trainer.eval_idx if has_predictions else []],
        y_true=data.labels[trainer.eval_idx if has_predictions else []],
        proba=progress.proba,
        wall_time_s=time.perf_counter() - started,
        images_per_s=progress.images / progress.seconds if progress.seconds > 0 else 0.0,
        peak_memory_mb=peak_mb,
        peak_reserved_mb=reserved_mb,
        device=device_label(trainer.device),
        versions=library_versions(trainer.device),
        node=socket.gethostname(),
        diverged_at_step=progress.diverged_at,
        spec=spec,
        extra_metrics=extra_metrics,
        extra_predictions=extra_predictions,
    )


@dataclass
class _Progress:
    """What a run has produced so far; the last evaluation's metrics and probabilities win."""

    proba: np.ndarray
    outcome: str = "completed"
    diverged_at: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _EpochLog:
    loss: float
    images: int
    seconds: float
    diverged_at: int | None


def _run_epoch(
    trainer: Trainer,
    epoch: int,
    progress: _Progress,
    reporter: Callable[[int, dict[str, Any]], bool] | None,
) -> bool:
    """Train one epoch, evaluate, record, report; False when the run must stop here."""
    from cce_bench.metrics import evaluate_predictions

    epoch_start = time.perf_counter()
    log = trainer.train_epoch()
    progress.images += log.images
    progress.seconds += log.seconds
    if log.diverged_at is not None:
        progress.outcome, progress.diverged_at = "diverged", log.diverged_at
        return False
    proba, nll = trainer.predict()
    if not np.isfinite(proba).all():  # the loss stayed finite but the weights overflowed
        progress.outcome, progress.diverged_at = "diverged", trainer.step - 1
        return False
    y_true = trainer.data.labels[trainer.eval_idx]
    metrics = {**evaluate_predictions(y_true, proba, trainer.data.class_names), "nll": nll}
    progress.proba, progress.metrics = proba, metrics
    # Per-epoch scalars only: per-class tables would repeat in every line of runs.jsonl.
    scalars = {key: value for key, value in metrics.items() if isinstance(value, int | float)}
    if trainer.tally is not None:  # the training batches' confused set, this epoch
        scalars.update(trainer.tally.summary(trainer.data.class_names))
    progress.history.append(
        {
            "epoch": epoch,
            "train_loss": log.loss,
            "lr": trainer.scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - epoch_start,
            "train_images_per_s": log.images / log.seconds if log.seconds > 0 else 0.0,
            **scalars,
        }
    )
    if reporter is not None and reporter(epoch, {**metrics, "loss": log.loss}):
        progress.outcome = "pruned"
        return False
    return True


def _score_extra_parts(
    trainer: Trainer,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
    """The final model's metrics and predictions on each of ``spec.extra_eval_parts``.

    Scored once after the last epoch, so an external test set costs one inference pass rather
    than a second training run that would have to reproduce this one bit for bit.
    """
    from cce_bench.metrics import evaluate_predictions

    metrics: dict[str, dict[str, Any]] = {}
    predictions: dict[str, dict[str, np.ndarray]] = {}
    for part in trainer.spec.extra_eval_parts:
        index = trainer.data.indices(part)
        proba, nll = trainer.predict(PartOnDevice(trainer.data, index, trainer.device))
        y_true = trainer.data.labels[index]
        scores = evaluate_predictions(y_true, proba, trainer.data.class_names)
        metrics[part] = {**scores, "nll": nll}
        ids = trainer.data.image_ids[index]
        predictions[part] = {"image_ids": ids, "y_true": y_true, "proba": proba}
    return metrics, predictions


def seed_streams(seed: int) -> tuple[int, int, int]:
    """Independent seeds for model initialisation, data order and augmentation.

    Derived with numpy's ``SeedSequence`` so the three streams never share state; none depends
    on the loss, which is what pairs a CE run and a CCE run of the same seed.
    """
    init, order, augment = (
        int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(3)
    )
    return init, order, augment


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch: a last batch of a single image is dropped, since BatchNorm cannot
    normalise one image in training mode; any other remainder is trained on."""
    return n // batch_size + (n % batch_size > 1)


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A fresh permutation of ``range(n)`` cut into ``steps_per_epoch(n, batch_size)`` batches."""
    order = rng.permutation(n)
    return [
        order[i * batch_size : (i + 1) * batch_size] for i in range(steps_per_epoch(n, batch_size))
    ]


def balanced_batches(
    labels: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """As many draws as images, with replacement, each class equally likely, in batches.

    Each image is drawn with probability ``1 / (C_present * n_class)``, as torch's
    ``WeightedRandomSampler`` with inverse class-frequency weights would draw, but from the
    run's own seeded data-order stream, so a balanced run is as deterministic as a shuffled
    one and a CE and a CCE run of one seed see the same images in the same order.
    """
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    weights = 1.0 / (len(counts) * counts[inverse])
    order = rng.choice(len(labels), size=len(labels), replace=True, p=weights / weights.sum())
    return [
        order[i * batch_size : (i + 1) * batch_size]
        for i in range(steps_per_epoch(len(labels), batch_size))
    ]


@dataclass
class Trainer:
    """The mutable state of one run (model, optimizer, generators), built from spec and data.

    Public so that tests and benchmarks can inspect what a seed fixes (initial weights, batch
    order, augmentation stream) without training; ``train_run`` is the way to use it.
    """

    spec: RunSpec
    data: PreparedData
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    train_feed: PartOnDevice
    eval_feed: PartOnDevice
    eval_idx: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    order_rng: np.random.Generator
    augment_generator: torch.Generator
    step: int = 0
    #: H's size and membership per epoch (``cce_bench.mechanism``); None turns it off (the
    #: benchmark measures its cost that way).
    tally: ConfusionTally | None = None

    @classmethod
    def build(cls, spec: RunSpec, data: PreparedData) -> Trainer:
        """Check the spec against the data, seed, and build model, optimizer and schedule."""
        import torch

        from cce_bench.losses import get_loss

        check_image_size(spec.backbone, data.image_size)
        train_idx, eval_idx = part_indices(spec, data)
        device = resolve_device(spec.device)
        set_backend_flags(device, spec.deterministic)
        init_seed, order_seed, augment_seed = seed_streams(spec.seed)
        torch.manual_seed(init_seed)  # timm initialises from the global generator
        model = create_backbone(spec.backbone, data.num_classes, pretrained=spec.pretrained)
        channels_last = spec.channels_last in ("auto", True)
        model = model.to(device, memory_format=memory_format(channels_last))
        optimizer = _make_optimizer(spec, model, device)
        dtype = autocast_dtype(spec.precision, device)
        mean, std = backbone_normalization(spec.backbone)
        train_feed = PartOnDevice(data, train_idx, device)
        eval_feed = PartOnDevice(data, eval_idx, device)
        reset_peak_memory(device)  # after the upload: the images are not training memory
        return cls(
            spec=spec,
            data=data,
            device=device,
            autocast_dtype=dtype,
            channels_last=channels_last,
            model=model,
            loss_fn=get_loss(spec.loss, **spec.loss_params).to(device),
            optimizer=optimizer,
            scheduler=_warmup_cosine(
                optimizer, spec, steps_per_epoch(len(train_idx), spec.batch_size)
            ),
            scaler=torch.amp.GradScaler("cuda") if dtype == torch.float16 else None,
            train_feed=train_feed,
            eval_feed=eval_feed,
            eval_idx=eval_idx,
            mean=mean,
            std=std,
            order_rng=np.random.default_rng(order_seed),
            augment_generator=torch.Generator(device=device).manual_seed(augment_seed),
            tally=ConfusionTally(
                data.num_classes, confusion_tau(spec.loss, spec.loss_params), device
            ),
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        from cce_bench.data.augment import normalize

        x = normalize(x, self.mean, self.std)
        return x.contiguous(memory_format=memory_format(self.channels_last))

    def train_epoch(self) -> _EpochLog:
        """One pass over the training part; stops at the first non-finite loss it sees."""
        import torch

        from cce_bench.data.augment import augment_batch

        self.model.train()
        check_every = CUDA_DIVERGENCE_CHECK_STEPS if self.device.type == "cuda" else 1
        losses: list[torch.Tensor] = []
        diverged_at, images = None, 0
        started = time.perf_counter()
        if self.spec.sampler == "balanced":
            labels = self.data.labels[self.train_feed.indices]
            batches = balanced_batches(labels, self.spec.batch_size, self.order_rng)
        else:
            batches = epoch_batches(len(self.train_feed), self.spec.batch_size, self.order_rng)
        for positions, (raw, target) in zip(batches, self.train_feed.batches(batches), strict=True):
            x = augment_batch(
                raw,
                policy=self.spec.augment_policy,
                strength=self.spec.aug_strength,
                generator=self.augment_generator,
            )
            losses.append(self._step(self._inputs(x), target))
            images += len(positions)
            self.step += 1
            if len(losses) % check_every == 0:
                diverged_at = _first_non_finite_step(losses[-check_every:], self.step)
                if diverged_at is not None:
                    break
        else:
            diverged_at = _first_non_finite_step(losses, self.step)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - started
        loss = math.nan if diverged_at is not None else float(torch.stack(losses).mean())
        return _EpochLog(loss, images, seconds, diverged_at)

    def _step(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Forward, backward, optimizer and schedule step; returns the detached loss."""
        with self._autocast():
            logits = self.model(x)
            loss = self.loss_fn(logits, target)
        if self.tally is not None:
            self.tally.update(logits.detach(), target)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.scheduler.step()
        return loss.detach().float()

    def predict(self, feed: PartOnDevice | None = None) -> tuple[np.ndarray, float]:
        """Softmax probabilities (float32) for the images of ``feed`` (default: the evaluated
        part) in their order, and their NLL."""
        import torch
        import torch.nn.functional as F

        from cce_bench.data.augment import to_float

        feed = self.eval_feed if feed is None else feed
        self.model.eval()
        chunks, nll_sum = [], torch.zeros((), device=self.device)
        size = 2 * self.spec.batch_size
        spans = [np.arange(i, min(i + size, len(feed))) for i in range(0, len(feed), size)]
        with torch.inference_mode():
            for raw, target in feed.batches(spans):
                with self._autocast():
                    logits = self.model(self._inputs(to_float(raw))).float()
                nll_sum += F.cross_entropy(logits, target, reduction="sum")
                chunks.append(logits.softmax(dim=1))
        proba = torch.cat(chunks).cpu().numpy().astype(np.float32)
        return proba, float(nll_sum) / max(len(feed), 1)


def _first_non_finite_step(recent: list[torch.Tensor], next_step: int) -> int | None:
    """The run step of the first NaN/inf among the ``recent`` losses, which end before
    ``next_step``; None when all are finite."""
    import torch

    values = torch.stack(recent).cpu().numpy()
    bad = np.flatnonzero(~np.isfinite(values))
    return None if len(bad) == 0 else next_step - len(recent) + int(bad[0])


def _make_optimizer(
    spec: RunSpec, model: torch.nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum 0.9; no weight decay on norms and biases.

    Excluding 1-d parameters from decay follows timm's ``param_groups_weight_decay`` (decaying a
    BatchNorm scale only fights the normalisation). On CUDA both are the fused kernels: one
    launch per step instead of a few per parameter group, and, under fp16, ``GradScaler``
    hands them its inf check as a device tensor instead of reading it back to decide whether
    to step, which would wait for the GPU at every step. CPU runs keep the default kernels,
    so their numbers do not change.
    """
    import torch
    from timm.optim import param_groups_weight_decay

    groups = param_groups_weight_decay(model, spec.weight_decay)
    fused = True if device.type == "cuda" else None
    if spec.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=0.9, nesterov=True, fused=fused)
    return torch.optim.AdamW(groups, lr=spec.lr, fused=fused)


def _warmup_cosine(optimizer: torch.optim.Optimizer, spec: RunSpec, steps_per_epoch: int) -> Any:
    """Linear warm-up from lr/warmup_steps to lr, then cosine decay to 0 (Loshchilov & Hutter
    2017, without restarts), per step so that short runs still get a smooth schedule."""
    import torch

    total = spec.epochs * steps_per_epoch
    warmup = round(spec.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, warmup, total)
    )


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """The learning-rate multiplier at ``step``: ``(step + 1) / warmup_steps`` during warm-up,
    then ``(1 + cos(pi * progress)) / 2`` over the remaining steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
