"""Images per second delivered to a model at 224 px with augmentation: naive pipeline vs ours.

(a) naive, as most HAM10000 code does it: a ``Dataset`` whose ``__getitem__`` opens the JPEG
    with Pillow, decodes, resizes and augments it with torchvision transforms, every epoch,
    through a ``DataLoader`` with 2 worker processes;
(b) cce-bench: decode and resize once into the uint8 cache (timed separately, it is paid once
    per dataset and size), then per batch one memory-mapped gather and ``augment_batch``.

Both apply the same augmentation: flips on both axes, a random resized crop, a small rotation
and colour jitter at the policy's strength, then normalisation. By default the script writes
600x450 JPEGs (HAM10000's original size) to a temporary folder; ``--real`` runs on a HAM10000
folder as well (e.g. shared/data/ham10000-original-sample). Rates are given per wall-clock
second and per CPU-second of all processes (the DataLoader's workers included): on a machine
shared with other jobs the second is the fairer comparison. Run:

    .venv/bin/python benchmarks/bench_data.py [--n 512] [--real PATH]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cce_bench.data.augment import augment_batch, get_policy, normalize
from cce_bench.data.cache import load_images
from cce_bench.data.sources import load_source
from cce_bench.data.synthetic import generate_synthetic, write_synthetic_dataset

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_originals(folder: Path, n: int) -> Path:
    """``n`` synthetic lesions as 600x450 JPEGs in HAM10000's layout, with sensor-like noise.

    Rendered at 150 px and upscaled (rendering 600 px lesions would take longer than the
    benchmark); the added noise keeps the JPEGs about as costly to decode as real ones.
    """
    from PIL import Image

    root = write_synthetic_dataset(folder, n, 16, seed=0)
    images = generate_synthetic(n, 150, seed=0).images
    rng = np.random.default_rng(0)
    for path in sorted((root / "HAM10000_images_part_1").iterdir()):
        index = int(path.stem.split("_")[1])
        big = np.asarray(Image.fromarray(images[index]).resize((600, 450), Image.BICUBIC))
        noisy = np.clip(big + rng.normal(0, 6, big.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(path, quality=90)
    return root


class NaiveDataset(torch.utils.data.Dataset):
    """Per-sample Pillow decode + torchvision augmentation, the common HAM10000 recipe."""

    def __init__(self, paths, labels, size: int, strength: float) -> None:
        from torchvision import transforms

        spec = get_policy("standard")
        min_area = 1.0 - (1.0 - spec.min_crop_area) * strength
        self.paths, self.labels = list(paths), list(labels)
        self.transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(size, scale=(min_area, 1.0)),
                transforms.RandomHorizontalFlip(),
                transforms.RandomVerticalFlip(),
                transforms.RandomRotation(spec.rotation_deg * strength),
                transforms.ColorJitter(
                    spec.brightness * strength,
                    spec.contrast * strength,
                    spec.saturation * strength,
                    spec.hue * strength,
                ),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), self.labels[index]


@dataclass(frozen=True)
class Rate:
    """Images delivered per wall-clock second and per CPU-second (all processes)."""

    images: int
    wall_s: float
    cpu_s: float

    @property
    def per_wall_s(self) -> float:
        return self.images / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.images / self.cpu_s


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the DataLoader's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def naive_rate(labeled, size: int, strength: float, batch: int, epochs: int) -> Rate:
    """(a), with the DataLoader defaults most code uses: workers start again every epoch."""
    dataset = NaiveDataset(labeled.paths, labeled.labels, size, strength)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=2)
    wall, cpu, delivered = time.perf_counter(), _cpu_seconds(), 0
    for _ in range(epochs):
        for x, _ in loader:
            delivered += len(x)
    return Rate(delivered, time.perf_counter() - wall, _cpu_seconds() - cpu)


def cached_rate(images: np.ndarray, strength: float, batch: int, epochs: int) -> Rate:
    """(b): shuffled gathers from the mapped cache, batched augmentation, normalisation."""
    generator = torch.Generator().manual_seed(0)
    order_rng = np.random.default_rng(0)
    wall, cpu, delivered = time.perf_counter(), _cpu_seconds(), 0
    for _ in range(epochs):
        order = order_rng.permutation(len(images))
        for start in range(0, len(order), batch):
            raw = torch.from_numpy(images[np.sort(order[start : start + batch])])
            x = augment_batch(raw, policy="standard", strength=strength, generator=generator)
            x = normalize(x, IMAGENET_MEAN, IMAGENET_STD)
            delivered += len(x)
    return Rate(delivered, time.perf_counter() - wall, _cpu_seconds() - cpu)


def run(root: Path, args: argparse.Namespace, cache_dir: Path) -> None:
    """Build the cache, time (a) and (b) back to back, print rates and ratios."""
    labeled = load_source("ham10000", root)
    started = time.perf_counter()
    images = load_images(labeled, size=args.size, cache_dir=cache_dir, workers=2)
    build = len(labeled) / (time.perf_counter() - started)
    naive = naive_rate(labeled, args.size, args.strength, args.batch_size, args.naive_epochs)
    ours = cached_rate(images, args.strength, args.batch_size, args.epochs)
    print(
        f"data: {root} ({len(labeled)} images), {args.size} px, policy standard, strength "
        f"{args.strength}, batch {args.batch_size}, {torch.get_num_threads()} torch threads"
    )
    print("                                                   img/s (wall)  img/CPU-s")
    for name, rate in (
        ("(a) naive: Pillow + torchvision, 2 workers", naive),
        ("(b) cce-bench: mapped cache + batched augment", ours),
    ):
        print(f"  {name:47s} {rate.per_wall_s:10.0f} {rate.per_cpu_s:10.0f}")
    print(
        f"  ratio (b)/(a): {ours.per_wall_s / naive.per_wall_s:.1f}x wall-clock, "
        f"{ours.per_cpu_s / naive.per_cpu_s:.1f}x per CPU-second"
    )
    print(f"  cache build (once per dataset and size, 2 processes): {build:.0f} img/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=512, help="JPEGs to write (default 512)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed for (b)")
    parser.add_argument("--naive-epochs", type=int, default=1, help="epochs timed for (a)")
    parser.add_argument("--real", type=Path, help="also run on this HAM10000 folder")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="cce-bench-data-") as scratch:
        scratch = Path(scratch)
        run(write_originals(scratch / "jpegs", args.n), args, scratch / "cache")
        if args.real is not None:
            run(args.real, args, scratch / "cache")


if __name__ == "__main__":
    main()
