"""Secondary metrics: a second pre-registered family, checked at load, reported apart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_config import study_file

from cce_bench.errors import StudyConfigError
from cce_bench.report import build_report
from cce_bench.report._build import judge
from cce_bench.report._families import analysis_plan
from cce_bench.report._results import load_results
from cce_bench.report._secondary import secondary_frame

FIXTURE = Path(__file__).parent / "fixtures" / "report_study"
GENERATED = ("report.md", "runs.csv", "summary.csv", "stats.csv", "figures")


def with_secondary(destination: Path, metrics: str) -> Path:
    folder = destination / "report_study"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns(*GENERATED, "__pycache__"))
    study = folder / "study.toml"
    study.write_text(study.read_text() + f"\n[analysis]\nsecondary_metrics = {metrics}\n")
    return folder


def test_plan_accepts_the_papers_acc_as_a_secondary_metric(tmp_path: Path) -> None:
    from cce_bench.config import load_study

    path = study_file(tmp_path, {"analysis": {"secondary_metrics": ["paper_accuracy"]}})
    assert load_study(path).analysis.secondary_metrics == ("paper_accuracy",)


@pytest.mark.parametrize(
    ("metrics", "why"),
    [
        (["balanced_accuracy"], "primary metric"),
        (["paper_accuracy", "top1"], "function of 'top1'"),
        (["paper_sensitivity"], "function of 'balanced_accuracy'"),
        (["top_1"], "top1"),
        (["top1", "top1"], "twice"),
    ],
)
def test_plan_refuses_a_secondary_metric_that_would_count_a_test_twice_or_is_unknown(
    tmp_path: Path, metrics: list[str], why: str
) -> None:
    from cce_bench.config import load_study

    path = study_file(tmp_path, {"analysis": {"secondary_metrics": metrics}})
    with pytest.raises(StudyConfigError, match=r"analysis\.secondary_metrics") as caught:
        load_study(path)
    assert why in str(caught.value)


def test_secondary_family_is_holm_adjusted_within_itself(tmp_path: Path) -> None:
    results = load_results(with_secondary(tmp_path, '["paper_accuracy", "macro_f1"]'))
    plan = analysis_plan(results.spec, results.backbones)
    frame = secondary_frame(
        results.runs, plan=plan, metrics=("paper_accuracy", "macro_f1"),
        baseline=results.baseline, seeds=results.seeds, arm_labels=results.arm_labels,
    )  # fmt: skip
    assert len(frame) == 2 * 2 * 2  # metrics x backbones x compared arms
    smallest = frame["t_pvalue"].min()
    assert frame["adjusted_pvalue"].min() == pytest.approx(min(1.0, 8 * smallest))
    assert set(frame["level"]) == {1 - 0.05 / 8}


def test_secondary_metrics_never_enter_the_primary_answer(tmp_path: Path) -> None:
    folder = with_secondary(tmp_path, '["paper_accuracy"]')
    text = build_report(folder).read_text()
    answer = text.split("## Answer")[1].split("\n## ")[0]
    section = text.split("## Secondary metrics (secondary, pre-registered)")[1].split("\n## ")[0]
    assert "ACC" not in answer
    assert "second family of 4 comparisons, Holm-adjusted within it" in section
    assert "ACC = 1 − 2 × (1 − top-1) / C" in section
    assert judge(load_results(folder)).plan.size == 4  # the primary family is unchanged


def test_a_plan_without_secondary_metrics_has_no_such_section(tmp_path: Path) -> None:
    folder = with_secondary(tmp_path, "[]")
    assert "## Secondary metrics" not in build_report(folder).read_text()
