"""The generated report: golden markdown, byte-identical rebuilds, and honest gaps.

The committed folder ``tests/fixtures/report_study`` is a tiny study's results (2 backbones x
3 arms x 5 seeds, one failed run, one diverged run, one retried run, a small optuna.db); see its
``regenerate.py``. Tests build reports in copies under ``tmp_path``, never in the fixture.
Regenerate the golden file after an intended change with
``UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_report.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cce_bench import stats
from cce_bench.cli import app
from cce_bench.data.labeled import CONFUSED_PAIRS, HAM10000_CLASSES
from cce_bench.errors import ResultsError
from cce_bench.report import build_report, significance_table
from cce_bench.report._build import significance_of
from cce_bench.report._evidence import answer_section
from cce_bench.report._results import load_results
from cce_bench.report._sections import external_section, table1_section
from cce_bench.report._tables import (
    FAMILY_METRICS,
    mcnemar_frame,
)

FIXTURE = Path(__file__).parent / "fixtures" / "report_study"
GOLDEN = Path(__file__).parent / "golden" / "report.md"
GENERATED = ("report.md", "runs.csv", "summary.csv", "stats.csv", "figures")


def copy_study(destination: Path) -> Path:
    """A fresh copy of the fixture folder named ``report_study`` (the name shows in the report)."""
    folder = destination / "report_study"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns(*GENERATED, "__pycache__"))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every generated file's bytes, keyed by its path relative to the folder."""
    files = [folder / name for name in GENERATED[:-1]] + sorted((folder / "figures").glob("*"))
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in files}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The fixture study's report, built once for the tests that only read it."""
    folder = copy_study(tmp_path_factory.mktemp("built"))
    build_report(folder)
    return folder


@pytest.fixture(scope="module")
def report_text(built: Path) -> str:
    return (built / "report.md").read_text(encoding="utf-8")


def test_report_matches_golden_file(report_text: str):
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(report_text, encoding="utf-8")
    assert report_text == GOLDEN.read_text(encoding="utf-8")


def test_cli_rebuild_gives_byte_identical_files_and_prints_table(built: Path):
    before = snapshot(built)
    result = CliRunner().invoke(app, ["report", str(built)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "report.md" in result.output
    assert "densenet121: CCE vs CE" in result.output
    assert snapshot(built) == before


def test_report_has_every_section(report_text: str):
    headings = re.findall(r"^## (.+)$", report_text, flags=re.MULTILINE)
    assert headings == [
        "Study",
        "Answer",
        "Runs that did not complete",
        "Table 1 (the paper's format)",
        "Clinical metrics",
        "Significance",
        "Confused pairs",
        "Tuning",
        "Figures",
        "Files",
    ]


def test_failed_and_diverged_runs_are_listed_not_dropped(report_text: str):
    assert "| resnet18 | CCE-tau | 4 | failed | WorkerCrashedError" in report_text
    assert "| densenet121 | CCE | 3 | diverged | non-finite loss at step 212 |" in report_text
    assert "1 earlier attempt(s) were superseded" in report_text


def test_dropped_seed_is_explained_in_pairing(report_text: str):
    assert "resnet18, CCE-tau vs CE: 4 paired seeds; dropped 1: seed 4 (cce_tau failed)" in (
        report_text
    )


def test_embedded_figures_exist(built: Path, report_text: str):
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report_text)
    assert len(links) == 7
    assert all((built / link).is_file() for link in links)


def test_runs_csv_has_one_row_per_run_including_failed(built: Path):
    runs = pd.read_csv(built / "runs.csv")
    assert len(runs) == 2 * 3 * 5
    assert sorted(runs["outcome"].unique()) == ["completed", "diverged", "failed"]


def test_stats_csv_holm_covers_the_whole_family(built: Path):
    table = pd.read_csv(built / "stats.csv")
    assert len(table) == 2 * 2 * len(FAMILY_METRICS)
    expected = stats.holm(table["t_pvalue"].to_numpy(float))
    np.testing.assert_allclose(table["holm_pvalue"], expected, rtol=1e-12)


def test_answer_counts_only_the_comparisons_holm_adjusts():
    results = load_results(FIXTURE)
    significance = significance_of(results)
    significance.loc[significance.index[:3], "t_pvalue"] = np.nan  # e.g. constant differences
    tested = int(np.isfinite(significance["t_pvalue"]).sum())
    text = answer_section(results, significance)
    assert f"Holm over the {tested} comparisons" in text
    assert f"{len(significance)} comparisons" not in text.split("\n")[2]


def test_verdict_names_the_arm_in_the_metric_direction(built: Path):
    table = pd.read_csv(built / "stats.csv").set_index(["backbone", "arm", "metric"])
    lower_error = table.loc[("densenet121", "cce", "pair_error_nv_mel")]
    assert lower_error["mean_diff"] < 0
    assert lower_error["verdict"] == "CCE better"


def test_significance_table_for_the_cli_is_formatted(built: Path):
    table = significance_table(built)
    assert {"Comparison", "p (Holm)", "Verdict"} <= set(table.columns)
    assert set(table["Comparison"]) == {"CCE vs CE", "CCE-tau vs CE"}
    assert table["n"].str.endswith("†").any()  # the pairs that lost a seed are underpowered


def keep_one_backbone(folder: Path, backbone: str = "resnet18") -> None:
    """Trim a copied study to one backbone: a third of the figures, for a faster build."""
    study = folder / "study.toml"
    text = study.read_text(encoding="utf-8")
    study.write_text(text.replace('"resnet18", "densenet121"', f'"{backbone}"'), encoding="utf-8")
    runs = folder / "runs.jsonl"
    lines = runs.read_text(encoding="utf-8").splitlines(keepends=True)
    runs.write_text("".join(x for x in lines if f'"backbone": "{backbone}"' in x), encoding="utf-8")


def test_missing_optuna_storage_reports_no_tuning_data(tmp_path: Path):
    folder = copy_study(tmp_path)
    keep_one_backbone(folder)
    (folder / "optuna.db").unlink()
    text = build_report(folder).read_text(encoding="utf-8")
    assert "No tuning data (no Optuna storage in the folder)." in text
    assert not (folder / "optuna.db").exists()


def test_ham10000_study_shows_the_papers_published_values(tmp_path: Path):
    folder = copy_study(tmp_path)
    study = folder / "study.toml"
    study.write_text(study.read_text().replace('"synthetic"', '"ham10000"'), encoding="utf-8")
    section = table1_section(load_results(folder))
    assert "| densenet121 | CE (paper, published) | — | 96.84 | 78.49 | 85.43 | 96.76 |" in section
    assert "resnet18 | CE (paper" not in section  # the paper has no ResNet18
    assert 'Rows marked "paper, published"' in section


def test_ham10000_study_without_the_papers_backbones_says_no_published_rows(tmp_path: Path):
    folder = copy_study(tmp_path)
    keep_one_backbone(folder)  # resnet18: not one of the paper's four
    study = folder / "study.toml"
    study.write_text(study.read_text().replace('"synthetic"', '"ham10000"'), encoding="utf-8")
    section = table1_section(load_results(folder))
    assert "(paper, published)" not in section
    assert "none of this study's backbones, so no published rows are shown" in section


def test_external_test_metrics_get_their_own_table(tmp_path: Path):
    folder = copy_study(tmp_path)
    runs = folder / "runs.jsonl"
    records = [json.loads(line) for line in runs.read_text().splitlines()]
    for record in records:
        if record["metrics"]:
            record["external_metrics"] = {"top1": 0.5, "balanced_accuracy": 0.25}
    runs.write_text("".join(json.dumps(record) + "\n" for record in records))
    section = external_section(load_results(folder))
    assert section.startswith("## External test set")
    assert "| resnet18 | CE | 5 | — | — | — | — | 50.00 ± 0.00 | 25.00 ± 0.00 |" in section


def test_study_without_external_test_has_no_external_section():
    assert external_section(load_results(FIXTURE)) == ""


def one_hot(labels: list[int], num_classes: int = 7) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]


def test_mcnemar_on_a_pair_counts_only_swaps_within_the_pair():
    nv, mel, bkl = HAM10000_CLASSES.index("nv"), HAM10000_CLASSES.index("mel"), 2
    ids = np.array([f"img{i}" for i in range(8)])
    y_true = np.array([nv] * 6 + [bkl] * 2)
    confused = (ids, y_true, one_hot([mel] * 6 + [nv] * 2))  # 6 NV taken for MEL, 2 BKL wrong
    correct = (ids[::-1], y_true[::-1], one_hot([nv] * 6 + [bkl] * 2)[::-1])  # other order
    frame = mcnemar_frame(
        [("net", "ce", "cce")],
        {("net", "cce"): [0]},
        lambda backbone, arm, seed: confused if arm == "ce" else correct,
        class_names=HAM10000_CLASSES,
        confused_pairs=CONFUSED_PAIRS,
    ).set_index("scope")
    assert frame.loc["NV↔MEL", "combined_pvalue"] == pytest.approx(2 * 0.5**6)
    assert frame.loc["all test images", "seed_pvalues"] == [pytest.approx(2 * 0.5**8)]
    assert frame.loc["AKIEC↔BCC", "seeds"] == 0  # the pair has no images


def test_mcnemar_skips_a_seed_whose_predictions_are_missing():
    results = load_results(FIXTURE)

    def load(backbone, arm, seed):
        record = results.latest_record(backbone, arm, seed)
        return None if seed == 0 else results.store.load_predictions(record)

    frame = mcnemar_frame(
        [("resnet18", "ce", "cce")],
        {("resnet18", "cce"): [0, 1, 2]},
        load,
        class_names=results.class_names,
        confused_pairs=CONFUSED_PAIRS,
    )
    assert set(frame["seeds"]) == {2}


def test_folder_without_runs_raises_results_error(tmp_path: Path):
    (tmp_path / "study.toml").write_text('name = "empty"\n', encoding="utf-8")
    with pytest.raises(ResultsError, match="no evaluation run"):
        build_report(tmp_path)


def test_significance_as_dict_is_the_cli_table_as_json(built: Path):
    from cce_bench.report import significance_as_dict

    table = significance_table(built)
    data = json.loads(json.dumps(significance_as_dict(built / "report.md", table)))
    assert len(data["comparisons"]) == len(table)
    assert {row["Comparison"] for row in data["comparisons"]} == {"CCE vs CE", "CCE-tau vs CE"}
    assert data["report"].endswith("report.md") and data["alpha"] == 0.05
