"""Specification of cce_bench.stats, checked against published and hand-computed values."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from scipy.stats import permutation_test, rankdata
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from cce_bench.stats import (
    StatsInputError,
    benjamini_hochberg,
    corrected_resampled_t,
    holm,
    mcnemar,
    paired_comparison,
    paired_t_power,
    seeds_for_power,
    seeds_needed,
    sign_flip_pvalue,
    stouffer_signed,
    t_interval,
    tost_paired,
    verdict,
    wilcoxon_pvalue,
)

# Student's sleep data (Cushny & Peebles 1905, in R as `sleep`): extra hours of sleep of ten
# patients under two drugs. R's `t.test(extra ~ group, data = sleep, paired = TRUE)` publishes
# t = -4.0621, df = 9, p-value = 0.002833, 95% CI -2.4598858 -0.7001142, mean difference -1.58
# (signs flip here because d = b - a = drug 2 - drug 1).
SLEEP_DRUG_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_DRUG_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


@pytest.fixture(scope="module")
def sleep_comparison() -> dict:
    return paired_comparison(SLEEP_DRUG_1, SLEEP_DRUG_2)


def exact_wilcoxon_by_enumeration(d: np.ndarray) -> float:
    """Two-sided p over all 2^n sign flips of the non-zero differences' (mid)ranks."""
    d = d[d != 0]
    ranks = rankdata(np.abs(d))
    centre = ranks.sum() / 2
    observed = abs(ranks[d > 0].sum() - centre)
    sums = [
        sum(rank for rank, positive in zip(ranks, signs, strict=True) if positive)
        for signs in itertools.product([False, True], repeat=d.size)
    ]
    return float(np.mean([abs(s - centre) >= observed - 1e-9 for s in sums]))


def sign_flip_by_enumeration(d: np.ndarray) -> float:
    """Two-sided p over all 2^n sign patterns, one Python sum per pattern (zeros included)."""
    observed = abs(math.fsum(d))
    sums = [
        abs(math.fsum(s * x for s, x in zip(signs, d, strict=True)))
        for signs in itertools.product([1.0, -1.0], repeat=len(d))
    ]
    return sum(s >= observed - 1e-12 for s in sums) / 2 ** len(d)


def test_paired_t_matches_the_published_sleep_data_result(sleep_comparison):
    assert sleep_comparison["mean_diff"] == pytest.approx(1.58)
    assert sleep_comparison["t_pvalue"] == pytest.approx(0.002833, abs=5e-7)
    assert sleep_comparison["t_ci_low"] == pytest.approx(0.7001142, abs=5e-8)
    assert sleep_comparison["t_ci_high"] == pytest.approx(2.4598858, abs=5e-8)


def test_t_interval_is_mean_plus_minus_t_quantile_times_standard_error(sleep_comparison):
    half_width = 2.262157 * sleep_comparison["sd_diff"] / math.sqrt(10)  # t(0.975, 9), tables
    assert sleep_comparison["t_ci_high"] - 1.58 == pytest.approx(half_width, rel=1e-6)


def test_d_z_is_mean_difference_over_its_sample_sd(sleep_comparison):
    d = np.subtract(SLEEP_DRUG_2, SLEEP_DRUG_1)
    sd = math.sqrt(sum((x - 1.58) ** 2 for x in d) / 9)
    assert sleep_comparison["sd_diff"] == pytest.approx(sd)
    assert sleep_comparison["d_z"] == pytest.approx(1.58 / sd)


def test_wilcoxon_on_sleep_data_drops_the_zero_and_is_exact(sleep_comparison):
    # Nine non-zero differences, all positive: only 2 of 2^9 sign patterns are as extreme.
    assert sleep_comparison["n_zero_diffs"] == 1
    assert sleep_comparison["wilcoxon_pvalue"] == pytest.approx(2 / 2**9)


@pytest.mark.parametrize(
    "d",
    [
        [0.01, 0.02, 0.03, 0.04, 0.05, -0.06],
        [0.0, 0.3, 0.1, 0.1, -0.2, 0.4, 0.5],
        [0.02, 0.02, 0.02, 0.01, -0.02],
    ],
    ids=["distinct", "zero-and-tie", "many-ties"],
)
def test_wilcoxon_pvalue_equals_exact_enumeration_of_sign_flips(d):
    d = np.array(d)
    assert wilcoxon_pvalue(d) == pytest.approx(exact_wilcoxon_by_enumeration(d))


SIGN_FLIP_CASES = [
    [0.01, 0.02, 0.03, 0.04, 0.05, -0.06],
    [0.0, 0.3, 0.1, 0.1, -0.2, 0.4, 0.5],
    [0.02, 0.02, 0.02, 0.01, -0.02],
    [0.0134, -0.0021, 0.0087, 0.0005, -0.0113, 0.0242, 0.0061, -0.0009, 0.0150],
    [1.0, -1.0, 2.0, -2.0],
]


@pytest.mark.parametrize("d", SIGN_FLIP_CASES, ids=["distinct", "zero", "ties", "nine", "null"])
def test_sign_flip_pvalue_equals_brute_force_enumeration(d):
    assert sign_flip_pvalue(d) == pytest.approx(sign_flip_by_enumeration(np.array(d)), rel=1e-12)


@pytest.mark.parametrize("d", SIGN_FLIP_CASES, ids=["distinct", "zero", "ties", "nine", "null"])
def test_sign_flip_pvalue_equals_scipy_exact_permutation_test(d):
    reference = permutation_test(
        (np.array(d),),
        lambda x, axis: np.abs(np.sum(x, axis=axis)),
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="greater",
    ).pvalue
    assert sign_flip_pvalue(d) == pytest.approx(reference, rel=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 10, 20])
def test_constant_nonzero_differences_of_one_sign_give_two_over_two_to_the_n(n):
    assert sign_flip_pvalue([0.013] * n) == 2 / 2**n
    assert sign_flip_pvalue([-0.013] * n) == 2 / 2**n


def test_sign_flip_zeros_are_ties_that_leave_the_pvalue_unchanged():
    assert sign_flip_pvalue([0.01, 0.01, 0.01, 0.0, 0.0]) == sign_flip_pvalue([0.01] * 3)
    assert sign_flip_pvalue([0.0, 0.0]) == 1.0


def sign_flip_of_integers_by_convolution(d: np.ndarray) -> float:
    """Exact two-sided sign-flip p of integer differences: the distribution of sum(s * d) is
    the convolution of the two-point distributions {-d_i, +d_i}, counted on an integer grid."""
    offset = int(np.abs(d).sum())
    counts = np.zeros(2 * offset + 1)
    counts[offset] = 1.0
    for x in np.abs(d).astype(int):
        counts = np.roll(counts, x) + np.roll(counts, -x)  # no wrap: |sum| <= offset
    sums = np.arange(-offset, offset + 1)
    return float(counts[np.abs(sums) >= abs(d.sum())].sum() / 2.0**d.size)


def test_sign_flip_beyond_the_exact_limit_is_within_monte_carlo_error_of_the_exact_p():
    d = np.random.default_rng(1).integers(-20, 25, size=60).astype(float)
    exact = sign_flip_of_integers_by_convolution(d)
    # 2^20 resamples: standard error <= 0.0005; 5 of them leave no room for chance.
    assert 0.01 < exact < 0.5
    assert sign_flip_pvalue(d) == pytest.approx(exact, abs=5 * 0.0005)


def test_all_zero_differences_give_p_one_and_no_effect():
    result = paired_comparison([0.7, 0.8, 0.9], [0.7, 0.8, 0.9])
    assert (result["t_pvalue"], result["wilcoxon_pvalue"], result["d_z"]) == (1.0, 1.0, 0.0)
    assert (result["t_ci_low"], result["t_ci_high"]) == (0.0, 0.0)
    assert result["n_zero_diffs"] == 3
    assert result["seeds_for_80_power"] is None


def test_constant_nonzero_differences_get_the_exact_sign_flip_p_not_nan():
    # 0.71 - 0.70 and 0.81 - 0.80 differ in floating point; rounding makes them one value.
    result = paired_comparison([0.70, 0.80, 0.90], [0.71, 0.81, 0.91])
    assert result["sd_diff"] == 0.0
    assert result["t_pvalue"] == result["sign_flip_p"] == 2 / 2**3
    assert result["d_z"] == math.inf
    assert result["t_ci_low"] == result["t_ci_high"] == pytest.approx(0.01)
    assert result["wilcoxon_pvalue"] == pytest.approx(2 / 2**3)
    assert result["seeds_for_80_power"] is None


def test_constant_nonzero_differences_stay_in_the_holm_family():
    constant = paired_comparison([0.70, 0.80, 0.90, 0.60, 0.50], [0.71, 0.81, 0.91, 0.61, 0.51])
    adjusted = holm([constant["t_pvalue"], 0.01])
    # Holm over two: 0.01 * 2 = 0.02, then max(0.02, 2/32 * 1) = 0.0625.
    np.testing.assert_allclose(adjusted, [2 / 2**5, 0.02], rtol=1e-15)


def test_one_seed_gives_nan_spread_a_p_of_one_and_is_underpowered():
    result = paired_comparison([0.7], [0.75])
    assert result["mean_diff"] == pytest.approx(0.05)
    assert all(math.isnan(result[key]) for key in ("sd_diff", "t_ci_low", "t_ci_high", "d_z"))
    assert result["t_pvalue"] == result["sign_flip_p"] == 1.0  # both signs are as extreme
    assert result["underpowered"] is True


def test_fewer_than_five_seeds_are_marked_underpowered():
    four = paired_comparison([1, 2, 3, 4], [2, 2, 4, 5])
    five = paired_comparison([1, 2, 3, 4, 5], [2, 2, 4, 5, 5])
    assert (four["underpowered"], five["underpowered"]) == (True, False)


def test_unequal_numbers_of_seeds_are_rejected():
    with pytest.raises(StatsInputError, match="equal length"):
        paired_comparison([0.7, 0.8], [0.7])


def test_nan_values_are_rejected():
    with pytest.raises(StatsInputError, match="NaN"):
        paired_comparison([0.7, math.nan], [0.7, 0.8])


@pytest.mark.parametrize(("d_z", "seeds"), [(0.2, 199), (0.5, 34), (0.8, 15)])
def test_seeds_for_power_match_published_sample_sizes(d_z, seeds):
    # G*Power 3 (Faul et al. 2007), t test of matched pairs, two-tailed, alpha 0.05, power 0.8.
    assert seeds_for_power(d_z) == seeds
    assert seeds_for_power(-d_z) == seeds


def test_seeds_for_power_is_the_smallest_n_reaching_eighty_percent():
    # statsmodels' solver answers 2 here; the power at 2 seeds is only 0.73.
    assert paired_t_power(10.0, 2) < 0.8 <= paired_t_power(10.0, 3)
    assert seeds_for_power(10.0) == 3


def test_seeds_for_power_is_none_without_a_finite_nonzero_effect():
    assert seeds_for_power(0.0) is None
    assert seeds_for_power(math.inf) is None
    assert seeds_for_power(math.nan) is None


# Paired metric values of five seeds: near-equivalent, clearly better, and spread wide.
TOST_CASES = [
    ([0.700, 0.712, 0.695, 0.705, 0.690], [0.703, 0.709, 0.701, 0.707, 0.688]),
    ([0.700, 0.712, 0.695, 0.705, 0.690], [0.731, 0.745, 0.722, 0.740, 0.716]),
    ([0.70, 0.75, 0.62, 0.81, 0.66], [0.74, 0.69, 0.70, 0.77, 0.71]),
]


@pytest.mark.parametrize(("a", "b"), TOST_CASES, ids=["equivalent", "better", "wide"])
@pytest.mark.parametrize("margin", [0.005, 0.01, 0.05])
def test_tost_paired_matches_statsmodels_ttost_paired(a, b, margin):
    p_value, (_, p_lower, _), (_, p_upper, _) = ttost_paired(
        np.array(b), np.array(a), -margin, margin
    )
    result = tost_paired(a, b, margin)
    np.testing.assert_allclose(
        [result["p_value"], result["p_lower"], result["p_upper"]],
        [p_value, p_lower, p_upper],
        rtol=1e-9,
    )


@pytest.mark.parametrize(("a", "b"), TOST_CASES, ids=["equivalent", "better", "wide"])
def test_tost_rejects_exactly_when_the_ninety_percent_t_interval_lies_inside_the_margin(a, b):
    d = np.subtract(b, a)
    interval = scipy_stats.ttest_1samp(d, 0.0).confidence_interval(confidence_level=0.90)
    for margin in np.linspace(0.001, 0.06, 60):
        inside = -margin < interval.low and interval.high < margin
        assert (tost_paired(a, b, margin)["p_value"] < 0.05) == inside


def test_tost_of_constant_differences_uses_the_one_sided_sign_flip_p():
    inside = tost_paired([0.70] * 4, [0.705] * 4, margin=0.01)
    outside = tost_paired([0.70] * 4, [0.72] * 4, margin=0.01)
    assert (inside["p_lower"], inside["p_upper"], inside["p_value"]) == (1 / 16, 1 / 16, 1 / 16)
    assert (outside["p_lower"], outside["p_upper"], outside["p_value"]) == (1 / 16, 1.0, 1.0)


def test_tost_rejects_a_margin_that_is_not_positive():
    with pytest.raises(StatsInputError, match="margin"):
        tost_paired([0.7, 0.8], [0.7, 0.9], margin=0.0)


def test_benjamini_hochberg_matches_statsmodels_fdr_bh():
    p = np.random.default_rng(7).uniform(0, 0.2, size=12) ** 2
    np.testing.assert_allclose(
        benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], rtol=1e-15
    )


def test_benjamini_hochberg_matches_hand_computed_step_up():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4/1, 4/2, 4/3, 4/4 = 0.02, 0.02, 0.04, 0.04, made
    # monotone from the top (already), reported in the input order.
    np.testing.assert_allclose(
        benjamini_hochberg([0.01, 0.04, 0.03, 0.005]), [0.02, 0.04, 0.04, 0.02], rtol=1e-15
    )


def test_benjamini_hochberg_keeps_nan_and_leaves_it_out_of_the_family():
    adjusted = benjamini_hochberg([0.01, math.nan, 0.04, 0.03])
    expected = multipletests([0.01, 0.04, 0.03], method="fdr_bh")[1]
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2, 3]], expected, rtol=1e-15)


def test_benjamini_hochberg_rejects_values_outside_the_unit_interval():
    with pytest.raises(StatsInputError, match=r"\[0, 1\]"):
        benjamini_hochberg([-0.1, 0.5])


def power_by_noncentral_t(effect: float, n: int, alpha: float) -> float:
    """Two-sided paired t-test power from scipy's noncentral t, both rejection regions."""
    critical = scipy_stats.t.ppf(1 - alpha / 2, n - 1)
    noncentrality = effect * math.sqrt(n)
    return scipy_stats.nct.sf(critical, n - 1, noncentrality) + scipy_stats.nct.cdf(
        -critical, n - 1, noncentrality
    )


@pytest.mark.parametrize(
    ("sd_diff", "margin", "alpha", "power"),
    [
        (0.02, 0.01, 0.05, 0.8),
        (0.02, 0.01, 0.0125, 0.8),
        (0.008, 0.01, 0.0125, 0.9),
        (0.03, 0.01, 0.05, 0.8),
        (0.001, 0.01, 0.0125, 0.8),
    ],
)
def test_seeds_needed_is_the_smallest_n_whose_noncentral_t_power_reaches_the_target(
    sd_diff, margin, alpha, power
):
    n = seeds_needed(sd_diff, margin, alpha, power)
    assert power_by_noncentral_t(margin / sd_diff, n, alpha) >= power
    assert n == 2 or power_by_noncentral_t(margin / sd_diff, n - 1, alpha) < power


@pytest.mark.parametrize(("sd_diff", "alpha"), [(0.02, 0.05), (0.02, 0.0125), (0.015, 0.01)])
def test_seeds_needed_agrees_with_statsmodels_ttestpower(sd_diff, alpha):
    n = seeds_needed(sd_diff, 0.01, alpha)
    solved = TTestPower().solve_power(effect_size=0.01 / sd_diff, alpha=alpha, power=0.8)
    assert n == math.ceil(solved)
    assert TTestPower().power(0.01 / sd_diff, n, alpha) == pytest.approx(
        power_by_noncentral_t(0.01 / sd_diff, n, alpha), rel=1e-9
    )


def test_seeds_needed_without_spread_is_where_the_sign_flip_p_reaches_alpha():
    # 2/2^5 = 0.0625 > 0.05 >= 2/2^6; 2/2^7 = 0.0156 > 0.0125 >= 2/2^8.
    assert seeds_needed(0.0, 0.01, 0.05) == 6
    assert seeds_needed(0.0, 0.01, 0.0125) == 8


@pytest.mark.parametrize(
    ("sd_diff", "margin", "alpha", "power", "match"),
    [
        (math.nan, 0.01, 0.05, 0.8, "sd_diff"),
        (-0.01, 0.01, 0.05, 0.8, "sd_diff"),
        (0.01, 0.0, 0.05, 0.8, "margin"),
        (0.01, 0.01, 0.9, 0.8, "alpha"),
    ],
)
def test_seeds_needed_rejects_impossible_inputs(sd_diff, margin, alpha, power, match):
    with pytest.raises(StatsInputError, match=match):
        seeds_needed(sd_diff, margin, alpha, power)


def test_holm_matches_hand_computed_step_down():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04, then made
    # monotone (0.04 -> 0.06), reported in the input order.
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_holm_keeps_nan_and_leaves_it_out_of_the_family():
    adjusted = holm([0.01, math.nan, 0.04])
    np.testing.assert_allclose(adjusted, [0.02, math.nan, 0.04])


def test_holm_caps_adjusted_values_at_one():
    np.testing.assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])


def test_holm_rejects_values_outside_the_unit_interval():
    with pytest.raises(StatsInputError, match=r"\[0, 1\]"):
        holm([0.5, 1.5])


def test_mcnemar_exact_equals_two_sided_binomial_test_by_hand():
    y_true = np.zeros(10, dtype=int)
    pred_a = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])  # right on images 0-2
    pred_b = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])  # right on 0-1 and 3-9
    # Discordant: 1 image right only under a, 7 right only under b; P(X <= 1 | 8, 1/2) * 2.
    assert mcnemar(pred_a, pred_b, y_true) == pytest.approx(2 * (1 + 8) / 2**8)


def test_mcnemar_without_discordant_images_gives_one():
    y_true = np.array([0, 1, 2, 1])
    pred = np.array([0, 1, 0, 0])
    assert mcnemar(pred, pred.copy(), y_true) == 1.0


def test_mcnemar_rejects_predictions_of_different_images():
    with pytest.raises(StatsInputError, match="same images"):
        mcnemar([0, 1], [0, 1, 1], [0, 1])


def test_signed_stouffer_matches_its_closed_form():
    z = scipy_stats.norm.isf(np.array([0.1, 0.2]) / 2)  # two seeds favouring the other arm
    expected = 2 * scipy_stats.norm.sf(z.sum() / math.sqrt(2))
    assert stouffer_signed([0.1, 0.2], [1, 1]) == pytest.approx(expected)


def test_signed_stouffer_lets_seeds_that_disagree_cancel():
    # The example: per-seed effects of both signs, each seed alone "significant".
    assert stouffer_signed([0.01, 0.01], [1, -1]) == pytest.approx(1.0)
    assert stouffer_signed([0.01, 0.01], [1, 1]) < 0.001


def test_signed_stouffer_ignores_nan_and_is_nan_when_empty():
    assert stouffer_signed([0.1, math.nan, 0.2], [1, -1, 1]) == pytest.approx(
        stouffer_signed([0.1, 0.2], [1, 1])
    )
    assert math.isnan(stouffer_signed([math.nan], [1]))


def test_signed_stouffer_counts_a_seed_without_direction_as_zero():
    assert stouffer_signed([1.0, 0.02], [0, 1]) == pytest.approx(
        2 * scipy_stats.norm.sf(scipy_stats.norm.isf(0.01) / math.sqrt(2))
    )


def test_t_interval_matches_scipy_at_any_level():
    d = np.array([0.01, 0.03, 0.02, 0.05, 0.00])
    expected = scipy_stats.ttest_1samp(d, 0.0).confidence_interval(confidence_level=0.9875)
    assert t_interval(d, 0.9875) == pytest.approx((expected.low, expected.high))


def test_t_interval_of_constant_differences_is_the_point_and_of_one_seed_nan():
    assert t_interval([0.02, 0.02, 0.02], 0.95) == (0.02, 0.02)
    assert all(math.isnan(x) for x in t_interval([0.02], 0.95))


def test_corrected_resampled_t_matches_the_nadeau_bengio_formula():
    a, b = [0.70, 0.70, 0.70], [0.71, 0.73, 0.75]  # d = 0.01, 0.03, 0.05: mean 0.03, var 4e-4
    t = 0.03 / math.sqrt((1 / 3 + 0.2 / 0.8) * 4e-4)
    # Student t with 2 df has the closed-form two-sided tail 1 - |t| / sqrt(2 + t^2).
    assert corrected_resampled_t(a, b, test_fraction=0.2) == pytest.approx(
        1 - t / math.sqrt(2 + t**2)
    )


def test_corrected_resampled_t_is_more_cautious_than_the_plain_paired_t(sleep_comparison):
    corrected = corrected_resampled_t(SLEEP_DRUG_1, SLEEP_DRUG_2, test_fraction=0.2)
    assert corrected > sleep_comparison["t_pvalue"]


def test_corrected_resampled_t_of_constant_differences_is_the_sign_flip_p():
    assert corrected_resampled_t([0.70] * 4, [0.72] * 4, test_fraction=0.2) == 2 / 2**4


def test_corrected_resampled_t_rejects_a_fraction_outside_zero_one():
    with pytest.raises(StatsInputError, match="test_fraction"):
        corrected_resampled_t([0.1, 0.2], [0.2, 0.3], test_fraction=1.0)


def test_verdict_names_the_arm_a_significant_difference_favours():
    assert verdict(0.02, 0.01) == "CCE better"
    assert verdict(-0.02, 0.01) == "CE better"


def test_verdict_flips_for_lower_is_better_metrics():
    assert verdict(-0.02, 0.01, higher_is_better=False) == "CCE better"


def test_verdict_is_equivalent_when_only_the_equivalence_test_rejects():
    assert verdict(0.001, 0.4, 0.01, margin="±1.00 pp") == "equivalent within ±1.00 pp"


def test_verdict_is_inconclusive_when_neither_test_rejects_or_without_a_pvalue():
    assert verdict(0.02, 0.05, 0.2) == "inconclusive"
    assert verdict(0.02, math.nan) == "inconclusive"


def test_a_significant_difference_takes_precedence_over_equivalence():
    assert verdict(0.002, 0.01, 0.01) == "CCE better"


def test_verdict_never_says_no_evidence():
    outcomes = {verdict(d, p, e) for d in (-0.02, 0.0, 0.02) for p in (0.01, 0.5, math.nan)
                for e in (0.01, 0.5, math.nan)}  # fmt: skip
    assert outcomes == {"CCE better", "CE better", "equivalent within ±margin", "inconclusive"}


def test_verdict_uses_the_given_arm_names():
    assert verdict(0.02, 0.001, better="focal", worse="CE") == "focal better"
