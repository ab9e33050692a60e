"""Sequential evaluation, simulated: does the safe paired t-test keep its error promise, and what
does looking after every seed save against a fixed number of seeds?

Each seed adds one paired difference d ~ N(delta, 1): every test here is scale-invariant, so sd 1
loses nothing and ``delta`` is the true effect in sd units of the differences. Looks are after
every seed from ``--first`` (5) to ``--max-seeds`` (20), as ``evaluate.seeds`` and
``evaluate.max_seeds`` would set them; each comparison uses ``cce_bench.stats.safe_t_evalue``, the
e-value behind ``anytime_paired_t``, at the confirmatory family's threshold m / alpha.

1. Type-I error: ``--replicates`` null replicates of a family of m = 4 independent comparisons.
   Independent is where Bonferroni's union bound is closest to tight; comparisons that share a
   baseline arm are positively dependent and err together, which lowers the family-wise error.
   A family errs when any comparison's e-value reaches m / alpha at any look, so the estimate is
   the error of the worst stopping rule, an upper bound for every other. Shown with its
   Clopper-Pearson 95% interval, for normal differences and two non-normal ones (t with 3 df,
   a centred exponential), beside the fixed 10-seed design and naive repeated t-tests. The
   guarantee assumes normal differences: under strong skew the fixed t-test exceeds alpha as
   well, so the skewed column measures the t-test's assumption, not the sequential design.
2. Power and seeds: one comparison at level alpha / m. The sequential design stops at its first
   rejection or at ``--max-seeds``; only stops for an effect are modelled (stopping for
   equivalence would only lower its seeds). Against it, the fixed 10-seed paired t-test and the
   fixed design of :func:`cce_bench.stats.seeds_needed` with the sequential design's power,
   both at alpha / m and exact (noncentral t).

Usage: ``python benchmarks/bench_sequential.py [--replicates 20000] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from scipy import stats as scipy_stats

from cce_bench.stats import paired_t_power, safe_t_evalue, seeds_needed

ALPHA, COMPARISONS, FIRST_LOOK, MAX_SEEDS, FIXED_SEEDS = 0.05, 4, 5, 20, 10
EFFECTS = (0.0, 0.5, 1.0, 2.0)

#: Designs of the type-I table; m comparisons unless "one comparison".
DESIGNS = (
    f"sequential: safe t-test, e >= m/α at any look n = {FIRST_LOOK}..{MAX_SEEDS}",
    f"fixed {FIXED_SEEDS} seeds: paired t-test at α/m",
    "naive: paired t-test at α/m at every look",
    "naive: paired t-test at α at every look, one comparison",
    f"naive: paired t-test at α at n = {FIRST_LOOK} and 10, one comparison",
)
SEQUENTIAL, FIXED, NAIVE_FAMILY, NAIVE_EVERY_LOOK, NAIVE_TWO_LOOKS = DESIGNS

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]

#: Null distributions of the differences, each with mean 0.
NULLS: dict[str, Sampler] = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "t, 3 df": lambda rng, shape: rng.standard_t(3, shape),
    "centred exponential": lambda rng, shape: rng.exponential(1.0, shape) - 1.0,
}


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
    replicates: int, seed: int, *, first: int = FIRST_LOOK, max_seeds: int = MAX_SEEDS
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Under each null: the family-wise error of the sequential design, of the fixed 10-seed
    design, and of naive repeated t-tests, keyed by design, then by null distribution."""
    rng = np.random.default_rng(seed)
    m = COMPARISONS
    results: dict[str, dict[str, tuple[float, float, float]]] = {name: {} for name in DESIGNS}
    for null, sample in NULLS.items():
        d = sample(rng, (replicates, m, max_seeds))
        hits = {
            SEQUENTIAL: safe_rejections(d, first, m / ALPHA).any(axis=(-1, -2)),
            FIXED: t_rejections(d[..., :FIXED_SEEDS], FIXED_SEEDS, ALPHA / m).any(axis=(-1, -2)),
            NAIVE_FAMILY: t_rejections(d, first, ALPHA / m).any(axis=(-1, -2)),
            NAIVE_EVERY_LOOK: t_rejections(d[:, 0], first, ALPHA).any(axis=-1),
            NAIVE_TWO_LOOKS: t_rejections(d[:, 0, :10], first, ALPHA)[:, [0, -1]].any(axis=-1),
        }
        for design, errs in hits.items():
            results[design][null] = rate(errs)
    return results


def power_rows(
    replicates: int, seed: int, *, first: int = FIRST_LOOK, max_seeds: int = MAX_SEEDS
) -> list[dict[str, float]]:
    """Per effect: the sequential design's power and mean seeds, and the two fixed designs."""
    rng = np.random.default_rng(seed)
    level, threshold = ALPHA / COMPARISONS, COMPARISONS / ALPHA
    rows = []
    for effect in EFFECTS:
        d = rng.standard_normal((replicates, max_seeds)) + effect
        hits = safe_rejections(d, first, threshold)
        stopped = np.where(hits.any(axis=-1), first + hits.argmax(axis=-1), max_seeds)
        power = float(hits.any(axis=-1).mean())
        row = {
            "effect": effect,
            "power": power,
            "mean_seeds": float(stopped.mean()),
            "fixed_power": paired_t_power(effect, FIXED_SEEDS, alpha=level),
            "matched_n": None,
            "matched_power": None,
        }
        if effect > 0:
            # A power of 1 in R replicates says only that it is above 1 - 1/R.
            matched = seeds_needed(1.0, effect, level, power=min(power, 1.0 - 1.0 / replicates))
            row.update(
                matched_n=matched, matched_power=paired_t_power(effect, matched, alpha=level)
            )
        rows.append(row)
    return rows


def markdown(
    type_one: dict[str, dict[str, tuple[float, float, float]]], power: list[dict], replicates: int
) -> str:
    m, level = COMPARISONS, ALPHA / COMPARISONS
    lines = [
        f"Type-I error, {replicates} null replicates: family-wise error of m = {m} independent "
        f"comparisons at α = {ALPHA} (one comparison where marked), with its Clopper-Pearson "
        "95% interval, by the distribution of the differences.",
        "",
        "| Design | " + " | ".join(f"{null} differences" for null in NULLS) + " |",
        "|---|" + "---|" * len(NULLS),
    ]
    for design, by_null in type_one.items():
        cells = [f"{p:.2%} [{low:.2%}, {high:.2%}]" for p, low, high in by_null.values()]
        lines.append(f"| {design} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Power and seeds, {replicates} replicates per effect: one comparison at α/m = {level}, "
        f"normal differences, effect in sd of the differences; the sequential design looks "
        f"after every seed from {FIRST_LOOK} and stops at its first rejection or at "
        f"{MAX_SEEDS}.",
        "",
        f"| Effect (sd) | Sequential power | Sequential mean seeds | Fixed {FIXED_SEEDS} seeds: "
        "power | Fixed n with the sequential power | Its power |",
        "|---|---|---|---|---|---|",
    ]
    for row in power:
        matched = "—" if row["matched_n"] is None else str(row["matched_n"])
        matched_power = "—" if row["matched_power"] is None else f"{row['matched_power']:.1%}"
        lines.append(
            f"| {row['effect']:g} | {row['power']:.1%} | {row['mean_seeds']:.1f} | "
            f"{row['fixed_power']:.1%} | {matched} | {matched_power} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    type_one = type_one_error(args.replicates, args.seed)
    power = power_rows(args.replicates, args.seed + 1)
    print(markdown(type_one, power, args.replicates))
    print(f"\n{args.replicates} replicates, seed {args.seed}, {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
