"""`cce-bench status` reads a results folder without changing a byte of it, and counts the
trials of a folder that was renamed or moved after its study ran."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cce_bench.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example-report"


@pytest.fixture
def moved_example(tmp_path) -> Path:
    folder = tmp_path / "moved" / "renamed-example"
    shutil.copytree(EXAMPLE, folder)
    return folder


def _status_json(folder: Path) -> dict:
    result = CliRunner().invoke(app, ["status", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_status_counts_the_trials_of_a_renamed_folder(moved_example):
    data = _status_json(moved_example)
    assert data["totals"]["trials"] == 18
    assert all(arm["trials"] == 3 for arm in data["arms"])


def test_status_leaves_the_optuna_database_byte_identical(moved_example):
    before = (moved_example / "optuna.db").read_bytes()
    _status_json(moved_example)
    assert (moved_example / "optuna.db").read_bytes() == before
    assert sorted(p.name for p in moved_example.glob("optuna.db*")) == ["optuna.db"]


def test_status_does_not_know_the_elapsed_time_of_a_folder(moved_example):
    data = _status_json(moved_example)
    assert data["elapsed_s"] is None and data["eta_s"] is None


def test_status_gives_best_in_the_reports_unit(moved_example):
    """The report's tuning table shows the example's best validation balanced accuracy in %."""
    data = _status_json(moved_example)
    best = {(arm["backbone"], arm["arm"]): arm["best"] for arm in data["arms"]}
    assert data["unit"] == "%"
    report = (EXAMPLE / "report.md").read_text()
    assert f"| {best['resnet10t', 'ce']:.2f} |" in report.split("## Tuning")[1]


def test_status_on_a_write_ahead_logged_database_keeps_its_mode_and_leaves_no_wal(moved_example):
    """A driver leaves optuna.db in WAL mode; reading it must neither switch the mode back nor
    leave the -wal/-shm files an open WAL database has."""
    import sqlite3

    connection = sqlite3.connect(moved_example / "optuna.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    before = (moved_example / "optuna.db").read_bytes()
    assert _status_json(moved_example)["totals"]["trials"] == 18
    assert (moved_example / "optuna.db").read_bytes() == before
    assert sorted(p.name for p in moved_example.glob("optuna.db*")) == ["optuna.db"]
