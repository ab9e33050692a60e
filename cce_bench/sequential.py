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

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from cce_bench.stats import _safe_t_critical, anytime_paired_t, safe_t_evalue

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


#: Codes of :func:`decision_paths`: no decision, or the decision ``look`` names.
OPEN, CODES = 0, {POSITIVE: 1, NEGATIVE: -1, EQUIVALENT: 2}


def decision_paths(
    diffs: ArrayLike, *, first_look: int, alpha: float, m: int, margin: float
) -> np.ndarray:
    """:func:`look_path`'s decisions for many comparisons at once: ``[R, looks]`` codes.

    ``diffs`` is ``[R, N]`` (replicate x seed, every seed paired); column j is the look after
    ``first_look + j`` seeds, coded by :data:`CODES` (0 open). The same rule as :func:`look`,
    the zero-spread branch included (a constant prefix has t = ±inf, or 0 at c = 0, and
    half-width 0), vectorised over replicates for the simulations that size follow-ups and
    check the design (``benchmarks/bench_sequential.py``); a test holds it to ``look_path``.
    """
    d = np.atleast_2d(np.asarray(diffs, dtype=np.float64))
    columns = [codes for _, codes, _, _ in iter_looks(d, first_look, alpha, m, margin)]
    if not columns:
        return np.zeros((d.shape[0], 0), dtype=np.int8)
    return np.stack(columns, axis=1)


def iter_looks(
    d: np.ndarray, first_look: int, alpha: float, m: int, margin: float
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(seeds n, decision code, cs_low, cs_high per row) of each look of
    :func:`decision_paths`, in order."""
    threshold = m / alpha
    for n in range(max(first_look, 1), d.shape[1] + 1):
        if n < 2:  # one difference: e-value 1, interval (-inf, inf), never a decision
            unbounded = np.full(d.shape[0], np.inf)
            yield n, np.zeros(d.shape[0], dtype=np.int8), -unbounded, unbounded
            continue
        prefix = d[:, :n]
        mean = prefix.mean(axis=1)
        constant = np.all(prefix == prefix[:, :1], axis=1)
        se = np.where(constant, 0.0, prefix.std(axis=1, ddof=1) / np.sqrt(n))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(constant, np.where(prefix[:, 0] == 0.0, 0.0, np.sign(mean) * np.inf),
                         mean / se)  # fmt: skip
        reject = safe_t_evalue(t, n) >= threshold
        critical = _safe_t_critical(n, threshold)
        half = np.full_like(mean, np.inf) if np.isinf(critical) else critical * se
        effect = reject & (mean != 0.0)
        equivalent = ~effect & (-margin < mean - half) & (mean + half < margin)
        codes = np.where(effect, np.where(mean > 0, 1, -1), np.where(equivalent, 2, OPEN))
        yield n, codes.astype(np.int8), mean - half, mean + half


def first_decisions(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code, look index) of each row's first decision: the verdict, as :func:`deciding_look`
    reads it; code 0 and index -1 for a row never decided."""
    decided = codes != OPEN
    index = np.where(decided.any(axis=1), decided.argmax(axis=1), -1)
    code = np.where(index >= 0, codes[np.arange(codes.shape[0]), np.maximum(index, 0)], OPEN)
    return code, index


#: Replicates and seed of :func:`anytime_seeds_needed`'s simulation: the power at the
#: returned size is within about 2.7 points (three standard errors of 0.8 in 2000) of 80%.
FOLLOW_UP_REPLICATES, FOLLOW_UP_SEED = 2000, 0


def anytime_seeds_needed(
    d_z: float,
    *,
    first_look: int,
    alpha: float,
    m: int,
    cap: int,
    power: float = 0.8,
    replicates: int = FOLLOW_UP_REPLICATES,
    seed: int = FOLLOW_UP_SEED,
) -> int | None:
    """The ``max_seeds`` an anytime follow-up needs to show a true effect of ``d_z`` sd.

    Simulates the design itself (:func:`decision_paths`: normal differences of mean ``d_z``
    and sd 1, margin ``d_z``, looks after every seed from ``first_look``, first decision wins)
    and returns the smallest cap whose share of replicates decided "positive" by then reaches
    ``power``. None when not even ``cap`` seeds reach it. A fixed-n size is too small here:
    the anytime test pays for looking (at d_z = 1, m = 4, a fixed design needs 15 seeds, an
    anytime one about 23).
    """
    if not (math.isfinite(d_z) and d_z > 0.0):
        return None
    d = np.random.default_rng(seed).standard_normal((replicates, cap)) + d_z
    open_rows = np.ones(replicates, dtype=bool)
    positive = 0
    for n, codes, _, _ in iter_looks(d, first_look, alpha, m, margin=d_z):
        decided = open_rows & (codes != OPEN)
        positive += int(np.count_nonzero(decided & (codes == CODES[POSITIVE])))
        open_rows &= ~decided  # the first decision is the verdict
        if positive >= power * replicates:
            return n
    return None


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
