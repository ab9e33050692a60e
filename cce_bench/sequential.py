"""Sequential evaluation: read the evidence after every paired seed, stop when the answer is in.

A fixed design trains a set number of seeds and tests once. Reading the same test after every
seed and stopping at the first p < alpha inflates its error (a look at every n from 5 to 20
takes a 5% t-test to about 20%). The anytime-valid paired t-test
(:func:`cce_bench.stats.anytime_paired_t`: the safe t-test's e-value and its confidence
sequence, Pérez-Ortiz, Lardy, de Heide & Grünwald 2024) keeps its promise under any pattern of
looks, stops and extensions, because Ville's inequality bounds the chance that the e-value
*ever* reaches ``m / alpha`` by ``alpha / m``. This module turns it into a stopping rule:

* each confirmatory comparison is looked at after the first ``first_look`` paired seeds, then
  after every further one, always in seed order, so that a look is a fixed function of the
  seeds before it;
* a comparison is decided at its first look whose e-value reaches ``m / alpha`` (an effect, its
  sign from the mean difference) or whose confidence sequence lies inside ±margin
  ("equivalent"); that first decision is its verdict, whatever later looks say;
* a backbone stops adding seeds when each of its comparisons is decided; a comparison still
  open at the last seed is "inconclusive".

Each error has probability at most ``alpha / m`` per comparison (an effect called where there
is none needs the e-value to cross; "equivalent" where the true difference is at least the
margin needs the confidence sequence to miss it), so at most ``alpha`` over the family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from cce_bench.stats import anytime_paired_t

#: A look's decision: the mean difference (b - a) is shown above 0, below 0, or within ±margin.
POSITIVE, NEGATIVE, EQUIVALENT = "positive", "negative", "equivalent"


@dataclass(frozen=True)
class Look:
    """The anytime-valid test of one comparison after its first ``seeds`` seeds.

    ``n`` counts the paired differences among them (a seed one arm failed adds none).
    """

    seeds: int
    n: int
    mean: float
    e_value: float
    cs_low: float
    cs_high: float
    #: ``POSITIVE``, ``NEGATIVE``, ``EQUIVALENT`` or None (no decision yet).
    decision: str | None


def look(diffs: ArrayLike, *, alpha: float, m: int, margin: float, seeds: int = -1) -> Look:
    """The test and decision on these paired differences (finite, in seed order)."""
    d = np.asarray(diffs, dtype=np.float64).ravel()
    test = anytime_paired_t(d, alpha, m)
    mean = float(d.mean()) if d.size else float("nan")
    decision = None
    if test["reject"] and mean != 0.0:
        decision = POSITIVE if mean > 0 else NEGATIVE
    elif -margin < test["cs_low"] and test["cs_high"] < margin:
        decision = EQUIVALENT
    count = d.size if seeds < 0 else seeds
    return Look(count, d.size, mean, test["e_value"], test["cs_low"], test["cs_high"], decision)


def look_path(
    diffs: ArrayLike, *, first_look: int, alpha: float, m: int, margin: float
) -> list[Look]:
    """Every look the design takes: after the first ``first_look`` seeds, then after each one.

    ``diffs`` holds one difference per seed in seed order, NaN for a seed without a pair; each
    look reads the finite differences among the seeds so far.
    """
    d = np.asarray(diffs, dtype=np.float64).ravel()
    return [
        look(d[:k][np.isfinite(d[:k])], alpha=alpha, m=m, margin=margin, seeds=k)
        for k in range(max(1, first_look), d.size + 1)
    ]


def deciding_look(path: Sequence[Look]) -> Look | None:
    """The first look with a decision: the comparison's verdict; None while it is open."""
    return next((item for item in path if item.decision is not None), None)


def verdict_look(path: Sequence[Look]) -> Look | None:
    """The look a verdict is read at: the deciding one, else the last (open: inconclusive)."""
    return deciding_look(path) or (path[-1] if path else None)
