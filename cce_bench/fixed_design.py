"""The fixed design's verdicts: one simultaneous interval per comparison, read for four outcomes.

A fixed design tests a family of m comparisons once, after a number of seeds fixed in advance.
Each comparison can end four ways, and at most one of its two nulls can be true: "no
difference" (the difference test's) or "a difference of at least the margin" (the equivalence
test's). Testing the two kinds as two separately adjusted families lets each spend alpha, which
measured 7-9% family-wise error at m = 4, n = 20, margin 0.75 sd, true differences 0, 0,
+margin, +margin. Here the verdicts are read off one simultaneous interval per comparison
instead, at level 1 - alpha/m (Bonferroni):

* "better" when the interval lies above 0, "worse" when below (a difference shown, its sign
  the interval's); a difference shown takes precedence over equivalence;
* "equivalent" when the interval lies inside (-margin, +margin);
* "inconclusive" otherwise.

Every wrong verdict needs its comparison's interval to miss the true difference ("better" with
a true difference <= 0, "equivalent" with one >= margin), and all m intervals cover together
with probability >= 1 - alpha, so the family-wise error of the verdicts is at most alpha under
any dependence between the comparisons, and the printed interval agrees with every verdict by
construction. Reading the interval is the same as Bonferroni-adjusted tests: the difference
test at alpha/m, and each one-sided equivalence test at alpha/(2m).

The interval comes from the plan's test (``analysis.test``):

* ``"t"``: the paired t interval. It assumes normal differences; with 5 seeds nothing checks
  that. Without spread (constant differences c) it takes its limit as the sd goes to 0, the
  single value [c, c], so that moving one seed by 1e-6 cannot move a verdict (a different rule
  at exactly zero spread would make the verdict jump there).
* ``"sign_flip"``: the inversion of the exact sign-flip test (Fisher 1935): every mean mu0 whose
  differences ``d - mu0`` the test does not reject at alpha/m. It assumes only that each
  difference is symmetric about the true mean, but with n seeds its smallest p is 2/2^n, so it
  needs :func:`sign_flip_min_seeds` (8 at m = 4, alpha = 0.05) before its interval is bounded.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from cce_bench.errors import ResultsError

#: The plan's confirmatory tests (``analysis.test``).
TESTS: tuple[str, ...] = ("t", "sign_flip")

#: The four outcomes of :func:`fixed_verdicts` (``better``: the arm's metric is higher).
BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"

#: Bisection steps of :func:`sign_flip_interval`: 2^-40 (1e-12) of the search range, below
#: the resolution of any metric difference (one image in a million).
BISECTION_STEPS = 40


class FixedDesignInputError(ResultsError, ValueError):
    """Differences or a plan the fixed design cannot read (wrong shape, bad alpha or margin)."""


def sign_flip_min_seeds(alpha: float, m: int = 1) -> int:
    """The fewest paired seeds at which the exact sign-flip test can reject at ``alpha / m``.

    Its smallest two-sided p is 2/2^n (every difference of one sign), so it needs 2/2^n <=
    alpha/m: 8 at m = 4 and alpha = 0.05 (2/2^7 = 0.016 > 0.0125), 6 at m = 1. Below it the
    sign-flip interval is unbounded and no distribution-free test of the symmetric null can
    show a difference or equivalence, however large or consistent the differences.
    """
    if not (0.0 < alpha < 1.0) or m < 1:
        raise FixedDesignInputError(f"need 0 < alpha < 1 and m >= 1, got alpha {alpha}, m {m}")
    n = 1
    while 2.0 / 2.0**n > alpha / m:
        n += 1
    return n


def sign_flip_interval(diffs: ArrayLike, level: float) -> tuple[float, float]:
    """The sign-flip test inverted: the means mu0 it does not reject at ``1 - level``.

    mu0 is rejected when the exact sign-flip p of ``d - mu0`` is at most ``1 - level``. At the
    sample mean p is 1; beyond the largest (smallest) difference every shifted difference has
    one sign and p is at its floor 2/2^n, so each end is found by bisection between the two,
    and is infinite when even the floor does not reject. An end at one of the differences
    (where it ties and drops out) is that difference exactly, so that differences of 0 and a
    nudge of 1e-6 give an interval that reaches 0, as all-zero differences do. Fewer than two
    differences: (-inf, inf).
    """
    from cce_bench.stats import sign_flip_pvalue

    d = np.asarray(diffs, dtype=np.float64).ravel()
    size = 1.0 - level
    if d.size < 2:
        return -math.inf, math.inf
    mean = float(d.mean())

    def rejects(mu: float) -> bool:
        return sign_flip_pvalue(d - mu) <= size

    ends = []
    for outer in (float(d.min()) - 1.0, float(d.max()) + 1.0):
        if not rejects(outer):
            ends.append(math.copysign(math.inf, outer - mean))
            continue
        inside = mean
        for _ in range(BISECTION_STEPS):
            middle = 0.5 * (inside + outer)
            inside, outer = (inside, middle) if rejects(middle) else (middle, outer)
        # At mu0 = d_i a difference becomes a tie and drops out, so p jumps up there: an end
        # that bisection brackets at a difference is that difference, not a point beside it.
        ties = [x for x in d if min(inside, outer) <= x <= max(inside, outer) and not rejects(x)]
        ends.append(min(ties, key=lambda x: abs(x - outer)) if ties else inside)
    return ends[0], ends[1]


def simultaneous_interval(diffs: ArrayLike, level: float, test: str = "t") -> tuple[float, float]:
    """One comparison's interval at ``level`` (1 - alpha/m) under the plan's test.

    ``"t"``: :func:`cce_bench.stats.t_interval` ([c, c] without spread); fewer than two
    differences give (-inf, inf), no evidence. ``"sign_flip"``: :func:`sign_flip_interval`.
    """
    from cce_bench.stats import t_interval

    d = np.asarray(diffs, dtype=np.float64).ravel()
    if test == "sign_flip":
        return sign_flip_interval(d, level)
    if test != "t":
        raise FixedDesignInputError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    if d.size < 2:
        return -math.inf, math.inf
    return t_interval(d, level)


def read_interval(low: float, high: float, margin: float) -> str:
    """The verdict an interval gives: above 0 "better", below "worse", inside ±margin
    "equivalent", else (or NaN) "inconclusive"."""
    if low > 0.0:
        return BETTER
    if high < 0.0:
        return WORSE
    if -margin < low and high < margin:
        return EQUIVALENT
    return INCONCLUSIVE


def fixed_verdicts(diffs: ArrayLike, *, alpha: float, margin: float, test: str = "t") -> list[str]:
    """Verdicts of a confirmatory family under the fixed design, family-wise error <= alpha.

    Args:
        diffs: m x n array, one row per comparison and one column per seed, of arm minus
            baseline; NaN marks a seed without a pair (it is dropped from that row).
        alpha: the family-wise error rate; each interval has level 1 - alpha/m.
        margin: the equivalence bound, > 0, in the units of ``diffs``.
        test: ``"t"`` or ``"sign_flip"`` (see the module docstring).

    Returns:
        One of "better", "worse", "equivalent", "inconclusive" per comparison: the reading of
        its simultaneous interval (:func:`read_interval`).

    >>> fixed_verdicts([[0.02, 0.03, 0.025, 0.02, 0.03]], alpha=0.05, margin=0.01)
    ['better']
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 2:
        raise FixedDesignInputError(f"diffs must be m x n (comparison x seed), got {d.shape}")
    if not (0.0 < alpha < 1.0) or not (math.isfinite(margin) and margin > 0.0):
        raise FixedDesignInputError(f"need 0 < alpha < 1 and margin > 0, got {alpha}, {margin}")
    level = 1.0 - alpha / max(d.shape[0], 1)
    verdicts = []
    for row in d:
        low, high = simultaneous_interval(row[np.isfinite(row)], level, test)
        verdicts.append(read_interval(low, high, margin))
    return verdicts


def design_pvalues(diffs: ArrayLike, margin: float, test: str = "t") -> tuple[float, float]:
    """(difference p, equivalence p) of one comparison under the plan's test, unadjusted.

    The p-values that the simultaneous interval inverts, for the report's tables: the interval
    excludes 0 exactly when m times the first is below alpha, and lies inside ±margin exactly
    when 2m times the second is. ``"t"``: the paired t-test and the TOST's larger one-sided p,
    with the zero-spread limit of the interval (constant c: p 0 for c != 0, 1 for c = 0).
    ``"sign_flip"``: the exact sign-flip p, and the larger one-sided sign-flip p of ``d +
    margin`` and ``margin - d`` (half the two-sided p on the side the data lie, 1 on the other).
    """
    from scipy import stats as scipy_stats  # lazily: the study check imports this module

    from cce_bench.stats import sign_flip_pvalue

    d = np.asarray(diffs, dtype=np.float64).ravel()
    if d.size < 2:
        return 1.0, 1.0
    if test == "sign_flip":
        shifted = (d + margin, margin - d)
        sides = [sign_flip_pvalue(x) / 2.0 if x.sum() > 0 else 1.0 for x in shifted]
        return sign_flip_pvalue(d), max(sides)
    if np.all(d == d[0]):
        c = float(d[0])
        return (0.0 if c != 0.0 else 1.0), (0.0 if abs(c) < margin else 1.0)
    p = float(scipy_stats.ttest_1samp(d, 0.0).pvalue)
    lower = float(scipy_stats.ttest_1samp(d, -margin, alternative="greater").pvalue)
    upper = float(scipy_stats.ttest_1samp(d, margin, alternative="less").pvalue)
    return p, max(lower, upper)
