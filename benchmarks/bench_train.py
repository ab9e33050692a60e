"""Training throughput of ``train_run`` against a bare PyTorch loop, side by side, on CPU.

Both train the same timm model with the same batch size on the same uint8 images held in
memory, with augmentation off (policy ``none``: uint8 -> float, normalise), channels_last and
AdamW; the bare loop has no schedule, no divergence check, no loss registry and no bookkeeping.
Runs alternate (bare, ours, bare, ours, ...); the table shows the best rate of each and the
median of the per-pair ratios, so that load from other processes on a shared machine hits
both alike. The harness target is a ratio >= 0.97.

``--survey`` also prints ``train_run`` images/s of small timm models at 32 and 64 px, the
numbers the quickstart's backbones are picked from.

    .venv/bin/python benchmarks/bench_train.py [--threads 1] [--repeats 3] [--survey]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import timm
import torch
import torch.nn.functional as F

from cce_bench.data.augment import normalize, to_float
from cce_bench.data.labeled import HAM10000_CLASSES, PreparedData
from cce_bench.models import backbone_normalization
from cce_bench.train import RunSpec, train_run

SURVEY_MODELS = (
    "lcnet_050",
    "mobilenetv3_small_050",
    "mobilenetv3_small_100",
    "resnet10t",
    "resnet18",
    "efficientnet_b0",
)


def make_data(n_images: int, size: int, seed: int = 0) -> PreparedData:
    """Random uint8 images (content does not change the cost of a step)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(HAM10000_CLASSES), n_images)
    return PreparedData(
        images=rng.integers(0, 256, (n_images, size, size, 3), dtype=np.uint8),
        labels=labels,
        image_ids=np.array([f"img{i}" for i in range(n_images)]),
        group_ids=np.array([f"lesion{i}" for i in range(n_images)]),
        class_names=HAM10000_CLASSES,
        parts={"train": np.arange(n_images), "val": np.arange(min(n_images, 64))},
    )


def bare_loop(spec: RunSpec, data: PreparedData) -> float:
    """Images/s of the plainest loop that trains the same model on the same batches."""
    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    model = timm.create_model(spec.backbone, num_classes=data.num_classes)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr)
    mean, std = backbone_normalization(spec.backbone)
    rng = np.random.default_rng(spec.seed)
    labels = torch.from_numpy(data.labels)
    images, elapsed = 0, 0.0
    for _ in range(spec.epochs):
        order = rng.permutation(len(data.images))
        started = time.perf_counter()
        for start in range(0, len(order) - 1, spec.batch_size):
            idx = order[start : start + spec.batch_size]
            x = normalize(to_float(torch.from_numpy(data.images[idx])), mean, std)
            x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += len(idx)
        elapsed += time.perf_counter() - started
    return images / elapsed


def harness_ratio(backbone: str, size: int, args: argparse.Namespace) -> tuple[float, float, float]:
    """Best images/s of the bare loop and of ``train_run`` and the median paired ratio."""
    data = make_data(args.images, size)
    spec = RunSpec(
        backbone=backbone,
        image_size=size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        augment_policy="none",
        warmup_epochs=0,
        threads=args.threads,
        device="cpu",
    )
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(spec, data))
        ours.append(train_run(spec, data).images_per_s)
    return max(bare), max(ours), float(np.median(np.divide(ours, bare)))


def survey(args: argparse.Namespace) -> None:
    print(
        f"\ntrain_run images/s, CPU, {args.threads} thread(s), batch {args.batch_size}, "
        "policy standard, AdamW, best of 2"
    )
    print(f"{'backbone':24s} {'32 px':>8s} {'64 px':>8s}")
    for backbone in SURVEY_MODELS:
        rates = []
        for size in (32, 64):
            data = make_data(args.images, size)
            spec = RunSpec(
                backbone=backbone,
                image_size=size,
                epochs=1,
                batch_size=args.batch_size,
                threads=args.threads,
                device="cpu",
            )
            rates.append(max(train_run(spec, data).images_per_s for _ in range(2)))
        print(f"{backbone:24s} {rates[0]:8.0f} {rates[1]:8.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--survey", action="store_true", help="also time small backbones")
    args = parser.parse_args()
    print(
        f"train_run vs bare PyTorch loop, CPU, {args.threads} thread(s), batch "
        f"{args.batch_size}, {args.images} images x {args.epochs} epochs, policy none, "
        f"best of {args.repeats}"
    )
    print(f"{'backbone':24s} {'size':>5s} {'bare img/s':>11s} {'train_run':>11s} {'ratio':>6s}")
    for backbone, size in (("resnet18", 32), ("mobilenetv3_small_050", 32)):
        bare, ours, ratio = harness_ratio(backbone, size, args)
        print(f"{backbone:24s} {size:5d} {bare:11.1f} {ours:11.1f} {ratio:6.3f}", flush=True)
    if args.survey:
        survey(args)


if __name__ == "__main__":
    main()
