"""The "with test-set sampling" interval, simulated: coverage of the difference on new seeds and
a new test set, before (SE_test from the variance of the seed-mean across resamples) and after
(:func:`cce_bench.report._test_sampling.between_seed_se`, the between-seed covariance).

Model of one comparison: N test images drawn from a population, K seeds. Seed k's difference on
image i is ``mu + b_k + a_i + e_ki``: ``b_k`` the seed's training noise (variance V_S), ``a_i``
the image's own effect shared by every seed (the test set's sampling, V_T = var(a)/N on the
mean), ``e_ki`` the seed x image interaction (V_I = var(e)/N on one seed's mean). The target is
``mu``, the difference on new seeds and a new test set; the interval is mean ± t_{K-1} SE with
SE^2 = s^2/K + SE_test^2, each SE_test from B image-bootstrap resamples of the one test set
(the same resample for every seed, as the report draws them). The true variance of the mean is
V_T + (V_S + V_I)/K; the old SE_test^2 held V_I/K a second time.

Usage: ``python benchmarks/bench_test_sampling.py [--replicates 2000] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import stats as scipy_stats

from cce_bench.report._test_sampling import between_seed_se

LEVEL, SEEDS, IMAGES, RESAMPLES = 0.95, 5, 200, 200

#: (V_T, V_I, V_S): variance shares on the mean difference, as described above.
SCENARIOS: tuple[tuple[float, float, float], ...] = (
    (1.0, 1.0, 1.0),
    (1.0, 4.0, 0.25),
    (0.25, 4.0, 1.0),
    (1.0, 0.25, 1.0),
)


def old_se(diffs: np.ndarray) -> float:
    """The previous SE_test: sd over resamples of the mean over seeds."""
    return float(diffs.mean(axis=0).std(ddof=1))


def coverage(
    scenario: tuple[float, float, float], replicates: int, seed: int
) -> dict[str, tuple[float, float]]:
    """Per rule ("before", "after"): (coverage of mu, mean interval width)."""
    v_t, v_i, v_s = scenario
    rng = np.random.default_rng(seed)
    quantile = float(scipy_stats.t.ppf(0.5 + LEVEL / 2, SEEDS - 1))
    hits = {"before": 0, "after": 0}
    widths = {"before": 0.0, "after": 0.0}
    for _ in range(replicates):
        a = rng.normal(0.0, math.sqrt(v_t * IMAGES), IMAGES)
        e = rng.normal(0.0, math.sqrt(v_i * IMAGES), (SEEDS, IMAGES))
        b = rng.normal(0.0, math.sqrt(v_s), SEEDS)
        per_image = b[:, None] + a[None, :] + e  # mu = 0
        d = per_image.mean(axis=1)
        weights = rng.multinomial(IMAGES, np.full(IMAGES, 1.0 / IMAGES), size=RESAMPLES)
        resampled = per_image @ weights.T / IMAGES  # [K, B]
        seed_var = float(d.var(ddof=1)) / SEEDS
        for rule, se_test in (("before", old_se(resampled)), ("after", between_seed_se(resampled))):
            half = quantile * math.sqrt(seed_var + se_test**2)
            hits[rule] += abs(float(d.mean())) <= half
            widths[rule] += 2 * half / replicates
    return {rule: (hits[rule] / replicates, widths[rule]) for rule in hits}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    margin = 3 * math.sqrt(LEVEL * (1 - LEVEL) / args.replicates)
    print(
        f"Coverage of a nominal {LEVEL:.0%} interval (K = {SEEDS} seeds, {IMAGES} test images, "
        f"{RESAMPLES} resamples, {args.replicates} replicates; ±{margin:.1%} is 3 Monte Carlo "
        "standard errors), and the old interval's width over the new one's.\n"
    )
    print("| V_T | V_I | V_S | True sd of the mean | Before: coverage | After: coverage "
          "| Width before / after |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for k, scenario in enumerate(SCENARIOS):
        found = coverage(scenario, args.replicates, args.seed + k)
        v_t, v_i, v_s = scenario
        true_sd = math.sqrt(v_t + (v_s + v_i) / SEEDS)
        ratio = found["before"][1] / found["after"][1]
        print(
            f"| {v_t:g} | {v_i:g} | {v_s:g} | {true_sd:.3f} | {found['before'][0]:.1%} | "
            f"{found['after'][0]:.1%} | {ratio:.2f} |"
        )
    print(f"\nseed {args.seed}, {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
