"""The fixed design's verdicts: one simultaneous interval per comparison keeps the four-outcome
verdicts' family-wise error at alpha, agrees with every verdict, and does not jump at zero
spread."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from cce_bench import fixed_design
from cce_bench.sequential import look
from cce_bench.stats import fixed_verdicts, sign_flip_min_seeds, sign_flip_pvalue

BENCH = Path(__file__).parent.parent / "benchmarks" / "bench_fixed_design.py"
ALPHA, M, N, MARGIN = 0.05, 4, 20, 0.75
REPLICATES = 2000


def monte_carlo_margin(alpha: float, replicates: int) -> float:
    """Three standard errors of an estimated rate alpha."""
    return 3 * math.sqrt(alpha * (1 - alpha) / replicates)


def wrong(verdict: str, truth: float) -> bool:
    return {
        "better": truth <= 0.0,
        "worse": truth >= 0.0,
        "equivalent": abs(truth) >= MARGIN,
        "inconclusive": False,
    }[verdict]


def family_wise_error(truth: tuple[float, ...], seed: int) -> float:
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((REPLICATES, M, N)) + np.asarray(truth)[:, None]
    errors = 0
    for family in d:
        verdicts = fixed_verdicts(family, alpha=ALPHA, margin=MARGIN)
        errors += any(wrong(v, t) for v, t in zip(verdicts, truth, strict=True))
    return errors / REPLICATES


@pytest.mark.parametrize(
    "truth", [(0.0, 0.0, MARGIN, MARGIN), (0.0, 0.0, 0.0, 0.0)], ids=["half-at-margin", "all-null"]
)
def test_fixed_verdicts_keep_the_family_wise_error_at_alpha(truth):
    # Two separately Holm-adjusted families (differences, TOST) measured 7-9% in the first case.
    assert family_wise_error(truth, seed=0) <= ALPHA + monte_carlo_margin(ALPHA, REPLICATES)


def test_every_verdict_is_the_reading_of_its_printed_interval():
    rng = np.random.default_rng(1)
    level = 1 - ALPHA / M
    for _ in range(200):
        family = rng.normal(rng.uniform(-1.5, 1.5, (M, 1)), 1.0, (M, 8))
        for test in fixed_design.TESTS:
            verdicts = fixed_verdicts(family, alpha=ALPHA, margin=MARGIN, test=test)
            for row, verdict in zip(family, verdicts, strict=True):
                low, high = fixed_design.simultaneous_interval(row, level, test)
                assert verdict == fixed_design.read_interval(low, high, MARGIN)
                if verdict == "equivalent":
                    assert low > -MARGIN and high < MARGIN


def test_bonferroni_pvalues_say_what_the_t_interval_says():
    rng = np.random.default_rng(2)
    level = 1 - ALPHA / M
    for _ in range(300):
        d = rng.normal(rng.uniform(-1.5, 1.5), 1.0, 10)
        low, high = fixed_design.simultaneous_interval(d, level)
        p_diff, p_tost = fixed_design.design_pvalues(d, MARGIN)
        assert (M * p_diff < ALPHA) == (low > 0 or high < 0)
        assert (2 * M * p_tost < ALPHA) == (low > -MARGIN and high < MARGIN)


def test_sign_flip_interval_ends_where_the_sign_flip_test_starts_to_reject():
    d = np.random.default_rng(3).normal(0.3, 1.0, 12)
    level = 0.95
    low, high = fixed_design.sign_flip_interval(d, level)
    step = 1e-6
    assert sign_flip_pvalue(d - (low + step)) > 1 - level
    assert sign_flip_pvalue(d - (low - step)) <= 1 - level
    assert sign_flip_pvalue(d - (high - step)) > 1 - level
    assert sign_flip_pvalue(d - (high + step)) <= 1 - level


def test_sign_flip_needs_eight_seeds_for_a_family_of_four_at_five_percent():
    assert sign_flip_min_seeds(0.05, 4) == 8
    assert sign_flip_min_seeds(0.05, 1) == 6


def test_sign_flip_design_decides_nothing_below_its_minimum_and_a_clear_effect_at_it():
    clear = np.linspace(0.9, 1.1, 8)
    seven, eight = np.tile(clear[:7], (M, 1)), np.tile(clear, (M, 1))
    assert fixed_verdicts(seven, alpha=ALPHA, margin=0.1, test="sign_flip") == ["inconclusive"] * M
    assert fixed_verdicts(eight, alpha=ALPHA, margin=0.1, test="sign_flip") == ["better"] * M


@pytest.mark.parametrize("test", fixed_design.TESTS)
@pytest.mark.parametrize("value", [0.005, -0.005, 0.0])
def test_a_one_in_a_million_change_to_one_seed_flips_no_fixed_verdict(test, value):
    constant = np.full((1, 8), value)
    for change in (1e-6, -1e-6):
        nudged = constant.copy()
        nudged[0, 2] += change
        same = fixed_verdicts(constant, alpha=ALPHA, margin=0.01, test=test)
        assert fixed_verdicts(nudged, alpha=ALPHA, margin=0.01, test=test) == same


@pytest.mark.parametrize("value", [0.005, -0.005, 0.0])
def test_a_one_in_a_million_change_to_one_seed_flips_no_anytime_decision(value):
    constant = np.full(6, value)
    for change in (1e-6, -1e-6):
        nudged = constant.copy()
        nudged[2] += change
        decided = look(constant, alpha=ALPHA, m=M, margin=0.01).decision
        assert look(nudged, alpha=ALPHA, m=M, margin=0.01).decision == decided


def test_constant_differences_take_the_zero_spread_limit_of_the_t_interval():
    assert fixed_verdicts([[0.005] * 5], alpha=ALPHA, margin=0.01) == ["better"]
    assert fixed_verdicts([[0.0] * 5], alpha=ALPHA, margin=0.01) == ["equivalent"]


def test_fixed_verdicts_refuse_a_one_dimensional_family():
    with pytest.raises(fixed_design.FixedDesignInputError, match="m x n"):
        fixed_verdicts([0.1, 0.2, 0.3], alpha=ALPHA, margin=MARGIN)


def test_the_benchmark_sees_two_separately_adjusted_families_exceed_alpha():
    """The simulation can see a violation: the old rule, Holm on the differences and Holm on the
    equivalence tests, each at alpha, errs more often than alpha allows."""
    spec = importlib.util.spec_from_file_location("bench_fixed_design", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    errors = bench.family_wise_error(
        bench.two_family_holm, (0.0, 0.0, MARGIN, MARGIN), bench.SAMPLERS["normal"], REPLICATES, 0
    )
    assert errors.mean() > ALPHA + monte_carlo_margin(ALPHA, REPLICATES)
