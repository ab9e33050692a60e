"""What recording CCE's confused set costs a training step: CE and CCE, diagnostics on and off.

Every run records, per epoch, the mean size of H and each class's membership in it
(``cce_bench.mechanism.ConfusionTally``, updated on every training batch). This prints the
median seconds per training step of ``Trainer`` for CE and CCE with that tally on and off, side
by side, from one process. Configurations alternate within each repeat (CE off, CE on, CCE off,
CCE on, ...), so load from other processes on a shared machine hits all four alike; each cell is
the median over repeats of one epoch's mean step time.

    .venv/bin/python benchmarks/bench_mechanism.py [--backbone tf_efficientnet_lite0]
        [--size 64] [--batch-size 64] [--steps 20] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from cce_bench.data.labeled import HAM10000_CLASSES, PreparedData
from cce_bench.train import RunSpec
from cce_bench.train._loop import Trainer

CONFIGURATIONS = (("ce", False), ("ce", True), ("cce", False), ("cce", True))


def make_data(n_images: int, size: int, seed: int = 0) -> PreparedData:
    """Random uint8 images (content does not change the cost of a step)."""
    rng = np.random.default_rng(seed)
    return PreparedData(
        images=rng.integers(0, 256, (n_images, size, size, 3), dtype=np.uint8),
        labels=rng.integers(0, len(HAM10000_CLASSES), n_images),
        image_ids=np.array([f"img{i}" for i in range(n_images)]),
        group_ids=np.array([f"lesion{i}" for i in range(n_images)]),
        class_names=HAM10000_CLASSES,
        parts={"train": np.arange(n_images), "val": np.arange(min(n_images, 64))},
    )


def seconds_per_step(spec: RunSpec, data: PreparedData, diagnostics: bool) -> float:
    """One epoch's mean wall time per training step, the tally on or off."""
    trainer = Trainer.build(spec, data)
    if not diagnostics:
        trainer.tally = None
    log = trainer.train_epoch()
    steps = trainer.step
    if trainer.tally is not None:
        trainer.tally.summary(data.class_names)  # the once-per-epoch read-back counts too
    return log.seconds / steps


def tally_update_us(batch_size: int, calls: int = 2000) -> float:
    """The tally's own cost per training batch, in microseconds, free of the step's noise."""
    from cce_bench.mechanism import ConfusionTally

    tally = ConfusionTally(len(HAM10000_CLASSES), 0.0, torch.device("cpu"))
    logits = torch.randn(batch_size, len(HAM10000_CLASSES))
    target = torch.randint(0, len(HAM10000_CLASSES), (batch_size,))
    started = time.perf_counter()
    for _ in range(calls):
        tally.update(logits, target)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = make_data(args.steps * args.batch_size, args.size)
    times: dict[tuple[str, bool], list[float]] = {c: [] for c in CONFIGURATIONS}
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        for loss, diagnostics in CONFIGURATIONS:
            spec = RunSpec(
                backbone=args.backbone, image_size=args.size, loss=loss, epochs=1,
                batch_size=args.batch_size, threads=args.threads, augment_policy="none",
                device="cpu",
            )  # fmt: skip
            value = seconds_per_step(spec, data, diagnostics)
            if repeat:
                times[(loss, diagnostics)].append(value)
    cpu = platform.processor() or platform.machine()
    setting = f"{args.backbone} {args.size} px, batch {args.batch_size}, {args.steps} steps"
    print(f"{setting} x {args.repeats} repeats, {args.threads} thread(s), {cpu}")
    print("| loss | ms/step, diagnostics off | ms/step, diagnostics on | on / off |")
    print("|---|---|---|---|")
    for loss in ("ce", "cce"):
        off = statistics.median(times[(loss, False)]) * 1e3
        on = statistics.median(times[(loss, True)]) * 1e3
        print(f"| {loss} | {off:.1f} | {on:.1f} | {on / off:.3f} |")
    print(f"ConfusionTally.update alone, [{args.batch_size}, 7] logits: "
          f"{tally_update_us(args.batch_size):.0f} us per batch")  # fmt: skip


if __name__ == "__main__":
    main()
