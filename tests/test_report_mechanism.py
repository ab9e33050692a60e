"""The report shows CCE's mechanism: its table in plain words, its figure, and what is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cce_bench.data.labeled import HAM10000_CLASSES
from cce_bench.report import build_report
from cce_bench.report._mechanism import mechanism_section
from cce_bench.report._results import load_results

FIXTURE = Path(__file__).parent / "fixtures" / "report_study"
GENERATED = ("report.md", "runs.csv", "summary.csv", "stats.csv", "figures")


def copy_study(destination: Path, *, recorded: bool) -> Path:
    """The fixture study; with ``recorded`` every run's history carries the training tally."""
    folder = destination / "report_study"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns(*GENERATED, "__pycache__"))
    if recorded:
        runs = folder / "runs.jsonl"
        records = [json.loads(line) for line in runs.read_text().splitlines() if line.strip()]
        for record in records:
            record["history"] = [_epoch(epoch, record["arm"]) for epoch in (1, 2)]
        runs.write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def _epoch(epoch: int, arm: str) -> dict:
    size = 2.0 + epoch / 4 if arm == "cce" else 3.0
    return {
        "epoch": epoch,
        "balanced_accuracy": 0.5,
        "confusion_tau": 0.0,
        "confusion_set_size": size,
        **{f"in_confusion_set_{name}": 0.5 for name in HAM10000_CLASSES},
    }


def mechanism_part(report: str) -> str:
    return report.split("## How CCE trains")[1].split("\n## ")[0]


@pytest.fixture(scope="module")
def recorded_report(tmp_path_factory) -> Path:
    folder = copy_study(tmp_path_factory.mktemp("recorded"), recorded=True)
    build_report(folder)
    return folder


def test_report_with_a_cce_arm_explains_h_and_shows_the_figure(recorded_report: Path) -> None:
    text = (recorded_report / "report.md").read_text()
    part = mechanism_part(text)
    assert "confused set H" in part and "Blind spots" in part and "ECE" in part
    assert "![Cce mechanism](figures/cce_mechanism.png)" in text
    assert (recorded_report / "figures" / "cce_mechanism.png").is_file()


def test_mechanism_table_gives_the_last_epochs_h_size_per_arm(recorded_report: Path) -> None:
    part = mechanism_part((recorded_report / "report.md").read_text())
    assert "| resnet18 | CCE | 5 | 0.00 | 2.50 |" in part
    assert "| resnet18 | CE | 5 | 0.00 | 3.00 |" in part
    assert "not recorded" not in part


def test_cce_tau_rows_use_the_arms_own_tau(recorded_report: Path) -> None:
    runs = pd.read_csv(recorded_report / "runs.csv")
    tau = runs[(runs.backbone == "resnet18") & (runs.arm == "cce_tau")]["param_tau"].mean()
    part = mechanism_part((recorded_report / "report.md").read_text())
    assert f"| resnet18 | CCE-tau | 4 | {tau:.2f} |" in part


def test_older_runs_without_the_training_tally_still_report(tmp_path: Path) -> None:
    folder = copy_study(tmp_path, recorded=False)
    part = mechanism_part(build_report(folder).read_text())
    assert "| resnet18 | CCE | 5 | 0.00 | not recorded |" in part
    assert "28 of 28 runs were recorded before cce-bench kept H during training" in part


def test_no_mechanism_section_without_runs_to_measure(tmp_path: Path) -> None:
    results = load_results(copy_study(tmp_path, recorded=False))
    assert mechanism_section(results, pd.DataFrame()) == ""
