"""`cce-bench compare A B`: two protocols side by side, refused when they differ in more."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from cce_bench.cli import app, main
from cce_bench.report import StudiesDifferError, compare_studies
from cce_bench.report._compare import welch_interval

FIXTURE = Path(__file__).parent / "fixtures" / "report_study"
GENERATED = ("report.md", "runs.csv", "summary.csv", "stats.csv", "figures")
#: What protocol B adds to every balanced accuracy of the fixture's runs.
SHIFT = 0.05


def results_folder(destination: Path, name: str, *, split: str, shift: float = 0.0,
                   study_edit: tuple[str, str] | None = None) -> Path:  # fmt: skip
    """A copy of the fixture study under ``name``, with its split and balanced accuracies set."""
    folder = destination / name
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns(*GENERATED, "__pycache__"))
    study = folder / "study.toml"
    text = study.read_text().replace('name = "report_study"', f'name = "{name}"')
    text = text.replace('split = "lesion"', f'split = "{split}"')
    if study_edit:
        text = text.replace(*study_edit)
    study.write_text(text)
    runs = folder / "runs.jsonl"
    records = [json.loads(line) for line in runs.read_text().splitlines() if line.strip()]
    for record in records:
        if (record.get("metrics") or {}).get("balanced_accuracy") is not None:
            record["metrics"]["balanced_accuracy"] += shift
    runs.write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compare")
    a = results_folder(root, "paper-split", split="paper")
    b = results_folder(root, "lesion-split", split="lesion", shift=SHIFT)
    return a, b


@pytest.fixture(scope="module")
def page(pair) -> str:
    return compare_studies(*pair)


def test_welch_interval_is_scipys_two_sample_interval() -> None:
    a, b = np.array([0.50, 0.52, 0.55, 0.49]), np.array([0.60, 0.58, 0.66, 0.61, 0.57])
    diff, low, high = welch_interval(a, b)
    reference = scipy_stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(b.mean() - a.mean())
    assert (low, high) == pytest.approx((reference.low, reference.high))


def test_page_gives_each_arms_level_in_both_protocols_and_their_difference(page: str) -> None:
    levels = page.split("## Absolute levels per arm")[1].split("\n## ")[0]
    row = next(
        line for line in levels.splitlines() if "| Balanced accuracy | resnet18 | CE |" in line
    )
    # Every run of B is 5 pp higher; both sides have sd 11.66 pp over 5 seeds, so Welch's
    # interval is 5 ± t(0.975, 8) * sqrt(2 * 11.66^2 / 5) = 5 ± 17.0.
    assert row.endswith("| +5.00 | [-12.00, +22.00] |")


def test_page_shows_how_an_arms_gap_to_the_baseline_moves(page: str) -> None:
    gaps = page.split("in each protocol")[1].split("\n## ")[0]
    row = next(
        line for line in gaps.splitlines() if "| Balanced accuracy | resnet18 | CCE − CE" in line
    )
    assert "| +0.00 |" in row  # the same shift on both arms leaves the gap unchanged


def test_page_repeats_both_studies_verdicts(page: str) -> None:
    assert "## Verdicts of A (`paper-split`, its own plan)" in page
    assert "## Verdicts of B (`lesion-split`, its own plan)" in page
    assert page.count("| Verdict |") == 2


def test_studies_that_differ_in_more_than_the_split_are_refused(tmp_path: Path) -> None:
    a = results_folder(tmp_path, "a", split="paper")
    b = results_folder(tmp_path, "b", split="lesion", study_edit=("epochs = 4", "epochs = 6"))
    with pytest.raises(StudiesDifferError, match=r"--allow-diff train\.epochs"):
        compare_studies(a, b)
    assert "train.epochs: 4 -> 6" in compare_studies(a, b, allow_diff=["train.epochs"])


def test_cli_writes_the_page_with_out_and_refuses_with_exit_code_2(tmp_path: Path, pair) -> None:
    out = tmp_path / "compare.md"
    result = CliRunner().invoke(app, ["compare", *map(str, pair), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("# Protocols compared")
    b = results_folder(tmp_path, "b", split="lesion", study_edit=("epochs = 4", "epochs = 6"))
    with pytest.raises(SystemExit) as refused:
        main(["compare", str(pair[0]), str(b)])
    assert refused.value.code == 2


def test_compare_help_works() -> None:
    result = CliRunner().invoke(app, ["compare", "--help"])
    assert result.exit_code == 0 and "--allow-diff" in result.output
