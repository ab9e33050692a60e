"""What one training run is asked to do (``RunSpec``) and what it gives back (``RunResult``).

A spec holds names and numbers only, so that it is stored verbatim in every run record and
Optuna trial and travels to a Ray worker as a small dict; the images travel separately, once,
through the object store (``train_run(spec, data)``). ``cce_bench.train`` re-exports both.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cce_bench.errors import CceBenchError

if TYPE_CHECKING:
    from cce_bench.data.labeled import PreparedData

OPTIMIZERS = ("adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OUTCOMES = ("completed", "pruned", "diverged")
#: How an epoch draws its training images: a permutation, or class-balanced with replacement.
SAMPLERS = ("shuffle", "balanced")


class RunSpecError(CceBenchError, ValueError):
    """A run was asked for with an impossible setting (unknown optimizer, batch of one, ...)."""


@dataclass(frozen=True)
class RunSpec:
    """One training run: backbone, loss, recipe, seed, parts and hardware, all JSON-able.

    ``seed`` fixes the model's initialisation, the order of the training images and the
    augmentation stream, each from its own stream, none of which depends on the loss: a CE run
    and a CCE run with the same seed are paired, so the report can compare them seed by seed
    with paired tests. ``warmup_epochs``
    of linear warm-up precede a cosine decay to zero, both stepped per batch.
    ``channels_last="auto"`` turns it on everywhere: it was faster for every convolutional family
    measured on CPU (see ``cce_bench.train``) and is the layout cuDNN's tensor-core kernels want.
    ``pretrained`` is False, True (timm's weights from the Hugging Face cache) or a file path;
    ``pretrained_sha256`` the file's SHA-256 when a study hashed it as it loaded (it is not
    checked here: it travels so that every run record names the weights it started from).
    ``backbone`` may be a variant (``resnet18@scratch``, ``cce_bench.models``).
    ``extra_eval_parts`` (e.g. ``("external",)``) are scored once, by the final model of a
    completed run, so an external test set costs one pass of inference, not a second training.
    """

    backbone: str = "resnet18"
    image_size: int = 224
    loss: str = "ce"
    loss_params: dict[str, float] = field(default_factory=dict, hash=False)
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 64
    epochs: int = 10
    warmup_epochs: float = 1.0
    augment_policy: str = "standard"
    aug_strength: float = 0.5
    seed: int = 0
    train_parts: tuple[str, ...] = ("train",)
    eval_part: str = "val"
    extra_eval_parts: tuple[str, ...] = ()
    device: str = "auto"
    threads: int = 1
    precision: str = "auto"
    channels_last: str | bool = "auto"
    deterministic: bool = False
    pretrained: bool | str = False
    pretrained_sha256: str | None = None
    sampler: str = "shuffle"

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_parts", tuple(self.train_parts))
        object.__setattr__(self, "extra_eval_parts", tuple(self.extra_eval_parts))
        object.__setattr__(self, "loss_params", dict(self.loss_params))
        checks = {
            "optimizer": (self.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
            "device": (self.device in DEVICES, f"one of {DEVICES}"),
            "precision": (self.precision in PRECISIONS, f"one of {PRECISIONS}"),
            "sampler": (self.sampler in SAMPLERS, f"one of {SAMPLERS}"),
            "channels_last": (self.channels_last in ("auto", True, False), "auto, true or false"),
            "batch_size": (self.batch_size >= 2, ">= 2 (batch normalisation needs two images)"),
            "epochs": (self.epochs >= 1, ">= 1"),
            "warmup_epochs": (0 <= self.warmup_epochs <= self.epochs, "in [0, epochs]"),
            "lr": (self.lr > 0 and math.isfinite(self.lr), "a positive number"),
            "weight_decay": (self.weight_decay >= 0, ">= 0"),
            "threads": (self.threads >= 1, ">= 1"),
            "image_size": (self.image_size >= 1, ">= 1"),
            "train_parts": (len(self.train_parts) > 0, "at least one part name"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise RunSpecError(
                    f"run setting {name} = {getattr(self, name)!r} is invalid; "
                    f"it must be {expected}"
                )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists) that ``from_dict`` turns back into this spec."""
        data = dataclasses.asdict(self)
        data["train_parts"] = list(self.train_parts)
        data["extra_eval_parts"] = list(self.extra_eval_parts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        """Inverse of ``to_dict``; unknown keys raise ``RunSpecError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunSpecError(
                f"unknown run settings {unknown}; known settings are {sorted(known)}"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> RunSpec:
        """A copy with some settings changed (``dataclasses.replace``), validated again."""
        return dataclasses.replace(self, **changes)


def part_indices(spec: RunSpec, data: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """The image indices the run trains on and evaluates on, checked against ``data``.

    Every part the spec names (``extra_eval_parts`` too) must exist and hold images, and the
    images must be at the spec's size; checked before training, not after the last epoch.
    """
    named = (*spec.train_parts, spec.eval_part, *spec.extra_eval_parts)
    missing = [part for part in named if part not in data.parts]
    if missing:
        raise RunSpecError(
            f"run asks for parts {missing} that the prepared data lacks (it has "
            f"{sorted(data.parts)}); set train_parts / eval_part / extra_eval_parts to "
            "existing parts"
        )
    if spec.image_size != data.image_size:
        raise RunSpecError(
            f"run setting image_size = {spec.image_size} but the prepared data holds "
            f"{data.image_size} px images; prepare the data at {spec.image_size} px"
        )
    train_idx, eval_idx = data.indices(spec.train_parts), data.indices(spec.eval_part)
    empty = [part for part in spec.extra_eval_parts if len(data.indices(part)) == 0]
    if len(train_idx) < 2 or len(eval_idx) == 0 or empty:
        raise RunSpecError(
            f"parts {list(spec.train_parts)} hold {len(train_idx)} images, part "
            f"{spec.eval_part!r} holds {len(eval_idx)} and extra parts {empty} none; training "
            "needs at least 2 and each evaluated part 1"
        )
    return train_idx, eval_idx


@dataclass
class RunResult:
    """Everything one run produced: outcome, final metrics, predictions, history, cost.

    ``metrics`` are those of the last evaluation on ``spec.eval_part`` (empty when the run
    diverged before its first evaluation, since a model with non-finite weights predicts
    nothing meaningful). ``proba`` holds float32 softmax probabilities, one row per image of the
    evaluated part, aligned with ``image_ids`` and ``y_true``. ``images_per_s`` counts training
    images over training time only (evaluation excluded); ``peak_memory_mb`` is CUDA's peak
    allocation on a GPU less the images and labels kept there (what training needs), else the
    process's peak resident set (``ru_maxrss``); ``peak_reserved_mb`` is the caching
    allocator's peak on a GPU, data included (what the card must have free), else None.
    ``extra_metrics`` and ``extra_predictions`` (``image_ids``, ``y_true``, ``proba``) hold, per
    part of ``spec.extra_eval_parts``, the final model's scores; empty unless the run completed.
    """

    outcome: str
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    image_ids: np.ndarray
    y_true: np.ndarray
    proba: np.ndarray
    wall_time_s: float
    images_per_s: float
    peak_memory_mb: float
    device: str
    versions: dict[str, str]
    node: str
    diverged_at_step: int | None = None
    spec: RunSpec | None = None
    extra_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra_predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    peak_reserved_mb: float | None = None

    def to_record(self) -> dict[str, Any]:
        """The JSON-able part of the result (no per-sample arrays), for ``runs.jsonl``."""
        return {
            "outcome": self.outcome,
            "diverged_at_step": self.diverged_at_step,
            "metrics": self.metrics,
            "history": self.history,
            "wall_time_s": self.wall_time_s,
            "images_per_s": self.images_per_s,
            "peak_memory_mb": self.peak_memory_mb,
            "peak_reserved_mb": self.peak_reserved_mb,
            "device": self.device,
            "versions": self.versions,
            "node": self.node,
            "spec": self.spec.to_dict() if self.spec is not None else None,
            "extra_metrics": self.extra_metrics,
        }

    def predictions(self) -> dict[str, np.ndarray]:
        """The per-sample arrays, as ``ResultsStore.append_run`` stores them (``.npz``): the
        evaluated part's under their own names, an extra part's prefixed ``<part>_``, which is
        where ``ResultsStore.load_predictions(record, part=...)`` reads them."""
        arrays = {"image_ids": self.image_ids, "y_true": self.y_true, "proba": self.proba}
        for part, extra in self.extra_predictions.items():
            arrays.update({f"{part}_{name}": values for name, values in extra.items()})
        return arrays
