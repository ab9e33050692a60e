"""Sequential evaluation, simulated: does the anytime design keep its error promise, and what
does looking after every seed save against a fixed number of seeds?

Each seed adds one paired difference d with mean delta and sd 1: every test here is
scale-invariant, so sd 1 loses nothing and ``delta`` is the true effect in sd units of the
differences. Looks are after every seed from ``--first`` (5) to ``--max-seeds`` (20), as
``evaluate.seeds`` and ``evaluate.max_seeds`` would set them. The design is the real one:
:func:`cce_bench.sequential.decision_paths`, the vectorised :func:`cce_bench.sequential.look_path`
(a test holds the two equal): an effect when the e-value reaches m / alpha, "equivalent" when the
confidence sequence lies inside ±margin, the first decision wins, and constant differences take
the zero-spread branch.

1. Type-I error: ``--replicates`` null replicates of a family of m (``--comparisons``, 4)
   independent comparisons, margin 0.75 sd. Independent is where Bonferroni's union bound is
   closest to tight. The anytime design errs when any comparison's first decision is an effect;
   beside it, the e-value reaching m / alpha at any look (the worst stopping rule, an upper bound
   for every other), the fixed 10-seed design and naive repeated t-tests. Shown with
   Clopper-Pearson 95% intervals for normal differences, heavy-tailed ones (t, 3 df), skewed
   ones (centred exponential) and discrete ones (-1, 0, +1 equally likely: ties, and constant
   runs that take the zero-spread branch). The guarantee assumes normal differences: the other
   columns measure that assumption.
2. Power, seeds and coverage: one comparison of the family (level alpha / m), true difference
   ``delta`` = margin, so "equivalent" is a wrong decision too. Power is the share whose first
   decision is the effect, by ``--max-seeds``; mean seeds counts a stop at the first decision;
   coverage is the share whose confidence sequence covers delta at every look (promised
   >= 1 - alpha/m). Against it, the fixed 10-seed paired t-test and the fixed design of
   :func:`cce_bench.stats.seeds_needed` with the anytime design's power, both exact.

Usage: ``python benchmarks/bench_sequential.py [--replicates 20000] [--seed 0] [--comparisons 4]``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
from scipy import stats as scipy_stats

from cce_bench.sequential import CODES, OPEN, POSITIVE, first_decisions, iter_looks
from cce_bench.stats import paired_t_power, safe_t_evalue, seeds_needed

ALPHA, COMPARISONS, FIRST_LOOK, MAX_SEEDS, FIXED_SEEDS = 0.05, 4, 5, 20, 10
EFFECTS = (0.5, 1.0, 2.0)
#: Equivalence margin of the type-I simulation, in sd of the differences.
NULL_MARGIN = 0.75

#: Designs of the type-I table; m comparisons unless "one comparison".
DESIGNS = (
    f"anytime design (look_path): first decision an effect, looks n = {FIRST_LOOK}..{MAX_SEEDS}",
    "e-value >= m/α at any look (the worst stopping rule)",
    f"fixed {FIXED_SEEDS} seeds: paired t-test at α/m",
    "naive: paired t-test at α/m at every look",
    "naive: paired t-test at α at every look, one comparison",
    f"naive: paired t-test at α at n = {FIRST_LOOK} and 10, one comparison",
)
SEQUENTIAL, ANY_LOOK, FIXED, NAIVE_FAMILY, NAIVE_EVERY_LOOK, NAIVE_TWO_LOOKS = DESIGNS

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]

#: Null distributions of the differences, each with mean 0.
NULLS: dict[str, Sampler] = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "t, 3 df": lambda rng, shape: rng.standard_t(3, shape),
    "centred exponential": lambda rng, shape: rng.exponential(1.0, shape) - 1.0,
    "discrete -1, 0, +1": lambda rng, shape: rng.integers(-1, 2, shape).astype(np.float64),
}


def anytime_walk(
    d: np.ndarray, truth: float, first: int, m: int, margin: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The anytime design on ``[R, N]`` paths of true mean ``truth``: per path, the code of its
    first decision (:data:`cce_bench.sequential.CODES`, 0 never), the seeds it stopped at, and
    whether its confidence sequence covered ``truth`` at every look."""
    columns, covered = [], np.ones(d.shape[0], dtype=bool)
    for _, codes, low, high in iter_looks(d, first, ALPHA, m, margin):
        columns.append(codes)
        covered &= (low < truth) & (truth < high)
    code, index = first_decisions(np.stack(columns, axis=1))
    stopped = np.where(code != OPEN, first + index, d.shape[1])
    return code, stopped, covered


def running_t(d: np.ndarray) -> np.ndarray:
    """One-sample t statistic of the first n differences along the last axis, n = 1 .. N."""
    n = np.arange(1, d.shape[-1] + 1)
    total, squares = np.cumsum(d, axis=-1), np.cumsum(d * d, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = (squares - total * total / n) / (n - 1)
        return (total / n) / np.sqrt(variance / n)


def looks(d: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
    """(seed counts n of the looks, t statistics at those looks along the last axis)."""
    n = np.arange(first, d.shape[-1] + 1)
    return n, running_t(d)[..., first - 1 :]


def safe_rejections(d: np.ndarray, first: int, threshold: float) -> np.ndarray:
    """Per look, whether the safe t-test's e-value has reached ``threshold``."""
    n, t = looks(d, first)
    return safe_t_evalue(t, n) >= threshold


def t_rejections(d: np.ndarray, first: int, level: float) -> np.ndarray:
    """Per look, whether the plain two-sided paired t-test rejects at ``level``."""
    n, t = looks(d, first)
    return 2.0 * scipy_stats.t.sf(np.abs(t), n - 1) < level


def rate(hits: np.ndarray) -> tuple[float, float, float]:
    """(share of True, Clopper-Pearson 95% interval) of a boolean vector of replicates."""
    count = int(hits.sum())
    interval = scipy_stats.binomtest(count, hits.size).proportion_ci(method="exact")
    return count / hits.size, float(interval.low), float(interval.high)


def type_one_error(
    replicates: int,
    seed: int,
    *,
    first: int = FIRST_LOOK,
    max_seeds: int = MAX_SEEDS,
    m: int = COMPARISONS,
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Under each null: the family-wise error of the anytime design and of the designs beside
    it, keyed by design, then by null distribution."""
    rng = np.random.default_rng(seed)
    results: dict[str, dict[str, tuple[float, float, float]]] = {name: {} for name in DESIGNS}
    for null, sample in NULLS.items():
        d = sample(rng, (replicates, m, max_seeds))
        code, _, _ = anytime_walk(d.reshape(-1, max_seeds), 0.0, first, m, NULL_MARGIN)
        effect = np.isin(code, (CODES[POSITIVE], -CODES[POSITIVE])).reshape(replicates, m)
        hits = {
            SEQUENTIAL: effect.any(axis=-1),
            ANY_LOOK: safe_rejections(d, first, m / ALPHA).any(axis=(-1, -2)),
            FIXED: t_rejections(d[..., :FIXED_SEEDS], FIXED_SEEDS, ALPHA / m).any(axis=(-1, -2)),
            NAIVE_FAMILY: t_rejections(d, first, ALPHA / m).any(axis=(-1, -2)),
            NAIVE_EVERY_LOOK: t_rejections(d[:, 0], first, ALPHA).any(axis=-1),
            NAIVE_TWO_LOOKS: t_rejections(d[:, 0, :10], first, ALPHA)[:, [0, -1]].any(axis=-1),
        }
        for design, errs in hits.items():
            results[design][null] = rate(errs)
    return results


def power_rows(
    replicates: int,
    seed: int,
    *,
    first: int = FIRST_LOOK,
    max_seeds: int = MAX_SEEDS,
    m: int = COMPARISONS,
) -> list[dict[str, float]]:
    """Per effect (= margin): the anytime design's power, mean seeds and confidence-sequence
    coverage, and the two fixed designs."""
    rng = np.random.default_rng(seed)
    level = ALPHA / m
    rows = []
    for effect in EFFECTS:
        d = rng.standard_normal((replicates, max_seeds)) + effect
        code, stopped, covered = anytime_walk(d, effect, first, m, margin=effect)
        power = float((code == CODES[POSITIVE]).mean())
        # A power of 1 in R replicates says only that it is above 1 - 1/R.
        matched = seeds_needed(1.0, effect, level, power=min(power, 1.0 - 1.0 / replicates))
        rows.append(
            {
                "effect": effect,
                "power": power,
                "mean_seeds": float(stopped.mean()),
                "coverage": float(covered.mean()),
                "fixed_power": paired_t_power(effect, FIXED_SEEDS, alpha=level),
                "matched_n": matched,
                "matched_power": paired_t_power(effect, matched, alpha=level),
            }
        )
    return rows


def markdown(
    type_one: dict[str, dict[str, tuple[float, float, float]]],
    power: list[dict],
    replicates: int,
    m: int = COMPARISONS,
) -> str:
    level = ALPHA / m
    lines = [
        f"Type-I error, {replicates} null replicates: family-wise error of m = {m} independent "
        f"comparisons at α = {ALPHA} (one comparison where marked), margin {NULL_MARGIN} sd, "
        "with its Clopper-Pearson 95% interval, by the distribution of the differences.",
        "",
        "| Design | " + " | ".join(f"{null} differences" for null in NULLS) + " |",
        "|---|" + "---|" * len(NULLS),
    ]
    for design, by_null in type_one.items():
        cells = [f"{p:.2%} [{low:.2%}, {high:.2%}]" for p, low, high in by_null.values()]
        lines.append(f"| {design} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Power, seeds and coverage, {replicates} replicates per effect: one comparison of a "
        f"family of {m} (α/m = {level:g}), normal differences, true effect = margin, in sd of "
        f"the differences; the anytime design looks after every seed from {FIRST_LOOK} and "
        f"stops at its first decision or at {MAX_SEEDS}.",
        "",
        "| Effect (sd) | Anytime power | Anytime mean seeds | Confidence sequence covers at "
        f"every look | Fixed {FIXED_SEEDS} seeds: power | Fixed n with the anytime power "
        "| Its power |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in power:
        lines.append(
            f"| {row['effect']:g} | {row['power']:.1%} | {row['mean_seeds']:.1f} | "
            f"{row['coverage']:.2%} | {row['fixed_power']:.1%} | {row['matched_n']} | "
            f"{_share(row['matched_power'])} |"
        )
    return "\n".join(lines)


def _share(value: float) -> str:
    """A power as a percentage; scipy's noncentral t returns NaN far in its tail, where the
    power is 1 to printing precision."""
    return "100.0%" if math.isnan(value) else f"{value:.1%}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--comparisons", type=int, default=COMPARISONS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    type_one = type_one_error(args.replicates, args.seed, m=args.comparisons)
    power = power_rows(args.replicates, args.seed + 1, m=args.comparisons)
    print(markdown(type_one, power, args.replicates, args.comparisons))
    print(f"\n{args.replicates} replicates, seed {args.seed}, {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
