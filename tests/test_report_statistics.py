"""What the report's statistics state: the test-set interval counts each variance once, every
follow-up size means something, duplicates are not tested twice, normality-only verdicts are
marked, and the committed examples say what their designs assume."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cce_bench.report._answer import confirmatory_display, follow_up_text, normality_mark
from cce_bench.report._families import (
    FOLLOW_UP_CAP,
    AnalysisPlan,
    comparison_frame,
    follow_up_seeds,
)
from cce_bench.report._sequential import SequentialComparison, apply_sequential_verdicts
from cce_bench.report._test_sampling import between_seed_se
from cce_bench.sequential import look_path

ROOT = Path(__file__).resolve().parent.parent
PLAN = AnalysisPlan("balanced_accuracy", ("cce",), ("net",), alpha=0.05, margin=0.01)
FAMILY_OF_FOUR = AnalysisPlan("balanced_accuracy", ("cce", "x"), ("a", "b"), 0.05, 0.01)


# -- the test-set interval -------------------------------------------------------------------
def test_test_set_variance_is_the_between_seed_covariance_without_the_interaction():
    shared = np.array([1.0, -1.0, -1.0, 1.0]) * 0.01  # rows of a Hadamard matrix: orthogonal
    interaction = np.array([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]]) * 0.05
    # The two seeds' own deviations are uncorrelated across resamples: only the shared part
    # is the test set's, however large the interaction.
    assert between_seed_se(shared + interaction) == pytest.approx(np.std(shared, ddof=1))
    assert between_seed_se(interaction) == 0.0


def test_test_set_variance_needs_two_seeds():
    assert np.isnan(between_seed_se(np.ones((1, 10))))


# -- follow-up sizes -------------------------------------------------------------------------
def test_no_follow_up_is_sized_from_fewer_than_five_seeds_or_no_spread():
    assert follow_up_seeds(0.02, 3, PLAN) is None
    assert follow_up_seeds(0.0, 10, PLAN) is None
    assert follow_up_seeds(0.01, 5, PLAN) == 10


def test_a_follow_up_beyond_the_cap_prints_as_more_than_the_cap():
    assert follow_up_seeds(0.5, 5, PLAN) == FOLLOW_UP_CAP + 1
    text = follow_up_text(FOLLOW_UP_CAP + 1, 5, PLAN, "fixed")
    assert f"more than {FOLLOW_UP_CAP} paired seeds" in text


def test_a_sign_flip_follow_up_is_never_below_the_seeds_the_test_needs():
    plan = AnalysisPlan("balanced_accuracy", ("cce",), ("net",), 0.05, 0.01, test="sign_flip")
    assert follow_up_seeds(0.001, 8, plan) == 6


# -- duplicates ------------------------------------------------------------------------------
def test_melanoma_sensitivity_is_derived_from_mel_recall():
    assert PLAN.family_of("melanoma_sensitivity", "cce") == "derived"
    assert PLAN.family_of("recall_mel", "cce") == "exploratory"


def test_a_plan_on_melanoma_sensitivity_derives_mel_recall_instead():
    plan = AnalysisPlan("melanoma_sensitivity", ("cce",), ("net",), alpha=0.05, margin=0.01)
    assert plan.family_of("melanoma_sensitivity", "cce") == "confirmatory"
    assert plan.family_of("recall_mel", "cce") == "derived"


# -- normality -------------------------------------------------------------------------------
def row(verdict: str, n: int, reachable: bool) -> pd.Series:
    return pd.Series({"verdict": verdict, "n": n, "sign_flip_reachable": reachable})


def test_a_verdict_no_distribution_free_test_could_reach_is_marked():
    mark = normality_mark(row("CCE better", 5, False), FAMILY_OF_FOUR)
    assert "rests on normality" in mark and "needs 8" in mark
    assert normality_mark(row("CCE better", 8, True), FAMILY_OF_FOUR) == ""
    assert normality_mark(row("inconclusive", 5, False), FAMILY_OF_FOUR) == ""


def judged_frame(baseline: list[float], other: list[float], plan: AnalysisPlan) -> pd.DataFrame:
    records = [
        {"backbone": "net", "arm": arm, "seed": seed, "outcome": "completed",
         "balanced_accuracy": value}
        for arm, values in (("ce", baseline), ("cce", other))
        for seed, value in enumerate(values)
    ]  # fmt: skip
    return comparison_frame(
        pd.DataFrame(records),
        plan=plan,
        baseline="ce",
        arms=("ce", "cce"),
        seeds=range(len(baseline)),
        class_names=(),
        arm_labels={"ce": "CE", "cce": "CCE"},
    )


def test_every_confirmatory_row_shows_its_exact_sign_flip_p():
    ce = [0.70, 0.71, 0.69, 0.72, 0.70]
    frame = judged_frame(ce, [v + 0.02 for v in ce], PLAN)
    table = confirmatory_display(frame, PLAN, {"ce": "CE", "cce": "CCE"})
    assert table["p (sign-flip)"].tolist() == ["0.062"]


def test_a_sign_flip_plan_reads_its_verdict_off_the_sign_flip_interval():
    plan = AnalysisPlan("balanced_accuracy", ("cce",), ("net",), 0.05, 0.01, test="sign_flip")
    ce = [0.70, 0.71, 0.69, 0.72, 0.70]
    t_frame = judged_frame(ce, [v + 0.02 for v in ce], PLAN)
    flip_frame = judged_frame(ce, [v + 0.02 for v in ce], plan)
    confirmatory = "family == 'confirmatory'"
    assert t_frame.query(confirmatory)["verdict"].tolist() == ["CCE better"]  # limit [c, c]
    assert flip_frame.query(confirmatory)["verdict"].tolist() == ["inconclusive"]  # 5 < 6


def test_the_anytime_table_shows_the_confidence_sequence_its_verdict_reads():
    rng = np.random.default_rng(0)
    ce = list(rng.normal(0.7, 0.01, 8))
    cce = [v + 0.03 + e for v, e in zip(ce, rng.normal(0, 0.005, 8), strict=True)]
    frame = judged_frame(ce, cce, PLAN)
    path = look_path(np.subtract(cce, ce), first_look=5, alpha=0.05, m=1, margin=0.01)
    item = SequentialComparison("net", "cce", tuple(path), "CCE better")
    judged = apply_sequential_verdicts(frame, [item], PLAN, 5)
    table = confirmatory_display(judged, PLAN, {"ce": "CE", "cce": "CCE"})
    read = item.read_at
    column = "Confidence sequence (the verdict's)"
    assert table[column].tolist() == [f"[{read.cs_low * 100:+.2f}, {read.cs_high * 100:+.2f}]"]


# -- the committed examples ------------------------------------------------------------------
def test_the_example_plan_states_its_normality_assumption():
    report = (ROOT / "docs" / "example-report" / "report.md").read_text(encoding="utf-8")
    plan = report.split("## Answer")[0]
    assert "| Assumptions | the per-seed differences are normal" in plan


def test_the_anytime_example_states_its_prior_scale_and_that_it_could_not_decide():
    report = (ROOT / "docs" / "example-report-pretrained" / "report.md").read_text("utf-8")
    assert "Prior scale of the standardised effect g = 1" in report.split("## Answer")[0]
    answer = report.split("## Answer")[1].split("\n## ")[0]
    assert "This design could not decide anything" in answer
