"""The sequential-evaluation simulation, small: continuous monitoring keeps the family-wise error
at alpha, naive repeated t-tests do not, and the simulation measures the library's own test."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from cce_bench.stats import anytime_paired_t

BENCH = Path(__file__).parent.parent / "benchmarks" / "bench_sequential.py"
REPLICATES = 2000


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_sequential", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_bench()


@pytest.fixture(scope="module")
def type_one(bench):
    return bench.type_one_error(REPLICATES, seed=0)


def monte_carlo_margin(alpha: float, replicates: int) -> float:
    """Three standard errors of an estimated rate alpha: an estimate above alpha plus this
    would happen by chance with probability ~0.1% if the true rate were alpha."""
    return 3 * math.sqrt(alpha * (1 - alpha) / replicates)


def test_sequential_family_wise_error_stays_at_alpha_under_continuous_monitoring(bench, type_one):
    fwer, _, _ = type_one[bench.SEQUENTIAL]["normal"]
    assert fwer <= bench.ALPHA + monte_carlo_margin(bench.ALPHA, REPLICATES)


def test_naive_repeated_t_tests_exceed_alpha_so_the_simulation_can_see_a_violation(bench, type_one):
    error, _, _ = type_one[bench.NAIVE_EVERY_LOOK]["normal"]
    assert error > bench.ALPHA + monte_carlo_margin(bench.ALPHA, REPLICATES)


def test_simulated_rejections_are_those_of_anytime_paired_t(bench):
    d = np.random.default_rng(2).normal(0.8, 1.0, size=(30, bench.MAX_SEEDS))
    threshold = bench.COMPARISONS / bench.ALPHA
    hits = bench.safe_rejections(d, bench.FIRST_LOOK, threshold)
    expected = [
        [
            anytime_paired_t(path[:n], bench.ALPHA, m=bench.COMPARISONS)["reject"]
            for n in range(bench.FIRST_LOOK, bench.MAX_SEEDS + 1)
        ]
        for path in d
    ]
    np.testing.assert_array_equal(hits, expected)
    assert hits.any() and not hits.all()
