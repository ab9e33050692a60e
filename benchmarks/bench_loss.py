"""How much does each registered loss cost next to ``F.cross_entropy``, and next to a training step?

Two measurements, printed as rich tables:

1. forward + backward time of every loss in ``cce_bench.losses`` against
   ``torch.nn.functional.cross_entropy`` on the same logits and targets, N in {256, 4096, 65536},
   C in {7, 100}, on CPU (and CUDA when present), as the ratio of medians;
2. the loss's share of one training step of timm's ``resnet18`` (random init, batch 64, 64 px,
   channels_last, CPU, SGD) for CE and CCE. The targets set for it: CCE / CE <= 1.5 at N = 65536,
   C = 7, and a loss share <= 1%.

Timing: each loss runs in blocks of repeats after a warm-up, several blocks spread over the run,
and keeps its least block median (other jobs on a shared machine only ever add time). glibc is
told to keep freed memory (``mallopt``): by default it hands 1-30 MB blocks back to the OS on
every free, and the page faults of the next allocation made identical calls 2-15x slower at
random (measured at 4096 x 100), swamping the losses' own cost. Threads default to 1 so that
ratios are stable on a machine shared with other jobs.

Usage: ``python benchmarks/bench_loss.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from cce_bench.losses import available_losses, get_loss

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
BATCH_SIZES = (256, 4096, 65536)
CLASS_COUNTS = (7, 100)
REFERENCE = "F.cross_entropy"


def keep_freed_memory_in_process() -> None:
    """Fix glibc's mmap threshold at 32 MB (its maximum) and stop heap trimming (Linux only)."""
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(m_mmap_threshold, 32 * 2**20)
    libc.mallopt(m_trim_threshold, 2**30)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    work: Callable[[], object],
    device: torch.device,
    *,
    budget_s: float,
    min_repeats: int = 5,
    warmup: int = 3,
) -> float:
    """Median wall time of ``work()`` over repeats filling about ``budget_s`` (at most 200)."""
    for _ in range(warmup):
        work()
    _synchronize(device)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < min_repeats or (time.perf_counter() < deadline and len(times) < 200):
        start = time.perf_counter()
        work()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loss_step_seconds(
    loss_fn: LossFn, logits: torch.Tensor, target: torch.Tensor, *, budget_s: float
) -> float:
    """Median forward + backward time of ``loss_fn`` on a leaf copy of ``logits``."""
    leaf = logits.detach().clone().requires_grad_(True)

    def forward_backward() -> None:
        leaf.grad = None
        loss_fn(leaf, target).backward()

    return median_seconds(forward_backward, logits.device, budget_s=budget_s)


def loss_ratios(
    device: torch.device, sizes: tuple[int, ...], budget_s: float, rounds: int
) -> list[tuple[int, int, float, dict[str, float]]]:
    """Per (N, C): the F.cross_entropy time and every registered loss's time as a ratio of it.

    Each loss gets ``rounds`` blocks spread over the run; its time is its least block median,
    because other jobs on a shared machine can only add time, never remove it.
    """
    rows = []
    generator = torch.Generator().manual_seed(0)
    for n in sizes:
        for c in CLASS_COUNTS:
            logits = (torch.randn(n, c, generator=generator) * 3).to(device)
            target = torch.randint(0, c, (n,), generator=generator).to(device)
            losses = {REFERENCE: F.cross_entropy} | {
                name: get_loss(name) for name in available_losses()
            }
            best = dict.fromkeys(losses, math.inf)
            for _ in range(rounds):
                for name, loss_fn in losses.items():
                    block = loss_step_seconds(loss_fn, logits, target, budget_s=budget_s / rounds)
                    best[name] = min(best[name], block)
            ratios = {name: best[name] / best[REFERENCE] for name in available_losses()}
            rows.append((n, c, best[REFERENCE], ratios))
    return rows


def training_step_share(steps: int, budget_s: float) -> dict[str, tuple[float, float]]:
    """For CE and CCE: (median of ``steps`` resnet18 training steps, loss fwd+bwd), in s."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=7)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(64, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 7, (64,))
    result = {}
    for name in ("ce", "cce"):
        loss_fn = get_loss(name)

        def step(loss_fn: LossFn = loss_fn) -> None:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(images), target).backward()
            optimizer.step()

        cpu = torch.device("cpu")
        step_s = median_seconds(step, cpu, budget_s=0.0, min_repeats=steps, warmup=2)
        with torch.no_grad():
            logits = model(images)
        result[name] = (step_s, loss_step_seconds(loss_fn, logits, target, budget_s=budget_s))
    return result


def _ratio_table(device: torch.device, rows: list) -> Table:
    table = Table(title=f"forward + backward time / F.cross_entropy ({device.type})")
    for header in ("N", "C", REFERENCE, *available_losses()):
        table.add_column(header, justify="right", no_wrap=True, min_width=len(header))
    for n, c, reference, ratios in rows:
        cells = [f"{ratios[name]:.2f}" for name in available_losses()]
        table.add_row(str(n), str(c), f"{reference * 1e3:.3f} ms", *cells)
    return table


def _share_table(shares: dict[str, tuple[float, float]]) -> Table:
    table = Table(title="loss share of one resnet18 training step (batch 64, 64 px, CPU)")
    for column in ("loss", "step", "loss fwd+bwd", "share"):
        table.add_column(column, justify="right")
    for name, (step_s, loss_s) in shares.items():
        share = f"{100 * loss_s / step_s:.3f} %"
        table.add_row(name, f"{step_s * 1e3:.1f} ms", f"{loss_s * 1e6:.0f} us", share)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, short budgets")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory_in_process()
    console = Console(width=max(Console().width, 110))  # no truncated headers when piped
    sizes = BATCH_SIZES[:2] if args.quick else BATCH_SIZES
    budget_s, rounds = (0.1, 2) if args.quick else (1.0, 4)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for device in devices:
        console.print(_ratio_table(device, loss_ratios(device, sizes, budget_s, rounds)))
    console.print(
        _share_table(training_step_share(steps=3 if args.quick else 7, budget_s=budget_s))
    )
    console.print(f"torch {torch.__version__}, {args.threads} CPU thread(s)")


if __name__ == "__main__":
    main()
