"""`cce-bench train`: one training run from flags, its metrics as a table.

The quickest way to try a setting: no study file, no tuning, no Ray. The data path is the one
a study uses (``cce_bench.data.pipeline.load_run_data``), trained on ``train`` and scored on
``val``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from cce_bench.cli.app import app, console, err_console
from cce_bench.data import SYNTHETIC_N_IMAGES

if TYPE_CHECKING:
    from cce_bench.models import BackboneInfo
    from cce_bench.train import RunResult

#: The paper's four (Table 1, macro one-vs-rest) then the clinical metrics, as printed.
METRIC_LABELS: dict[str, str] = {
    "paper_accuracy": "accuracy (paper, macro OvR)",
    "paper_sensitivity": "sensitivity (paper)",
    "paper_precision": "precision (paper)",
    "paper_specificity": "specificity (paper)",
    "top1": "top-1 accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro F1",
    "melanoma_sensitivity": "melanoma sensitivity",
    "macro_auc": "macro AUC (OvR)",
}

#: Split fractions of the whole set, as the shipped studies use (0.65 / 0.15 / 0.2).
TEST_FRACTION, VAL_FRACTION = 0.2, 0.15

#: The split stays put while --seed varies, as in a study, so seeds compare like with like.
SPLIT_SEED = 0

#: Synthetic images default to 32 px: enough for the generated lesions, and fast on a laptop.
SYNTHETIC_IMAGE_SIZE = 32


def _default_image_size(info: BackboneInfo, synthetic: bool) -> int:
    """The backbone's native size for real images; 32 px (or the backbone's minimum) for
    synthetic ones; always the native size for fixed-size models (ViTs)."""
    if info.fixed_size or not synthetic:
        return info.native_size
    return max(SYNTHETIC_IMAGE_SIZE, info.min_size)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@app.command()
def train(
    backbone: str = typer.Option("resnet18", help="timm model name or one of the paper's four."),
    loss: str = typer.Option("ce", help="ce, cce, cce_tau, focal, label_smoothing."),
    tau: float | None = typer.Option(None, help="Confusion threshold of cce / cce_tau."),
    data: str = typer.Option("synthetic", help="`synthetic`, or a dataset folder or file."),
    source: str | None = typer.Option(None, help="Source of --data (detected by default)."),
    n_images: int = typer.Option(
        SYNTHETIC_N_IMAGES, help="Images to generate when --data synthetic."
    ),
    difficulty: float | None = typer.Option(
        None, help="How alike the confusable classes look, in [0, 1], when --data synthetic."
    ),
    resize_mode: str = typer.Option(
        "squash", help="How images become squares: squash, center_crop or pad."
    ),
    image_size: int | None = typer.Option(
        None, help="Square input size (default: the backbone's native size; 32 for synthetic)."
    ),
    epochs: int = typer.Option(3, help="Training epochs."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (after warm-up)."),
    batch_size: int = typer.Option(64, help="Images per training step."),
    aug_strength: float = typer.Option(0.5, help="Augmentation strength in [0, 1]."),
    policy: str = typer.Option(
        "standard", help="Augmentation policy: none, flips, standard, strong."
    ),
    seed: int = typer.Option(0, help="Seed of the initialisation, data order and augmentation."),
    split: str = typer.Option("lesion", help="paper, lesion or official."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: int | None = typer.Option(None, help="Torch threads (default: all usable cores)."),
    pretrained: bool = typer.Option(
        False, help="Start from timm's pretrained weights (from the Hugging Face cache)."
    ),
    weights: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="Start from a weights file (.safetensors or a torch state dict).",
    ),
) -> None:
    """Train one backbone with one loss and print its validation metrics."""
    from cce_bench.data.pipeline import load_run_data
    from cce_bench.losses import get_loss
    from cce_bench.models import (
        check_image_size,
        pretrained_weights_path,
        read_weights_file,
        resolve_backbone,
    )
    from cce_bench.train import RunSpec, train_run

    synthetic = data == "synthetic"
    if difficulty is not None and not synthetic:
        raise typer.BadParameter("applies to --data synthetic only", param_hint="--difficulty")
    image_size = image_size or _default_image_size(resolve_backbone(backbone), synthetic)
    check_image_size(backbone, image_size)  # fail before minutes of decoding, not after
    if weights is not None:
        read_weights_file(weights)  # a pickled model is refused in a second, not after decoding
    elif pretrained:
        pretrained_weights_path(backbone)
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
    get_loss(loss, **spec.loss_params)  # an unknown loss, or a tau it does not take, fails here
    with console.status(f"loading {escape(data)} at {image_size} px"):
        _, prepared, _ = load_run_data(
            "synthetic" if synthetic else source,
            None if synthetic else Path(data),
            image_size=image_size,
            split=split,
            test_fraction=TEST_FRACTION,
            val_fraction=VAL_FRACTION,
            split_seed=SPLIT_SEED,
            n_images=n_images,
            difficulty=difficulty,
            resize_mode=resize_mode,
        )
    sizes = {name: len(index) for name, index in prepared.parts.items()}
    console.print(
        f"[bold]{escape(backbone)}[/bold] + [bold]{escape(loss)}[/bold] on {escape(data)} "
        f"({sizes.get('train', 0)} train / {sizes.get('val', 0)} val images, {image_size} px, "
        f"{split} split)"
    )
    result = train_run(spec, prepared, reporter=_EpochPrinter(epochs))
    _render(result)


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
    for key, label in METRIC_LABELS.items():
        value = result.metrics.get(key)
        table.add_row(label, "n/a" if value is None or value != value else f"{value:.4f}")
    console.print(table)
    console.print(
        f"training throughput {result.images_per_s:.0f} images/s on {escape(result.device)}; "
        f"wall time {result.wall_time_s:.1f} s; peak memory {result.peak_memory_mb:.0f} MB"
    )
