"""What a study will cost before it runs: runs, images and time per backbone and phase.

A study file's header estimate is hand arithmetic on assumed throughputs, and the paper
study's was off in both directions; ``plan_study`` does the same sum from the study itself
(trials, seeds, epochs, split fractions, the anytime design's first look and cap) and a
measured throughput: a quick probe on this machine, or a ``benchmarks/gpu_check.sh`` result
(``read_throughput``) for the cards the study will run on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cce_bench.errors import StudyConfigError

if TYPE_CHECKING:
    from cce_bench.config import StudySpec

#: Images in a source whose folder the plan does not need to read (HAM10000: 10,015 images of
#: 7,470 lesions, Tschandl et al. 2018; hmnist is the same images resampled).
KNOWN_IMAGES: dict[str, int] = {"ham10000": 10_015, "hmnist": 10_015}

#: Scoring an image costs about a third of training on it (``_estimate.EVAL_COST``).
EVAL_COST = 1 / 3


class PlanInputError(StudyConfigError):
    """The plan lacks a number it cannot read from the study (image count, throughput)."""


@dataclass(frozen=True)
class PlanRow:
    """One backbone's phase: runs (a range under the anytime design), images and run-hours."""

    backbone: str
    phase: str
    image_size: int
    runs: tuple[int, int]
    images: tuple[int, int]  # trained, over every run and epoch
    scored: tuple[int, int]  # evaluated after each epoch
    images_per_s: float | None
    seeds: tuple[int, int] | None = None

    @property
    def run_hours(self) -> tuple[float, float] | None:
        """Hours on one slot, least and most; None without a throughput."""
        if not self.images_per_s:
            return None
        low, high = (
            (trained + EVAL_COST * scored) / self.images_per_s / 3600
            for trained, scored in zip(self.images, self.scored, strict=True)
        )
        return low, high


@dataclass(frozen=True)
class StudyPlan:
    """Every row of a study's plan, and the wall time on ``slots`` runs at once."""

    rows: tuple[PlanRow, ...]
    slots: int
    throughput_source: str

    @property
    def run_hours(self) -> tuple[float, float] | None:
        """Run-hours of the whole study, least and most; None when a backbone has no rate."""
        spans = [row.run_hours for row in self.rows]
        known = [span for span in spans if span is not None]
        if len(known) < len(spans):
            return None
        return sum(low for low, _ in known), sum(high for _, high in known)

    @property
    def wall_hours(self) -> tuple[float, float] | None:
        """Wall hours with every slot busy (the serial tail of the last runs aside)."""
        hours = self.run_hours
        return None if hours is None else (hours[0] / self.slots, hours[1] / self.slots)


def part_sizes(spec: StudySpec, n_images: int | None) -> dict[str, int]:
    """Approximate images per part: ``test_fraction`` of all, ``val_fraction`` of all."""
    total = n_images or _known_images(spec)
    test = round(total * spec.data.test_fraction)
    val = round(total * spec.data.val_fraction)
    return {"train": total - test - val, "val": val, "test": test}


def _known_images(spec: StudySpec) -> int:
    if spec.data.source == "synthetic":
        from cce_bench.data import SYNTHETIC_N_IMAGES

        return spec.data.n_images or SYNTHETIC_N_IMAGES
    if spec.data.source in KNOWN_IMAGES:
        return KNOWN_IMAGES[spec.data.source]
    raise PlanInputError(
        f"the plan cannot know how many images `data.source` = {spec.data.source!r} holds "
        "without reading it; pass --images N"
    )


def plan_study(
    spec: StudySpec,
    images_per_s: Mapping[str, float | None],
    *,
    n_images: int | None = None,
    slots: int = 1,
    throughput_source: str = "",
) -> StudyPlan:
    """Runs, images to train and time per backbone and phase (tune, evaluate).

    Tuning: arms x ``tune.n_trials`` x ``tune.replicates`` runs on the training part, scored on
    validation every epoch (an upper bound: pruned trials end sooner). Evaluation: arms x seeds
    on training + validation, scored on test; the anytime design runs between its first look
    (``evaluate.seeds``) and ``evaluate.max_seeds`` seeds.
    """
    parts = part_sizes(spec, n_images)
    arms, epochs = len(spec.losses.arms), spec.train.epochs
    last = spec.evaluate.max_seeds if spec.evaluate.stopping == "anytime" else None
    seeds = (spec.evaluate.seeds, last or spec.evaluate.seeds)
    trials = arms * spec.tune.n_trials * spec.tune.replicates
    evaluated = (arms * seeds[0], arms * seeds[1])
    rows = []
    for backbone in spec.models.backbones:
        rate, size = images_per_s.get(backbone), spec.image_size_for(backbone)
        tuned = trials * epochs * parts["train"]
        rows.append(
            PlanRow(backbone, "tune", size, (trials, trials), (tuned, tuned),
                    (trials * epochs * parts["val"],) * 2, rate)
        )  # fmt: skip
        least, most = evaluated
        per_run = epochs * (parts["train"] + parts["val"])
        rows.append(
            PlanRow(backbone, "evaluate", size, evaluated, (least * per_run, most * per_run),
                    (least * epochs * parts["test"], most * epochs * parts["test"]), rate, seeds)
        )  # fmt: skip
    return StudyPlan(tuple(rows), max(1, slots), throughput_source)


def read_throughput(path: Path) -> dict[str, float]:
    """Training images/s per backbone from a ``gpu_check.sh`` result (``gpu_check.json``).

    Reads ``{"backbones": {"<name>": {"images_per_s": ...}, ...}}``; one run alone on a card,
    so the plan's time is per slot as if each run had its card (packing two per card is
    measured separately in the same file, ``packing``).
    """
    try:
        document: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        table = document["backbones"]
        return {str(name): float(entry["images_per_s"]) for name, entry in table.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PlanInputError(
            f"{path}: not a gpu_check result with backbones.<name>.images_per_s ({error}); "
            "pass the gpu_check.json that benchmarks/gpu_check.sh wrote"
        ) from None


#: The probe's image side: small, so that ``cce-bench plan`` takes seconds per backbone on a
#: CPU; the rate is scaled to the study's size by pixel count (a convolutional network's cost
#: grows about with the pixels it sees), which is why the plan calls it a rough CPU figure.
PROBE_SIZE = 64


def probe_rates(spec: StudySpec, *, batch_size: int = 4, steps: int = 1) -> dict[str, float]:
    """Training images/s of each backbone on this machine's CPU, rough and fast.

    One timed step of ``batch_size`` images at ``PROBE_SIZE`` px (or the backbone's minimum)
    on one thread (on a busy machine two threads waiting on each other measured 10x slower
    than one), scaled by pixels to the study's size: a CPU figure, which says how long the
    study would take here; ``--throughput`` gives a GPU's.
    """
    from cce_bench.models import resolve_backbone
    from cce_bench.study._estimate import probe_images_per_s

    rates = {}
    for backbone in spec.models.backbones:
        size = spec.image_size_for(backbone)
        probed = min(size, max(PROBE_SIZE, resolve_backbone(backbone).min_size))
        rate = probe_images_per_s(
            backbone, image_size=probed, batch_size=batch_size, num_classes=7,
            threads=1, steps=steps,
        )  # fmt: skip
        rates[backbone] = rate * (probed / size) ** 2
    return rates
