"""What a statistical design can reach, in plain arithmetic: checked before any run.

A study file whose anytime design can never decide is refused when it loads, and that check
must not import scipy and statsmodels (about 1 s) before a typo elsewhere in the file is
reported. So the safe t-test's e-value ceiling and the fewest seeds it needs live here, without
them; :mod:`cce_bench.stats` re-exports every name.
"""

from __future__ import annotations

from cce_bench.errors import ResultsError


class StatsInputError(ResultsError, ValueError):
    """Per-seed values that cannot be compared as pairs (different lengths, NaN, empty)."""


#: Prior variance g of the standardised effect in the safe t-test: g = 1 is the unit-information
#: prior (one observation's worth), the default of Pérez-Ortiz et al. (2024).
SAFE_T_PRIOR_VARIANCE = 1.0


def safe_t_ceiling(n: int, g: float = SAFE_T_PRIOR_VARIANCE) -> float:
    """The largest e-value :func:`cce_bench.stats.safe_t_evalue` can give after ``n`` observations:
    (1 + n g)^((n - 1)/2), its limit at |t| = inf (every difference the same sign and size)."""
    return (1.0 + n * g) ** ((n - 1) / 2)


def anytime_min_seeds(alpha: float, m: int = 1, g: float = SAFE_T_PRIOR_VARIANCE) -> int:
    """The fewest paired seeds at which ``stats.anytime_paired_t`` can decide anything.

    Below it the e-value's ceiling (:func:`safe_t_ceiling`) stays under ``m / alpha``: no
    effect can be shown, and the confidence sequence is (-inf, inf), so no equivalence either,
    however large or consistent the differences. 6 at m = 4, alpha = 0.05 (ceiling 36 at 5
    seeds against 80); 5 at m = 1. A study whose ``max_seeds`` is below it can only end
    "inconclusive", so the study check refuses it.
    """
    if not (0.0 < alpha < 1.0) or m < 1:
        raise StatsInputError(f"need 0 < alpha < 1 and m >= 1, got alpha {alpha}, m {m}")
    n = 2
    while safe_t_ceiling(n, g) < m / alpha:
        n += 1
    return n
