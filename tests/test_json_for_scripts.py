"""`report --json`, `status --json` and `data check --json` are for scripts: versioned, typed,
snake_case, validated against the JSON Schemas under docs/, and they write nothing."""

import json
import os
import re
import shutil
import stat
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from cce_bench.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLE = DOCS / "example-report"
PRETRAINED = DOCS / "example-report-pretrained"
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def _schema(name: str) -> dict:
    return json.loads((DOCS / name).read_text())


def _invoke_json(argv: list[str], code: int = 0) -> dict:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def _keys(value, path="") -> list[str]:
    """Every object key below ``value``, except those naming data (classes, image sizes)."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            if key in ("class_counts", "image_sizes"):
                continue
            found += [key, *_keys(item)]
        return found
    if isinstance(value, list):
        return [key for item in value for key in _keys(item)]
    return []


@pytest.fixture(scope="module")
def example_json() -> dict:
    return _invoke_json(["report", str(EXAMPLE), "--json"])


@pytest.fixture(scope="module")
def pretrained_json() -> dict:
    return _invoke_json(["report", str(PRETRAINED), "--json"])


def test_report_json_validates_against_its_schema(example_json, pretrained_json):
    schema = _schema("report.schema.json")
    jsonschema.validate(example_json, schema)
    jsonschema.validate(pretrained_json, schema)
    assert example_json["schema_version"] == 1


def test_report_json_keys_are_snake_case(example_json, pretrained_json):
    keys = set(_keys(example_json)) | set(_keys(pretrained_json))
    assert keys and all(SNAKE.match(key) for key in keys), sorted(keys)


def test_report_json_numbers_are_numbers_at_full_precision(example_json):
    stats = {  # stats.csv holds the full-precision analysis the report formats
        (row["backbone"], row["arm"], row["metric"]): row
        for row in __import__("pandas").read_csv(EXAMPLE / "stats.csv").to_dict("records")
    }
    row = next(r for r in example_json["comparisons"] if r["family"] == "confirmatory")
    assert isinstance(row["n"], int) and isinstance(row["mean_diff"], float)
    expected = stats[row["backbone"], row["arm"], row["metric"]]["mean_diff"]
    assert row["mean_diff"] == pytest.approx(expected, rel=1e-12)
    assert repr(row["mean_diff"]) != f"{row['mean_diff']:.2f}"


def test_report_json_states_the_plan(example_json):
    plan = example_json["plan"]
    assert plan["design"] == "fixed" and plan["alpha"] == 0.05 and plan["family_size"] == 4
    assert isinstance(plan["margin"], float)


def test_report_json_has_every_family(example_json):
    families = {row["family"] for row in example_json["comparisons"]}
    assert {"confirmatory", "exploratory"} <= families
    assert sum(r["family"] == "confirmatory" for r in example_json["comparisons"]) == 4


def test_report_json_gives_the_anytime_looks(pretrained_json):
    confirmatory = [r for r in pretrained_json["comparisons"] if r["family"] == "confirmatory"]
    assert pretrained_json["plan"]["design"] == "anytime"
    assert all(row["anytime"]["looks"] for row in confirmatory)
    look = confirmatory[0]["anytime"]["looks"][-1]
    assert look["e_value"] == confirmatory[0]["e_value"]
    assert {"cs_low", "cs_high", "seeds"} <= set(look)


def test_report_json_writes_nothing(tmp_path):
    folder = tmp_path / "example"
    shutil.copytree(EXAMPLE, folder)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    _invoke_json(["report", str(folder), "--json"])
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_report_json_works_on_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro" / "example"
    shutil.copytree(EXAMPLE, folder)
    paths = [folder, *folder.rglob("*")]
    for path in paths:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user (root) can write read-only folders")
        data = _invoke_json(["report", str(folder), "--json"])
    finally:
        for path in paths:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert data["comparisons"]


def test_report_json_analyses_the_runs_once(monkeypatch):
    import cce_bench.report._json as report_json

    calls = []
    judge = report_json.judge
    monkeypatch.setattr(report_json, "judge", lambda results: calls.append(1) or judge(results))
    _invoke_json(["report", str(EXAMPLE), "--json"])
    assert len(calls) == 1


def test_status_json_validates_against_its_schema(tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(EXAMPLE, folder)
    data = _invoke_json(["status", str(folder), "--json"])
    jsonschema.validate(data, _schema("status.schema.json"))
    assert all(SNAKE.match(key) for key in _keys(data))


def test_data_check_json_validates_against_its_schema(tmp_path):
    from cce_bench.data.synthetic import write_synthetic_dataset

    folder = write_synthetic_dataset(tmp_path / "synth", 40, 16, seed=0)
    data = _invoke_json(["data", "check", str(folder), "--json"])
    jsonschema.validate(data, _schema("data-check.schema.json"))
    assert data["ok"] and data["images"] == data["images_found"] == 40


def test_data_check_counts_the_images_found_when_one_of_200_is_missing(tmp_path):
    from cce_bench.data.synthetic import write_synthetic_dataset

    folder = write_synthetic_dataset(tmp_path / "synth", 200, 16, seed=0)
    next(p for p in sorted(folder.rglob("*.jpg"))).unlink()
    data = _invoke_json(["data", "check", str(folder), "--json"], code=2)
    jsonschema.validate(data, _schema("data-check.schema.json"))
    assert (data["images"], data["images_found"], data["ok"]) == (200, 199, False)
    assert sum(data["image_sizes"].values()) == 199
    table = CliRunner().invoke(app, ["data", "check", str(folder)], terminal_width=120)
    assert re.search(r"image files found\W+199", table.stdout)


def test_the_report_prints_a_dashboard_command_for_the_folder_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(EXAMPLE, tmp_path / "moved" / "renamed")
    result = CliRunner().invoke(app, ["report", "moved/renamed"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "cce-bench dashboard moved/renamed" in result.stdout
    hint = next(line for line in (tmp_path / "moved/renamed/report.md").read_text().splitlines()
                if "cce-bench dashboard" in line)  # fmt: skip
    assert "results/" not in hint and "`cce-bench dashboard .`" in hint
