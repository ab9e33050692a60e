"""The report explains itself: a bottom line first, figures that show the verdicts' grounds, a
sequence plot that says when it cannot draw, a terminal table that explains its marks, and no
author-machine paths.

Reports are built in copies of ``tests/fixtures/report_study`` under ``tmp_path``; tests that
need confusion matrices or per-epoch histories write them into the copy's run records.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cce_bench.cli import app
from cce_bench.config.schema import DataSpec
from cce_bench.report import build_report
from cce_bench.report._bottom_line import bottom_line_section, low_recall, never_predicted
from cce_bench.report._families import CONFIRMATORY, analysis_plan
from cce_bench.report._more_figures import epoch_frame, explanatory_figures
from cce_bench.report._results import load_results
from cce_bench.report._sections import _data_line, portable_path
from cce_bench.report._sequential import _infinite_note

FIXTURE = Path(__file__).parent / "fixtures" / "report_study"
GENERATED = ("report.md", "runs.csv", "summary.csv", "stats.csv", "figures", "__pycache__")
NEW_FIGURES = ("forest.png", "learning_curves.png", "class_recall.png")


def copy_study(destination: Path, edit=None) -> Path:
    """A copy of the fixture study; ``edit(record)`` may change each stored run record."""
    folder = destination / "report_study"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns(*GENERATED))
    if edit is not None:
        runs = folder / "runs.jsonl"
        records = [json.loads(line) for line in runs.read_text(encoding="utf-8").splitlines()]
        for record in records:
            edit(record)
        runs.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder


def confusion_without_class_3(record: dict) -> None:
    """Every run predicts class 0 for class 3's images: class 3 is never predicted."""
    matrix = np.diag([20, 10, 30, 0, 25, 100, 5]).astype(int)
    matrix[3, 0] = 6
    if record.get("metrics"):  # failed runs have none
        record["metrics"]["confusion_matrix"] = matrix.tolist()


def two_epochs(record: dict) -> None:
    record["history"] = [
        {"epoch": 1, "train_loss": 1.5, "balanced_accuracy": 0.3},
        {"epoch": 2, "train_loss": 1.0, "balanced_accuracy": 0.4},
    ]


def comparisons_for(results, *, ci=(-0.05, -0.01), combined=(-0.07, 0.01)) -> pd.DataFrame:
    """A confirmatory row per backbone and arm, as ``judge`` would give, with chosen intervals."""
    rows = [
        {
            "backbone": backbone,
            "baseline": results.baseline,
            "arm": arm,
            "metric": "balanced_accuracy",
            "family": CONFIRMATORY,
            "verdict": "CE better",
            "mean_diff": -0.03,
            "ci_low": ci[0],
            "ci_high": ci[1],
            "combined_ci_low": combined[0],
            "combined_ci_high": combined[1],
        }
        for backbone in results.backbones
        for arm in results.arms[1:]
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    folder = copy_study(tmp_path_factory.mktemp("explained"), edit=two_epochs)
    build_report(folder)
    return folder


def test_never_predicted_finds_a_class_no_seed_predicts() -> None:
    matrix = np.array([[5, 1, 0], [2, 3, 0], [1, 1, 0]])
    assert never_predicted([matrix, matrix]) == [2]


def test_a_class_predicted_by_one_seed_is_not_never_predicted() -> None:
    never = np.array([[5, 1, 0], [2, 3, 0], [1, 1, 0]])
    once = np.array([[5, 1, 0], [2, 3, 0], [1, 0, 1]])
    assert never_predicted([never, once]) == []


def test_low_recall_lists_classes_recalled_under_5_percent() -> None:
    matrix = np.array([[50, 0, 0], [1, 49, 0], [5, 94, 1]])
    assert low_recall([matrix]) == [(2, 0.01)]


def test_bottom_line_is_the_reports_first_section(built: Path) -> None:
    text = (built / "report.md").read_text(encoding="utf-8")
    assert re.findall(r"^## (.+)$", text, flags=re.MULTILINE)[:2] == [
        "Bottom line",
        "Analysis plan",
    ]


def test_bottom_line_has_one_line_per_backbone_with_levels_chance_and_verdicts(built: Path) -> None:
    text = (built / "report.md").read_text(encoding="utf-8")
    section = text.split("## Bottom line", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert [line.split("**")[1] for line in lines] == ["resnet18", "densenet121"]
    for line in lines:
        assert re.search(r"CE \d+\.\d%, CCE \d+\.\d%, CCE-tau \d+\.\d%", line)
        assert "chance (1/C) 14.3%" in line
        assert "CCE vs CE: " in line and "CCE-tau vs CE: " in line


def test_bottom_line_names_a_class_no_arm_predicts(tmp_path: Path) -> None:
    results = load_results(copy_study(tmp_path, edit=confusion_without_class_3))
    plan = analysis_plan(results.spec, results.backbones)
    text = bottom_line_section(results, plan, comparisons_for(results))
    assert text.count("DF never predicted by any arm") == len(results.backbones)


def test_bottom_line_flags_an_interval_that_reaches_zero_with_test_sampling(tmp_path: Path) -> None:
    results = load_results(copy_study(tmp_path))
    plan = analysis_plan(results.spec, results.backbones)
    reaches = bottom_line_section(results, plan, comparisons_for(results))
    stays = bottom_line_section(results, plan, comparisons_for(results, combined=(-0.07, -0.001)))
    assert "reaches 0 once test-set sampling is added" in reaches
    assert "reaches 0" not in stays


def test_epoch_frame_reads_training_loss_and_metric_per_epoch(tmp_path: Path) -> None:
    results = load_results(copy_study(tmp_path, edit=two_epochs))
    frame = epoch_frame(results, "balanced_accuracy")
    assert sorted(frame["epoch"].unique()) == [1, 2]
    assert set(frame["train_loss"]) == {1.5, 1.0}
    assert set(frame["value"]) == {0.3, 0.4}


def test_explanatory_figures_are_drawn_for_a_study_with_comparisons(tmp_path: Path) -> None:
    results = load_results(copy_study(tmp_path, edit=two_epochs))
    plan = analysis_plan(results.spec, results.backbones)
    paths = explanatory_figures(results, plan, comparisons_for(results), tmp_path / "figures")
    assert [path.name for path in paths] == list(NEW_FIGURES)
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in paths)


def test_report_embeds_forest_learning_curves_and_class_recall(built: Path) -> None:
    text = (built / "report.md").read_text(encoding="utf-8")
    for name in NEW_FIGURES:
        assert f"(figures/{name})" in text
        assert (built / "figures" / name).is_file()


def test_infinite_confidence_sequence_note_names_its_seeds() -> None:
    assert "(−∞, ∞)\nat 3, 4 seeds" in _infinite_note([3, 4, 5], finite=[2])


def test_terminal_table_explains_its_dagger(built: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(built)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert " †" in result.output
    assert "† fewer than 5 paired seeds" in result.output


def test_absolute_paths_show_only_their_last_part() -> None:
    assert portable_path(Path("/home/someone/data/ham10000")) == "…/ham10000"
    assert portable_path(Path("weights/w.safetensors")) == "weights/w.safetensors"


def test_study_section_shows_the_data_folder_without_its_machine_path() -> None:
    data = DataSpec(source="ham10000", path=Path("/home/someone/ham10000"), image_size=64)
    line = _data_line(data)
    assert "`…/ham10000`" in line
    assert "/home/someone" not in line


def test_bottom_line_marks_a_verdict_that_rests_on_normality() -> None:
    """The committed example's two "CE better" verdicts have 5 seeds, fewer than the 8 with which
    a sign-flip test could reach alpha/4 (the rebuild test holds the file to its runs)."""
    report = Path(__file__).resolve().parents[1] / "docs" / "example-report" / "report.md"
    bottom = report.read_text().split("## Bottom line")[1].split("\n## ")[0]
    assert bottom.count("rests on normality (with 5 seeds no distribution-free test") == 2
    assert "CCE-tau vs CE: rests on normality" not in bottom  # inconclusive: nothing rests
