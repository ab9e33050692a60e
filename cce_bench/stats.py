"""Paired statistics over seeds: is the other arm better than the baseline, by how much, how sure.

Seed i gives both arms the same initialisation, data order and augmentation stream (the paired
seeds of a study), so each seed yields a pair ``(a[i], b[i])`` of one metric, ``a`` the baseline
arm (CE) and ``b`` the other (CCE), and the analysis runs on the differences ``d = b - a``:

* :func:`paired_comparison`: mean difference with a t interval, paired t-test, exact sign-flip
  and Wilcoxon signed-rank tests, effect size d_z and the seeds needed for 80% power;
* :func:`sign_flip_pvalue`: the exact paired permutation test, which stays defined where the
  t-test is not (constant differences);
* :func:`tost_paired`: the paired equivalence test against ±margin;
* :func:`holm` and :func:`benjamini_hochberg`: family-wise error for a confirmatory family,
  false discovery rate for an exploratory one;
* :func:`seeds_needed`: how many paired seeds detect a given margin (prospective power);
* :func:`anytime_paired_t`: the safe t-test and its confidence sequence, valid at every seed
  however a study stops or continues;
* :func:`mcnemar` and :func:`stouffer_signed`: per-image disagreement of the two arms at one
  seed, combined over seeds with its direction;
* :func:`corrected_resampled_t`: the Nadeau-Bengio test for studies whose split changes with
  the seed;
* :func:`t_interval`: the t interval at any level (a simultaneous one at ``1 - alpha / m``);
* :func:`verdict`: the four-outcome verdict of precomputed adjusted p-values;
* :func:`fixed_verdicts` (from :mod:`cce_bench.fixed_design`): the fixed design's four-outcome
  verdicts of a whole confirmatory family, read off its simultaneous intervals, the rule the
  report uses.

The tests themselves come from scipy and statsmodels; this module fixes the conventions around
them (zero and constant differences, NaN in a family) and documents each.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as scipy_stats
from statsmodels.stats.contingency_tables import mcnemar as statsmodels_mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from cce_bench.design_bounds import (  # re-exported: checked at load without scipy
    SAFE_T_PRIOR_VARIANCE,
    StatsInputError,
)
from cce_bench.design_bounds import anytime_min_seeds as anytime_min_seeds
from cce_bench.design_bounds import safe_t_ceiling as safe_t_ceiling
from cce_bench.fixed_design import fixed_verdicts as fixed_verdicts  # the public rule
from cce_bench.fixed_design import sign_flip_min_seeds as sign_flip_min_seeds

#: Significance level of every interval and test here; the report states it once.
ALPHA = 0.05

#: Power asked of a follow-up study in ``seeds_for_80_power`` (Cohen's conventional 0.8).
TARGET_POWER = 0.8

#: Metric values are ratios of image counts; rounding ``b - a`` to this many decimals makes
#: differences that are equal in exact arithmetic equal in floating point too, so that ties are
#: ties for Wilcoxon and constant differences have sd exactly 0 (scipy's wilcoxon docs advise it).
DIFF_DECIMALS = 12

#: Fewer seeds than this: every number is still computed, but the report marks it underpowered
#: (with n = 4 the exact two-sided Wilcoxon p cannot go below 0.125).
MIN_SEEDS = 5

#: Non-zero differences up to which :func:`sign_flip_pvalue` enumerates every sign pattern
#: (two halves of 2^20 sums, ~16 MB); studies run 5-20 seeds.
MAX_EXACT_SIGN_FLIPS = 40

#: Random sign patterns of the Monte Carlo sign-flip p above :data:`MAX_EXACT_SIGN_FLIPS`:
#: its standard error is below 0.0005 at any p.
SIGN_FLIP_RESAMPLES = 2**20


#: Above this many seeds ``solve_power`` is trusted as is; below, its answer is checked stepwise.
STEP_LIMIT = 1000


def paired_differences(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """``d = b - a`` as float64, validated and rounded to :data:`DIFF_DECIMALS`."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise StatsInputError(
            f"paired values need two non-empty 1-D arrays of equal length (one value per seed), "
            f"got shapes {a.shape} and {b.shape}; keep only the seeds both arms completed"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise StatsInputError(
            "paired values contain NaN or infinity; drop the seeds whose metric is undefined "
            "(e.g. macro AUC without both classes) in both arms before comparing"
        )
    return np.round(b - a, DIFF_DECIMALS)


def _t_summary(d: np.ndarray) -> tuple[float, float, float]:
    """95% t interval of mean(d) and the paired t-test p (scipy ``ttest_rel`` on ``b, a``).

    Without spread (one seed, or constant differences, sd 0) the t statistic is 0/0 or ±inf and
    scipy's p would be NaN or 0. The p is then the exact sign-flip p instead
    (:func:`sign_flip_pvalue`: 1 for all-zero differences or one seed, 2/2^n for n non-zero
    differences of one value), so that such a comparison keeps its place in a Holm family
    rather than dropping out as NaN, and "every seed moved by exactly c", typically a few seeds
    each gaining the same one image, is not read as certainty. The interval is [c, c] for
    constant differences and NaN for one seed.
    """
    n, mean = d.size, float(d.mean())
    if n < 2:
        return math.nan, math.nan, sign_flip_pvalue(d)
    if np.all(d == d[0]):
        return mean, mean, sign_flip_pvalue(d)
    result = scipy_stats.ttest_1samp(d, 0.0)  # identical to ttest_rel(b, a)
    interval = result.confidence_interval(confidence_level=1 - ALPHA)
    return float(interval.low), float(interval.high), float(result.pvalue)


def sign_flip_pvalue(diffs: ArrayLike) -> float:
    """Exact two-sided p of the paired sign-flip test: the share of the 2^n sign patterns of
    ``diffs`` whose |sum| is at least the observed |sum|.

    Under the null of exchangeable arms each seed's difference is as likely to be ``+d`` as
    ``-d`` (Fisher 1935, The Design of Experiments, section 21), whatever the distribution of
    the differences, so the test needs neither normality nor any spread. A zero difference is
    a tie: flipping it changes no sum, so it scales both counts alike and leaves p as it is.
    n non-zero differences of one sign and one value give the smallest p, 2/2^n.

    Sums that differ by floating-point rounding only (100 eps of sum |d|, the tolerance scipy's
    ``permutation_test`` uses) count as equal. The 2^k sums of the k non-zero differences are
    enumerated as two halves of 2^(k/2) sums each (meet in the middle), which keeps k up to
    :data:`MAX_EXACT_SIGN_FLIPS` exact in milliseconds; above that, p is a seeded Monte Carlo
    estimate over :data:`SIGN_FLIP_RESAMPLES` patterns (scipy ``permutation_test``).
    """
    d = np.asarray(diffs, dtype=np.float64).ravel()
    if d.size == 0 or not np.isfinite(d).all():
        raise StatsInputError(f"sign_flip_pvalue needs finite differences, got {d.tolist()}")
    d = d[d != 0.0]
    tolerance = 100 * np.finfo(np.float64).eps * float(np.abs(d).sum())
    threshold = abs(float(d.sum())) - tolerance
    if threshold <= 0.0:
        return 1.0
    if d.size > MAX_EXACT_SIGN_FLIPS:
        return float(
            scipy_stats.permutation_test(
                (d,),
                lambda x, axis: np.abs(np.sum(x, axis=axis)),
                permutation_type="samples",
                n_resamples=SIGN_FLIP_RESAMPLES,
                alternative="greater",
                rng=np.random.default_rng(0),
            ).pvalue
        )
    left, right = _signed_sums(d[: d.size // 2]), np.sort(_signed_sums(d[d.size // 2 :]))
    at_least = right.size - np.searchsorted(right, threshold - left, side="left")
    at_most = np.searchsorted(right, -threshold - left, side="right")
    return float((at_least.sum() + at_most.sum()) / 2.0**d.size)


def _signed_sums(values: np.ndarray) -> np.ndarray:
    """All 2^k sums ``sum(s * values)`` over sign patterns ``s`` in {-1, +1}^k."""
    sums = np.zeros(1)
    for value in values:
        sums = np.concatenate((sums + value, sums - value))
    return sums


def wilcoxon_pvalue(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of ``d``, exact for small n.

    Zero differences are discarded first (``zero_method="wilcox"``, Wilcoxon 1945), the
    textbook convention: a seed where both arms scored the same says nothing about the sign.
    scipy then computes the exact null distribution when there are no ties and n <= 50, and an
    exhaustive permutation over all sign flips when ties remain and n <= 13 (exact too);
    larger n use the normal approximation. All differences zero: p = 1.0 (no evidence), where
    scipy would give NaN.
    """
    if np.count_nonzero(d) == 0:
        return 1.0
    return float(scipy_stats.wilcoxon(d, zero_method="wilcox", method="auto").pvalue)


def paired_t_power(d_z: float, n: int, *, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n seeds at effect size d_z.

    The noncentral t formula statsmodels ``TTestPower.power`` uses (noncentrality
    ``d_z * sqrt(n)``, n - 1 degrees of freedom), evaluated with scipy directly because
    statsmodels returns NaN at large noncentrality (measured: d_z = 10, n = 3).
    """
    df, noncentrality = n - 1, abs(d_z) * math.sqrt(n)
    critical = scipy_stats.t.ppf(1 - alpha / 2, df)
    upper = scipy_stats.nct.sf(critical, df, noncentrality)
    lower = scipy_stats.nct.cdf(-critical, df, noncentrality)
    return float(upper + lower)


def seeds_for_power(d_z: float, *, power: float = TARGET_POWER, alpha: float = ALPHA) -> int | None:
    """Smallest number of seeds at which a two-sided paired t-test reaches ``power`` for ``d_z``.

    statsmodels ``TTestPower().solve_power`` (a one-sample t-test on the differences is the
    paired t-test) gives a real-valued n; its root finder clips at n = 2 and fails for huge
    effects (measured: d_z = 10 returns 2.0 although the power at n = 2 is 0.73; d_z = 100
    returns NaN), so its answer is rounded up and then stepped, with :func:`paired_t_power`, to
    the exact smallest integer n >= 2. None when d_z is 0 or not finite: no finite study
    detects a null effect, and an infinite d_z (constant differences) has no power calculation;
    also None for |d_z| so small (below ~1e-9) that the solver fails.
    """
    if not math.isfinite(d_z) or d_z == 0.0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimate = TTestPower().solve_power(effect_size=abs(d_z), alpha=alpha, power=power)
    if not np.isfinite(estimate) and abs(d_z) < 1.0:
        return None  # |d_z| below ~1e-9: the solver fails, and > 1e18 seeds means "never"
    if np.isfinite(estimate) and estimate > STEP_LIMIT:
        return math.ceil(estimate)  # the solver is accurate here, and stepping would crawl
    nobs = max(2, math.ceil(estimate)) if np.isfinite(estimate) else 2
    while paired_t_power(d_z, nobs, alpha=alpha) < power:
        nobs += 1
    while nobs > 2 and paired_t_power(d_z, nobs - 1, alpha=alpha) >= power:
        nobs -= 1
    return int(nobs)


def seeds_needed(sd_diff: float, margin: float, alpha: float, power: float = TARGET_POWER) -> int:
    """Paired seeds a study needs to detect a true mean difference of ``margin``.

    Prospective power: the smallest n at which the two-sided paired t-test at level ``alpha``
    (the family's adjusted level when it is confirmatory) rejects with probability ``power``
    when the differences have mean ``margin`` and standard deviation ``sd_diff`` (an estimate
    from earlier seeds). This is :func:`seeds_for_power` at the standardised effect
    ``margin / sd_diff`` (noncentral t, Cohen 1988, chapter 2). With ``sd_diff`` 0 (every seed
    moved by the same amount) the deciding test is the exact sign-flip test, whose smallest p
    is 2/2^n: the answer is the smallest n with 2/2^n <= alpha. An effect too small for the
    solver (below ~1e-9 sd) gets the normal approximation, exact in that limit.
    """
    if not (math.isfinite(sd_diff) and sd_diff >= 0.0):
        raise StatsInputError(
            f"sd_diff must be a finite standard deviation >= 0, got {sd_diff}; it needs at "
            "least two paired seeds"
        )
    if not (math.isfinite(margin) and margin > 0.0):
        raise StatsInputError(f"margin must be > 0 (in metric units), got {margin}")
    if not (0.0 < alpha < power < 1.0):
        raise StatsInputError(f"need 0 < alpha < power < 1, got alpha {alpha}, power {power}")
    if sd_diff == 0.0:
        n = 1
        while 2.0 / 2.0**n > alpha:
            n += 1
        return n
    d_z = margin / sd_diff
    n = seeds_for_power(d_z, power=power, alpha=alpha)
    if n is None:
        z = scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(power)
        return math.ceil((z / d_z) ** 2)
    return n


def _effect_size(d: np.ndarray) -> tuple[float, float]:
    """(sd of d with ddof 1, d_z = mean / sd); d_z is 0 for all-zero d and ±inf for constant d."""
    if d.size < 2:
        return math.nan, math.nan
    sd, mean = float(d.std(ddof=1)), float(d.mean())
    if sd == 0.0:
        return 0.0, 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    return sd, mean / sd


def paired_comparison(a: ArrayLike, b: ArrayLike) -> dict:
    """Compare two arms over paired seeds: effect, interval, tests, effect size, power.

    Args:
        a: the baseline arm's metric per seed (CE).
        b: the other arm's metric per seed (CCE), same seeds in the same order.

    Returns:
        ``n``, ``mean_a``, ``mean_b``, ``mean_diff`` (mean of ``d = b - a``), ``sd_diff`` (ddof
        1), ``t_ci_low``/``t_ci_high`` (95% t interval), ``t_pvalue`` (paired t),
        ``wilcoxon_pvalue``, ``sign_flip_p`` (exact paired permutation test),
        ``n_zero_diffs`` (seeds with d = 0, discarded by Wilcoxon), ``d_z`` (mean(d) / sd(d)),
        ``seeds_for_80_power`` and ``underpowered`` (n < 5). With one seed the spread-based
        values are NaN; without spread ``t_pvalue`` is the sign-flip p (see
        :func:`_t_summary`), so no p is NaN. No bootstrap over seeds: with the 3-10 seeds a
        study runs, a percentile bootstrap interval is about 0.63 times as wide as the t
        interval at 5 seeds (normal quantile, plug-in sd), about 85% coverage for a nominal
        95%.
    """
    d = paired_differences(a, b)
    t_low, t_high, t_p = _t_summary(d)
    sd, d_z = _effect_size(d)
    return {
        "n": int(d.size),
        "mean_a": float(np.mean(a)),
        "mean_b": float(np.mean(b)),
        "mean_diff": float(d.mean()),
        "sd_diff": sd,
        "t_ci_low": t_low,
        "t_ci_high": t_high,
        "t_pvalue": t_p,
        "wilcoxon_pvalue": wilcoxon_pvalue(d),
        "sign_flip_p": sign_flip_pvalue(d),
        "n_zero_diffs": int(np.count_nonzero(d == 0.0)),
        "d_z": d_z,
        "seeds_for_80_power": seeds_for_power(d_z),
        "underpowered": bool(d.size < MIN_SEEDS),
    }


def tost_paired(a: ArrayLike, b: ArrayLike, margin: float) -> dict:
    """Paired equivalence test: is the mean of ``d = b - a`` inside (-margin, +margin)?

    Schuirmann's (1987) two one-sided tests: ``p_lower`` is the paired t-test of H0 mean(d) <=
    -margin against mean(d) > -margin, ``p_upper`` of H0 mean(d) >= +margin against mean(d) <
    +margin, and ``p_value = max(p_lower, p_upper)``. Equivalence at level alpha is p_value <
    alpha, the same as the (1 - 2 alpha) t interval lying inside ±margin; it is a
    level-alpha test with no further correction for the two sides, since both must reject.

    Without spread (one seed, or constant differences c) the t statistics are ±inf or 0/0;
    each side's p is then its exact one-sided sign-flip p, as for :func:`paired_comparison`:
    1/2^n when every shifted difference (c + margin, or margin - c) is positive, else 1.
    """
    if not (math.isfinite(margin) and margin > 0.0):
        raise StatsInputError(f"margin must be > 0 (in metric units), got {margin}")
    d = paired_differences(a, b)
    n = d.size
    if n < 2 or np.all(d == d[0]):
        p_lower = 0.5**n if d[0] + margin > 0.0 else 1.0
        p_upper = 0.5**n if margin - d[0] > 0.0 else 1.0
    else:
        p_lower = float(scipy_stats.ttest_1samp(d, -margin, alternative="greater").pvalue)
        p_upper = float(scipy_stats.ttest_1samp(d, margin, alternative="less").pvalue)
    return {"p_value": max(p_lower, p_upper), "p_lower": p_lower, "p_upper": p_upper}


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm's step-down adjusted p-values (statsmodels ``multipletests(method="holm")``).

    Holm controls the family-wise error rate under any dependence between the tests, which the
    comparisons of one report have (the same runs feed every metric). NaN p-values (tests that
    could not be computed) stay NaN and are left out of the family, so they neither count
    towards the number of tests nor hide a result. Order is preserved.
    """
    return _adjust(pvalues, "holm")


def benjamini_hochberg(pvalues: ArrayLike) -> np.ndarray:
    """Benjamini-Hochberg (1995) adjusted p-values (statsmodels ``method="fdr_bh"``).

    For an exploratory family, where a few false leads are acceptable: rejecting every
    adjusted p below q keeps the expected share of false discoveries among the rejections at
    most q. The bound holds for independent tests and for positively dependent ones
    (Benjamini & Yekutieli 2001), as the metrics of one set of runs are. NaN p-values stay
    NaN and are left out of the family, as in :func:`holm`. Order is preserved.
    """
    return _adjust(pvalues, "fdr_bh")


def benjamini_yekutieli(pvalues: ArrayLike) -> np.ndarray:
    """Benjamini-Yekutieli (2001) adjusted p-values (statsmodels ``method="fdr_by"``).

    Benjamini-Hochberg's bound needs independent or positively dependent tests; the
    exploratory family holds per-class recalls that trade off against each other (a model that
    calls more lesions MEL gains MEL recall and loses NV recall), which are negatively
    dependent. BY keeps the false discovery rate at most q under any dependence, at the price
    of the factor sum_{i<=k} 1/i (2.9 for 10 tests). NaN handling and order as in :func:`holm`.
    """
    return _adjust(pvalues, "fdr_by")


def _adjust(pvalues: ArrayLike, method: str) -> np.ndarray:
    """statsmodels ``multipletests`` over the non-NaN p-values; NaN stays NaN."""
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise StatsInputError(f"p-values must lie in [0, 1], got {p[finite].tolist()}")
    adjusted = np.full_like(p, np.nan)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], method=method)[1]
    return adjusted


def safe_t_evalue(t: ArrayLike, n: ArrayLike, g: float = SAFE_T_PRIOR_VARIANCE) -> np.ndarray:
    """E-value of the safe one-sample t-test for statistic ``t`` after ``n`` observations.

    E_n = (1 + n g)^(-1/2) [(1 + t^2/nu) / (1 + t^2/(nu (1 + n g)))]^((nu + 1)/2), nu = n - 1:
    the Bayes factor of a normal N(0, g) prior on the standardised effect against 0 (Gönen,
    Johnson, Lu & Westfall 2005), which under the right-Haar prior on sigma is an e-process
    for H0: mean = 0 in the data's scale-invariant filtration (Pérez-Ortiz, Lardy, de Heide &
    Grünwald 2024, Annals of Statistics). It grows with |t| towards (1 + n g)^(nu/2), the value
    at t = ±inf (no spread); vectorised over ``t`` and ``n`` (n >= 2).
    """
    t, n = np.broadcast_arrays(np.asarray(t, dtype=np.float64), np.asarray(n, dtype=np.float64))
    nu, scale = n - 1.0, 1.0 + n * g
    with np.errstate(invalid="ignore", over="ignore"):
        t2 = np.square(t)
        log_ratio = np.log1p(t2 / nu) - np.log1p(t2 / (nu * scale))
    log_ratio = np.where(np.isinf(t), np.log(scale), log_ratio)
    return np.exp(-0.5 * np.log(scale) + 0.5 * (nu + 1.0) * log_ratio)


def anytime_paired_t(diffs: ArrayLike, alpha: float, m: int = 1) -> dict:
    """Anytime-valid paired test and confidence sequence after the first n seeds' differences.

    The safe t-test (:func:`safe_t_evalue`) of H0: mean(d) = 0 at level ``alpha / m``,
    Bonferroni over a family of ``m`` comparisons. Ville's inequality bounds the chance that
    its e-value ever reaches ``m / alpha``, at any n, by ``alpha / m``; a rejection at
    whatever n a study stops is inside that event, so the study may look after every seed,
    stop, or add seeds by any rule (the interval against a margin included) and the
    family-wise error stays at most ``alpha``.

    Returns:
        ``e_value`` (against mean 0), ``reject`` (``e_value >= m / alpha``), and ``cs_low`` /
        ``cs_high``: the confidence sequence at level ``alpha / m``, the open interval of the
        means mu0 whose e-value (the same test on ``d - mu0``) stays below ``m / alpha``. It
        covers the true mean at every n at once with probability >= 1 - alpha / m, so it can
        be read at any stop; ``reject`` is the same as 0 lying outside it. The e-value depends
        on mu0 only through t^2, so the interval is mean ± t* sd / sqrt(n), with t* from the
        closed-form inverse of the e-value (:func:`_safe_t_critical`).

    Edge cases: fewer than 2 differences carry no evidence (e-value 1, interval (-inf, inf)).
    No e-value exceeds (1 + n)^((n - 1)/2), its limit at |t| = inf: until that reaches
    ``m / alpha`` (n >= 6 at m = 4, alpha = 0.05) nothing can be rejected and the interval is
    (-inf, inf). Without spread (constant differences c) the e-value is its limit as the sd
    goes to 0: (1 + n)^(-1/2) when c = 0 (t = 0), that maximum otherwise, and the interval
    is the single value [c, c] once n can reject at all. Metric differences are ratios of
    image counts, so identical arms give c = 0 exactly and are "equivalent" at any margin.
    """
    d = np.asarray(diffs, dtype=np.float64).ravel()
    if not np.isfinite(d).all():
        raise StatsInputError("anytime_paired_t needs finite differences; drop undefined seeds")
    if not (0.0 < alpha < 1.0) or m < 1:
        raise StatsInputError(f"need 0 < alpha < 1 and m >= 1, got alpha {alpha}, m {m}")
    threshold, n = m / alpha, d.size
    if n < 2:
        return {"e_value": 1.0, "reject": False, "cs_low": -math.inf, "cs_high": math.inf}
    mean, constant = float(d.mean()), bool(np.all(d == d[0]))
    if constant:
        se, t = 0.0, (0.0 if d[0] == 0.0 else math.copysign(math.inf, float(d[0])))
    else:
        se = float(d.std(ddof=1)) / math.sqrt(n)
        t = mean / se
    e_value = float(safe_t_evalue(t, n))
    critical = _safe_t_critical(n, threshold)
    half_width = math.inf if math.isinf(critical) else critical * se
    return {
        "e_value": e_value,
        "reject": e_value >= threshold,
        "cs_low": mean - half_width,
        "cs_high": mean + half_width,
    }


def _safe_t_critical(n: int, threshold: float, g: float = SAFE_T_PRIOR_VARIANCE) -> float:
    """|t| at which :func:`safe_t_evalue` equals ``threshold``; inf when it never does.

    With x = t^2, k = 1 + n g and R = (threshold sqrt(k))^(2/(nu + 1)), the equation
    (1 + x/nu) / (1 + x/(nu k)) = R is linear in x: x = nu (R - 1) / (1 - R/k), which is
    finite and positive when R < k, i.e. when the e-value's limit (1 + n g)^(nu/2) exceeds
    the threshold. Closed form rather than a root finder: exact, and no bracket to choose.
    """
    nu, scale = n - 1.0, 1.0 + n * g
    ratio = math.exp(2.0 * (math.log(threshold) + 0.5 * math.log(scale)) / (nu + 1.0))
    if ratio >= scale:
        return math.inf
    return math.sqrt(nu * (ratio - 1.0) / (1.0 - ratio / scale))


def mcnemar(pred_a: ArrayLike, pred_b: ArrayLike, y_true: ArrayLike) -> float:
    """Exact McNemar p of two arms' per-image correctness on the same images (one seed).

    Only the discordant images count: ``n_ab`` right under ``a`` and wrong under ``b``, ``n_ba``
    the reverse; under the null each is equally likely, so the exact test is a two-sided
    binomial test of ``n_ab`` out of ``n_ab + n_ba`` at 1/2 (statsmodels ``mcnemar(table,
    exact=True)``). No discordant image gives p = 1.
    """
    pred_a, pred_b, y_true = (np.asarray(x).ravel() for x in (pred_a, pred_b, y_true))
    if not (pred_a.shape == pred_b.shape == y_true.shape) or y_true.size == 0:
        raise StatsInputError(
            f"McNemar needs both arms' predictions for the same images, got {pred_a.size}, "
            f"{pred_b.size} predictions and {y_true.size} labels; load both arms' predictions "
            "of one seed (same image_ids)"
        )
    right_a, right_b = pred_a == y_true, pred_b == y_true
    table = [
        [np.count_nonzero(right_a & right_b), np.count_nonzero(right_a & ~right_b)],
        [np.count_nonzero(~right_a & right_b), np.count_nonzero(~right_a & ~right_b)],
    ]
    return float(statsmodels_mcnemar(table, exact=True).pvalue)


def stouffer_signed(pvalues: ArrayLike, directions: ArrayLike) -> float:
    """Two-sided p of the signed Stouffer combination of per-seed two-sided p-values.

    Each seed's two-sided p becomes a z-score carrying the sign of its effect,
    ``z_i = sign_i * Phi^-1(1 - p_i / 2)``, and ``Z = sum z_i / sqrt(k)`` is standard normal
    under the null when the seeds are independent (Stouffer et al. 1949; Whitlock 2005). Unlike
    Fisher's ``-2 sum log p``, which ignores direction, opposite effects cancel: seeds that move
    +2, -2, -1.6, 0 and +1.1 pp do not combine into evidence. ``directions`` are the signs of
    each seed's effect (+1 for the other arm, -1 for the baseline, 0 for none); a p of 1 or a
    direction of 0 contributes z = 0. Caveat, stated in the report: the seeds of one split
    score the same test images, so their z-scores are positively correlated and the combined p
    is optimistic; it stays exploratory. NaN entries are ignored; none left gives NaN.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    sign = np.sign(np.asarray(directions, dtype=np.float64).ravel())
    if p.shape != sign.shape:
        raise StatsInputError(
            f"stouffer_signed needs one direction per p-value, got {p.size} and {sign.size}"
        )
    keep = ~(np.isnan(p) | np.isnan(sign))
    if not keep.any():
        return math.nan
    z = sign[keep] * scipy_stats.norm.isf(np.clip(p[keep], 0.0, 1.0) / 2.0)
    combined = float(z.sum() / math.sqrt(z.size))
    return float(2.0 * scipy_stats.norm.sf(abs(combined)))


def corrected_resampled_t(a: ArrayLike, b: ArrayLike, test_fraction: float) -> float:
    """Two-sided p of the Nadeau & Bengio (2003) corrected resampled t-test.

    When each seed draws its own train/test split, the seeds' test sets overlap and the
    differences are correlated, so the plain paired t-test is far too liberal. Nadeau & Bengio
    inflate the variance of the mean difference from ``var(d) / n`` to
    ``var(d) * (1/n + n_test/n_train)``, with ``n_test/n_train = f / (1 - f)`` for test
    fraction ``f``; t has n - 1 degrees of freedom. Without spread (one seed, constant
    differences) the p is the exact sign-flip p, as in :func:`_t_summary`; it ignores the
    overlap of the seeds' test sets, which only matters once there is spread to inflate.
    """
    if not 0.0 < test_fraction < 1.0:
        raise StatsInputError(
            f"test_fraction must be strictly between 0 and 1, got {test_fraction}; "
            "pass the study's data.test_fraction"
        )
    d = paired_differences(a, b)
    n, mean = d.size, float(d.mean())
    if n < 2 or np.all(d == d[0]):
        return sign_flip_pvalue(d)
    variance = float(d.var(ddof=1))
    ratio = test_fraction / (1.0 - test_fraction)
    t = mean / math.sqrt((1.0 / n + ratio) * variance)
    return float(2.0 * scipy_stats.t.sf(abs(t), df=n - 1))


def t_interval(diffs: ArrayLike, level: float) -> tuple[float, float]:
    """Two-sided t interval of mean(diffs) at confidence ``level`` (e.g. ``1 - alpha / m``).

    ``mean ± t_{n-1}(1 - (1 - level) / 2) sd / sqrt(n)``; [c, c] for constant differences c
    (no spread, as in :func:`paired_comparison`) and NaN for fewer than two.
    """
    d = np.asarray(diffs, dtype=np.float64).ravel()
    if not 0.0 < level < 1.0:
        raise StatsInputError(f"level must lie strictly between 0 and 1, got {level}")
    if d.size < 2:
        return math.nan, math.nan
    mean = float(d.mean())
    if np.all(d == d[0]):
        return mean, mean
    half = scipy_stats.t.ppf(1 - (1 - level) / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return mean - float(half), mean + float(half)


def verdict(
    mean_diff: float,
    adjusted_p: float,
    equivalence_p: float = math.nan,
    *,
    alpha: float = ALPHA,
    higher_is_better: bool = True,
    better: str = "CCE",
    worse: str = "CE",
    margin: str = "±margin",
) -> str:
    """The verdict of one confirmatory comparison, one of four outcomes.

    * ``"<better> better"`` / ``"<worse> better"``: the family-adjusted p of the difference
      (Holm) is below ``alpha``; ``better`` names arm b and ``worse`` arm a (d = b - a), and
      the winner follows the metric's direction (``HIGHER_IS_BETTER`` in metrics);
    * ``"equivalent within <margin>"``: otherwise, the family-adjusted p of the paired TOST
      against ±margin (:func:`tost_paired`) is below ``alpha``: the difference is shown to be
      smaller than the smallest one that matters;
    * ``"inconclusive"``: neither; more seeds are needed to tell (a NaN p rejects nothing).

    A significant difference takes precedence over equivalence: both can hold when a real
    difference is smaller than the margin, and the interval printed beside it shows that.
    """
    if not math.isnan(adjusted_p) and adjusted_p < alpha and mean_diff != 0.0:
        b_wins = (mean_diff > 0) == higher_is_better
        return f"{better} better" if b_wins else f"{worse} better"
    if not math.isnan(equivalence_p) and equivalence_p < alpha:
        return f"equivalent within {margin}"
    return "inconclusive"
