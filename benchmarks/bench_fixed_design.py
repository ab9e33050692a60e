"""The fixed design's four-outcome verdicts, simulated: family-wise error of the old rule (the
difference tests and the TOST tests Holm-adjusted as two separate families, each at alpha) and
of :func:`cce_bench.stats.fixed_verdicts` (one simultaneous interval per comparison).

A family of m = 4 comparisons, n = 20 paired seeds each, differences with sd 1 and margin 0.75
(every test is scale-invariant, so sd 1 loses nothing). Two truths: the review's 0, 0, +margin,
+margin, and all-null. A verdict is wrong when "better"/"worse" names a sign the true difference
does not have (a true 0 included) or "equivalent" is said of a difference of at least the
margin; the family errs when any of its verdicts is wrong. Rates with Clopper-Pearson 95%
intervals, for normal, heavy-tailed (t, 3 df, scaled to sd 1) and skewed (centred exponential)
differences.

Usage: ``python benchmarks/bench_fixed_design.py [--replicates 4000] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
from scipy import stats as scipy_stats

from cce_bench import stats

ALPHA, COMPARISONS, SEEDS, MARGIN = 0.05, 4, 20, 0.75
TRUTHS: dict[str, tuple[float, ...]] = {
    "0, 0, +margin, +margin": (0.0, 0.0, MARGIN, MARGIN),
    "all null": (0.0, 0.0, 0.0, 0.0),
}

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
#: Mean-0, sd-1 differences.
SAMPLERS: dict[str, Sampler] = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "t, 3 df": lambda rng, shape: rng.standard_t(3, shape) / math.sqrt(3.0),
    "centred exponential": lambda rng, shape: rng.exponential(1.0, shape) - 1.0,
}


def two_family_holm(diffs: np.ndarray, *, alpha: float, margin: float) -> list[str]:
    """The old rule: Holm over the m difference p-values, Holm over the m TOST p-values."""
    p_diff = [float(scipy_stats.ttest_1samp(row, 0.0).pvalue) for row in diffs]  # no ties here
    p_tost = [stats.tost_paired(np.zeros_like(row), row, margin)["p_value"] for row in diffs]
    verdicts = []
    for row, p, q in zip(diffs, holm(p_diff), holm(p_tost), strict=True):
        text = stats.verdict(float(row.mean()), p, q, alpha=alpha, better="b", worse="w")
        verdicts.append({"b better": "better", "w better": "worse"}.get(text, text))
        verdicts[-1] = "equivalent" if verdicts[-1].startswith("equivalent") else verdicts[-1]
    return verdicts


def holm(pvalues: list[float]) -> np.ndarray:
    """Holm's adjusted p-values, as ``stats.holm`` (statsmodels) gives them, without its
    per-call overhead (85 ms a call measured here, 175 ms a replicate)."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p)
    steps = np.minimum(1.0, (p.size - np.arange(p.size)) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(steps)
    return adjusted


def wrong(verdict: str, truth: float, margin: float) -> bool:
    """Whether a verdict is false for this true difference."""
    if verdict == "better":
        return truth <= 0.0
    if verdict == "worse":
        return truth >= 0.0
    if verdict == "equivalent":
        return abs(truth) >= margin
    return False


def family_wise_error(
    rule: Callable[..., list[str]],
    truth: tuple[float, ...],
    sampler: Sampler,
    replicates: int,
    seed: int,
    **options: str,
) -> np.ndarray:
    """Per replicate, whether any verdict of the family is wrong."""
    rng = np.random.default_rng(seed)
    d = sampler(rng, (replicates, len(truth), SEEDS)) + np.asarray(truth)[:, None]
    errs = np.zeros(replicates, dtype=bool)
    for k in range(replicates):
        verdicts = rule(d[k], alpha=ALPHA, margin=MARGIN, **options)
        errs[k] = any(wrong(v, t, MARGIN) for v, t in zip(verdicts, truth, strict=True))
    return errs


def rate(hits: np.ndarray) -> tuple[float, float, float]:
    count = int(hits.sum())
    interval = scipy_stats.binomtest(count, hits.size).proportion_ci(method="exact")
    return count / hits.size, float(interval.low), float(interval.high)


RULES: dict[str, tuple[Callable[..., list[str]], dict[str, str], int]] = {
    "before: Holm on differences, Holm on TOST, each at α": (two_family_holm, {}, 1),
    "after: fixed_verdicts, t interval": (stats.fixed_verdicts, {"test": "t"}, 1),
    "after: fixed_verdicts, sign-flip interval": (
        stats.fixed_verdicts,
        {"test": "sign_flip"},
        20,
    ),  # ~50 ms a comparison (bisection over sign-flip p-values): a twentieth of the replicates
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(
        f"Family-wise error of the verdicts, m = {COMPARISONS}, n = {SEEDS}, α = {ALPHA}, "
        f"margin {MARGIN} sd; Clopper-Pearson 95% intervals.\n"
    )
    print("| Truth | Rule | " + " | ".join(SAMPLERS) + " |")
    print("|---|---|" + "---|" * len(SAMPLERS))
    for truth_name, truth in TRUTHS.items():
        for rule_name, (rule, options, divisor) in RULES.items():
            reps = max(args.replicates // divisor, 1)
            cells = []
            for sampler in SAMPLERS.values():
                errs = family_wise_error(rule, truth, sampler, reps, args.seed, **options)
                p, low, high = rate(errs)
                cells.append(f"{p:.2%} [{low:.2%}, {high:.2%}] ({reps})")
            print(f"| {truth_name} | {rule_name} | " + " | ".join(cells) + " |")
    print(f"\nseed {args.seed}, {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
