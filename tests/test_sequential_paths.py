"""The vectorised anytime rule that the benchmark and the follow-up sizes simulate is the rule
the study runs (``look_path``), and an anytime follow-up is sized for the anytime design."""

import numpy as np

from cce_bench.sequential import (
    CODES,
    anytime_seeds_needed,
    decision_paths,
    first_decisions,
    look_path,
)
from cce_bench.stats import seeds_needed


def reference_codes(d: np.ndarray, **rule) -> np.ndarray:
    return np.array([[CODES.get(item.decision, 0) for item in look_path(row, **rule)] for row in d])


def test_decision_paths_are_look_path_with_equivalence_and_zero_spread():
    rng = np.random.default_rng(1)
    d = rng.normal(0.5, 1.0, (300, 20))
    d[:5] = 0.007  # constant: the zero-spread branch
    d[5:10, :6] = -0.01  # a constant prefix, then noise
    d[10:30] = rng.normal(0.0, 0.02, (20, 20))  # tight around 0: equivalence
    rule = {"first_look": 5, "alpha": 0.05, "m": 4, "margin": 0.3}
    codes = decision_paths(d, **rule)
    np.testing.assert_array_equal(codes, reference_codes(d, **rule))
    assert set(np.unique(codes)) == {0, 1, -1, 2}


def test_first_decision_wins_over_later_looks():
    codes = np.array([[0, 2, 1, 1], [0, 0, 0, 0], [-1, 2, 0, 1]], dtype=np.int8)
    code, index = first_decisions(codes)
    assert code.tolist() == [2, 0, -1] and index.tolist() == [1, -1, 0]


def test_an_anytime_follow_up_needs_more_seeds_than_a_fixed_one():
    anytime = anytime_seeds_needed(1.0, first_look=5, alpha=0.05, m=4, cap=200)
    fixed = seeds_needed(1.0, 1.0, 0.05 / 4)
    assert fixed == 15 and anytime == 23


def test_an_anytime_follow_up_beyond_the_cap_has_no_size():
    assert anytime_seeds_needed(0.1, first_look=5, alpha=0.05, m=4, cap=40) is None
