"""The safe paired t-test and its confidence sequence, checked against independent computations:
the Bayes factor integrated numerically over the noncentral t, and a root finder's inverse."""

import math

import numpy as np
import pytest
from scipy import integrate, optimize
from scipy import stats as scipy_stats

from cce_bench.stats import (
    StatsInputError,
    anytime_min_seeds,
    anytime_paired_t,
    safe_t_ceiling,
    safe_t_evalue,
)


def bayes_factor_by_integration(t: float, n: int, g: float = 1.0) -> float:
    """Gönen et al.'s Bayes factor from its definition: the marginal density of t under a
    N(0, g) prior on the standardised effect delta (t | delta is noncentral t with n - 1
    degrees of freedom and noncentrality delta sqrt(n)), over its density under delta = 0."""

    def integrand(delta: float) -> float:
        density = scipy_stats.nct.pdf(t, n - 1, delta * math.sqrt(n))
        return density * scipy_stats.norm.pdf(delta, 0.0, math.sqrt(g))

    marginal, _ = integrate.quad(integrand, -np.inf, np.inf, epsabs=0, epsrel=1e-13, limit=200)
    return marginal / scipy_stats.t.pdf(t, n - 1)


def safe_t_formula(t: float, n: int) -> float:
    """The e-value as written in Pérez-Ortiz et al. (2024), g = 1, in plain floats."""
    nu = n - 1
    return (1 + n) ** -0.5 * ((1 + t * t / nu) / (1 + t * t / (nu * (1 + n)))) ** ((nu + 1) / 2)


@pytest.mark.parametrize(
    ("t", "n"), [(0.0, 2), (0.5, 3), (1.3, 5), (-2.5, 8), (4.0, 12), (6.0, 20), (9.0, 30)]
)
def test_safe_t_evalue_is_the_bayes_factor_of_a_normal_prior_on_the_effect(t, n):
    # quad reports a relative error below 1e-13 on these integrands.
    assert float(safe_t_evalue(t, n)) == pytest.approx(bayes_factor_by_integration(t, n), rel=1e-9)


def test_safe_t_evalue_is_vectorised_and_reaches_its_limit_at_infinite_t():
    t = np.array([[0.0, 2.0, -math.inf], [3.0, math.inf, 1.0]])
    n = np.array([[5], [9]])
    expected = [
        [safe_t_formula(0.0, 5), safe_t_formula(2.0, 5), 6.0**2],
        [safe_t_formula(3.0, 9), 10.0**4, safe_t_formula(1.0, 9)],
    ]
    np.testing.assert_allclose(safe_t_evalue(t, n), expected, rtol=1e-12)


DIFFS = np.random.default_rng(11).normal(0.012, 0.01, size=20)


@pytest.mark.parametrize("n", [6, 8, 12, 20])
@pytest.mark.parametrize("m", [1, 4])
def test_confidence_sequence_ends_are_where_the_evalue_reaches_m_over_alpha(n, m):
    d = DIFFS[:n]
    result = anytime_paired_t(d, alpha=0.05, m=m)
    se = d.std(ddof=1) / math.sqrt(n)

    def excess(t: float) -> float:
        return math.log(safe_t_formula(t, n)) - math.log(m / 0.05)

    critical = optimize.brentq(excess, 0.0, 1e3, xtol=1e-14, rtol=1e-15)
    assert result["cs_high"] == pytest.approx(d.mean() + critical * se, rel=1e-9)
    assert result["cs_low"] == pytest.approx(d.mean() - critical * se, rel=1e-9)
    for mu0 in (result["cs_low"], result["cs_high"]):
        t = (d.mean() - mu0) / se
        assert safe_t_formula(t, n) == pytest.approx(m / 0.05, rel=1e-9)


def test_evalue_is_the_safe_t_formula_at_the_one_sample_t_statistic():
    d = DIFFS[:10]
    t = scipy_stats.ttest_1samp(d, 0.0).statistic
    result = anytime_paired_t(d, alpha=0.05, m=4)
    assert result["e_value"] == pytest.approx(safe_t_formula(t, 10), rel=1e-12)


def test_reject_is_the_same_as_zero_outside_the_confidence_sequence():
    rng = np.random.default_rng(3)
    outcomes = set()
    for _ in range(400):
        n = int(rng.integers(2, 21))
        d = rng.normal(rng.choice([0.0, 0.5, 1.5]), 1.0, size=n)
        result = anytime_paired_t(d, alpha=0.05, m=4)
        outside = not (result["cs_low"] < 0.0 < result["cs_high"])
        assert result["reject"] == outside == (result["e_value"] >= 80)
        outcomes.add(result["reject"])
    assert outcomes == {True, False}  # both branches were exercised


def test_larger_families_need_more_evidence():
    one, four = anytime_paired_t(DIFFS[:10], 0.05), anytime_paired_t(DIFFS[:10], 0.05, m=4)
    assert one["e_value"] == four["e_value"]
    assert four["cs_low"] < one["cs_low"] < one["cs_high"] < four["cs_high"]


@pytest.mark.parametrize("diffs", [[], [0.03]], ids=["none", "one"])
def test_fewer_than_two_seeds_carry_no_evidence(diffs):
    result = anytime_paired_t(diffs, alpha=0.05, m=4)
    assert result == {"e_value": 1.0, "reject": False, "cs_low": -math.inf, "cs_high": math.inf}


def test_nothing_can_be_rejected_before_the_evalue_bound_reaches_m_over_alpha():
    # (1 + n)^((n - 1)/2) is 36 at n = 5 and 129.6 at n = 6, against m / alpha = 80.
    strong = [1.0, 1.01, 0.99, 1.0, 1.02]  # t = 197 at n = 5
    result = anytime_paired_t(strong, alpha=0.05, m=4)
    assert result["e_value"] < 36.0
    assert (result["reject"], result["cs_low"], result["cs_high"]) == (False, -math.inf, math.inf)


def test_constant_nonzero_differences_reach_the_evalue_bound_and_a_point_interval():
    five, six = anytime_paired_t([0.01] * 5, 0.05, m=4), anytime_paired_t([0.01] * 6, 0.05, m=4)
    assert five["e_value"] == pytest.approx(6.0**2, rel=1e-12) and not five["reject"]
    assert six["e_value"] == pytest.approx(7.0**2.5, rel=1e-12) and six["reject"]
    assert six["cs_low"] == six["cs_high"] == 0.01


def test_identical_arms_give_no_evidence_and_equivalence_once_n_allows():
    result = anytime_paired_t([0.0] * 8, 0.05, m=4)
    assert result["e_value"] == pytest.approx(9.0**-0.5, rel=1e-12)
    assert (result["reject"], result["cs_low"], result["cs_high"]) == (False, 0.0, 0.0)


def test_anytime_paired_t_rejects_impossible_inputs():
    with pytest.raises(StatsInputError, match="alpha"):
        anytime_paired_t([0.1, 0.2], alpha=1.5)
    with pytest.raises(StatsInputError, match="finite"):
        anytime_paired_t([0.1, math.nan], alpha=0.05)


@pytest.mark.parametrize(("alpha", "m", "expected"), [(0.05, 1, 5), (0.05, 4, 6), (0.01, 8, 8)])
def test_below_the_minimum_seeds_no_difference_can_be_decided_and_at_it_one_can(alpha, m, expected):
    needed = anytime_min_seeds(alpha, m)
    assert needed == expected
    rng = np.random.default_rng(0)
    # Differences as consistent as real ones get: 10 pp, spread 0.1 pp.
    huge = 0.10 + 0.001 * rng.standard_normal(needed)
    short = anytime_paired_t(huge[: needed - 1], alpha, m)
    assert not short["reject"] and short["cs_low"] == -math.inf
    assert safe_t_ceiling(needed - 1) < m / alpha <= safe_t_ceiling(needed)
    assert anytime_paired_t(huge, alpha, m)["reject"]
