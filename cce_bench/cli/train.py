"""``cce-bench train``: one training run from flags, its metrics as a table.

The quickest way to try a setting: no study file, no tuning, no Ray. The data path is the one
a study uses (``cce_bench.data.pipeline.load_run_data``), trained on ``train`` and scored on
``val``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cce_bench.cli._choices import (
    DeviceName,
    LossName,
    PolicyName,
    ResizeModeName,
    SourceName,
    SplitName,
    completion,
)
from cce_bench.cli._console import console, err_console
from cce_bench.data import SYNTHETIC_N_IMAGES

if TYPE_CHECKING:
    from cce_bench.data.labeled import PreparedData
    from cce_bench.models import BackboneInfo
    from cce_bench.train import RunResult, RunSpec

app = typer.Typer()

#: The metrics of the table, as printed: the paper's four (Table 1, macro one-vs-rest), then
#: the clinical ones; their labels are the report's (``metrics.METRIC_LABELS``).
TABLE_METRICS: tuple[str, ...] = (
    "paper_accuracy",
    "paper_sensitivity",
    "paper_precision",
    "paper_specificity",
    "top1",
    "balanced_accuracy",
    "macro_f1",
    "melanoma_sensitivity",
    "macro_auc",
)

#: Split fractions of the whole set, as the shipped studies use (0.65 / 0.15 / 0.2).
TEST_FRACTION, VAL_FRACTION = 0.2, 0.15

#: The split stays put while --seed varies, as in a study, so seeds compare like with like.
SPLIT_SEED = 0

#: Synthetic images default to 32 px: enough for the generated lesions, and fast on a laptop.
SYNTHETIC_IMAGE_SIZE = 32

Backbone = Annotated[str, typer.Option(help="timm model name or one of the paper's four.")]
Loss = Annotated[
    str,
    typer.Option(
        help="ce, cce, cce_tau, focal, label_smoothing.", autocompletion=completion(LossName)
    ),
]
Tau = Annotated[float | None, typer.Option(help="Confusion threshold of cce / cce_tau.")]
Data = Annotated[str, typer.Option(help="`synthetic`, or a dataset folder or file.")]
Source = Annotated[
    str | None,
    typer.Option(
        help="Source of --data (detected by default).", autocompletion=completion(SourceName)
    ),
]
NImages = Annotated[int, typer.Option(help="Images to generate when --data synthetic.")]
Difficulty = Annotated[
    float | None,
    typer.Option(help="How alike the confusable classes look, in [0, 1], when --data synthetic."),
]
ResizeMode = Annotated[
    ResizeModeName, typer.Option(help="How images become squares: squash, center_crop or pad.")
]
ImageSize = Annotated[
    int | None,
    typer.Option(help="Square input size (default: the backbone's native size; 32 for synthetic)."),
]
Epochs = Annotated[int, typer.Option(help="Training epochs.")]
LearningRate = Annotated[float, typer.Option(help="Peak learning rate (after warm-up).")]
BatchSize = Annotated[int, typer.Option(help="Images per training step.")]
AugStrength = Annotated[float, typer.Option(help="Augmentation strength in [0, 1].")]
Policy = Annotated[
    PolicyName, typer.Option(help="Augmentation policy: none, flips, standard, strong.")
]
Seed = Annotated[int, typer.Option(help="Seed of the initialisation, data order and augmentation.")]
Split = Annotated[SplitName, typer.Option(help="paper, lesion or official.")]
Device = Annotated[DeviceName, typer.Option(help="auto, cpu or cuda.")]
Threads = Annotated[int | None, typer.Option(help="Torch threads (default: all usable cores).")]
Pretrained = Annotated[
    bool, typer.Option(help="Start from timm's pretrained weights (from the Hugging Face cache).")
]
Weights = Annotated[
    Path | None,
    typer.Option(
        exists=True,
        dir_okay=False,
        help="Start from a weights file (.safetensors or a torch state dict).",
    ),
]


@app.command(
    epilog="Example: cce-bench train --backbone resnet18 --loss cce --epochs 3 (synthetic data)"
)
def train(
    backbone: Backbone = "resnet18",
    loss: Loss = "ce",
    tau: Tau = None,
    data: Data = "synthetic",
    source: Source = None,
    n_images: NImages = SYNTHETIC_N_IMAGES,
    difficulty: Difficulty = None,
    resize_mode: ResizeMode = "squash",
    image_size: ImageSize = None,
    epochs: Epochs = 3,
    lr: LearningRate = 1e-3,
    batch_size: BatchSize = 64,
    aug_strength: AugStrength = 0.5,
    policy: Policy = "standard",
    seed: Seed = 0,
    split: Split = "lesion",
    device: Device = "auto",
    threads: Threads = None,
    pretrained: Pretrained = False,
    weights: Weights = None,
) -> None:
    """Train one backbone with one loss and print its validation metrics."""
    from cce_bench.train import RunSpec, train_run

    synthetic = data == "synthetic"
    if difficulty is not None and not synthetic:
        raise typer.BadParameter("applies to --data synthetic only", param_hint="--difficulty")
    image_size = _checked_image_size(backbone, image_size, synthetic)
    _check_weights(backbone, weights, pretrained)
    spec = RunSpec(
        backbone=backbone,
        image_size=image_size,
        loss=loss,
        loss_params={} if tau is None else {"tau": tau},
        lr=lr,
        batch_size=batch_size,
        epochs=epochs,
        warmup_epochs=min(1, epochs - 1),
        augment_policy=policy,
        aug_strength=aug_strength,
        seed=seed,
        device=device,
        threads=threads or _usable_cores(),
        pretrained=str(weights) if weights is not None else pretrained,
    )
    _check_loss(spec)
    with console.status(f"loading {escape(data)} at {image_size} px"):
        prepared = _load(data, source, spec, split, n_images, difficulty, resize_mode)
    _print_what_runs(spec, data, split, prepared)
    _render(train_run(spec, prepared, reporter=_EpochPrinter(epochs)))


def _checked_image_size(backbone: str, image_size: int | None, synthetic: bool) -> int:
    """The given size, else the default; either refused before minutes of decoding, not after."""
    from cce_bench.models import check_image_size, resolve_backbone

    size = image_size or _default_image_size(resolve_backbone(backbone), synthetic)
    check_image_size(backbone, size)
    return size


def _default_image_size(info: BackboneInfo, synthetic: bool) -> int:
    """The backbone's native size for real images; 32 px (or the backbone's minimum) for
    synthetic ones; always the native size for fixed-size models (ViTs)."""
    if info.fixed_size or not synthetic:
        return info.native_size
    return max(SYNTHETIC_IMAGE_SIZE, info.min_size)


def _check_weights(backbone: str, weights: Path | None, pretrained: bool) -> None:
    """A pickled model is refused in a second, and missing hub weights named, before decoding."""
    from cce_bench.models import pretrained_weights_path, read_weights_file

    if weights is not None:
        read_weights_file(weights)
    elif pretrained:
        pretrained_weights_path(backbone)


def _check_loss(spec: RunSpec) -> None:
    """An unknown loss, or a tau it does not take, fails here rather than after the data load."""
    from cce_bench.losses import get_loss

    get_loss(spec.loss, **spec.loss_params)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _load(
    data: str,
    source: str | None,
    spec: RunSpec,
    split: str,
    n_images: int,
    difficulty: float | None,
    resize_mode: str,
) -> PreparedData:
    """The images as a study would see them: source, split, decoded cache."""
    from cce_bench.data.pipeline import load_run_data

    synthetic = data == "synthetic"
    _, prepared, _ = load_run_data(
        "synthetic" if synthetic else source,
        None if synthetic else Path(data),
        image_size=spec.image_size,
        split=split,
        test_fraction=TEST_FRACTION,
        val_fraction=VAL_FRACTION,
        split_seed=SPLIT_SEED,
        n_images=n_images,
        difficulty=difficulty,
        resize_mode=resize_mode,
    )
    return prepared


def _print_what_runs(spec: RunSpec, data: str, split: str, prepared: PreparedData) -> None:
    sizes = {name: len(index) for name, index in prepared.parts.items()}
    console.print(
        f"[bold]{escape(spec.backbone)}[/bold] + [bold]{escape(spec.loss)}[/bold] on "
        f"{escape(data)} ({sizes.get('train', 0)} train / {sizes.get('val', 0)} val images, "
        f"{spec.image_size} px, {split} split)"
    )


class _EpochPrinter:
    """The reporter: one line per epoch, never stops the run."""

    def __init__(self, epochs: int) -> None:
        self.epochs, self.last = epochs, time.perf_counter()

    def __call__(self, epoch: int, metrics: dict[str, Any]) -> bool:
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        console.print(
            f"epoch {epoch}/{self.epochs}  loss {metrics['loss']:.4f}  "
            f"top-1 {metrics['top1']:.3f}  bal. acc {metrics['balanced_accuracy']:.3f}  "
            f"F1 {metrics['macro_f1']:.3f}  [dim]{seconds:.1f} s[/dim]",
            soft_wrap=True,
        )
        return False


def _render(result: RunResult) -> None:
    from cce_bench.metrics import METRIC_LABELS

    if result.outcome == "diverged":
        err_console.print(
            f"[yellow]the run diverged (non-finite loss) at step {result.diverged_at_step}; "
            "lower --lr or raise the warm-up[/yellow]"
        )
    if not result.metrics:
        return
    table = Table(title=f"validation metrics ({len(result.y_true)} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in TABLE_METRICS:
        value = result.metrics.get(key)
        shown = "n/a" if value is None or value != value else f"{value:.4f}"
        table.add_row(METRIC_LABELS[key], shown)
    table.caption = "The paper's metrics are macro one-vs-rest over the classes."
    console.print(table)
    console.print(
        f"training throughput {result.images_per_s:.0f} images/s on {escape(result.device)}; "
        f"wall time {result.wall_time_s:.1f} s; peak memory {result.peak_memory_mb:.0f} MB"
    )
