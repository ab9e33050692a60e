"""The generated report: golden markdown, byte-identical rebuilds, and honest gaps.

The committed folder ``tests/fixtures/report_study`` is a tiny study's results (2 backbones x
3 arms x 5 seeds, one failed run, one diverged run, one retried run, a small optuna.db); see its
``regenerate.py``. Tests build reports in copies under ``tmp_path``, never in the fixture.
Regenerate the golden file after an intended change with
``UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_report.py``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from cce_bench import stats
from cce_bench.cli import app
from cce_bench.data.labeled import CONFUSED_PAIRS, HAM10000_CLASSES
from cce_bench.errors import ResultsError
from cce_bench.metrics import evaluate_predictions
from cce_bench.report import build_report, significance_table
from cce_bench.report._answer import answer_section, looks_section, plan_section
from cce_bench.report._build import judge
from cce_bench.report._evidence import recall_section
from cce_bench.report._families import AnalysisPlan, comparison_frame
from cce_bench.report._results import load_results
from cce_bench.report._sections import external_section, study_section, table1_section
from cce_bench.report._tables import REPORT_METRICS, mcnemar_frame
from cce_bench.report._test_sampling import (
    lesion_clusters,
    resample_weights,
    weighted_metrics,
)
from cce_bench.study.budget_log import BUDGET_LOG_FILE, budget_changes

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


def test_report_has_every_section_with_the_bottom_line_then_the_plan_first(report_text: str):
    headings = re.findall(r"^## (.+)$", report_text, flags=re.MULTILINE)
    assert headings == [
        "Bottom line",
        "Analysis plan",
        "Answer",
        "Study",
        "Looks at the data",
        "Runs that did not complete",
        "Table 1 (the paper's format)",
        "Clinical metrics",
        "Confirmatory family",
        "Exploratory comparisons",
        "Per-class recall (exploratory)",
        "Confused pairs (exploratory)",
        "How CCE trains (the mechanism, exploratory)",
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
    # 5 paired-seed plots, confusion, tuning history, CCE mechanism, forest, learning curves, recall
    assert len(links) == 11
    assert all((built / link).is_file() for link in links)


def test_runs_csv_has_one_row_per_run_including_failed(built: Path):
    runs = pd.read_csv(built / "runs.csv")
    assert len(runs) == 2 * 3 * 5
    assert sorted(runs["outcome"].unique()) == ["completed", "diverged", "failed"]


@pytest.fixture(scope="module")
def judged():
    """The fixture study judged under its plan (the defaults: balanced accuracy, both arms)."""
    results = load_results(FIXTURE)
    return results, judge(results)


def rows(frame: pd.DataFrame, family: str) -> pd.DataFrame:
    return frame[frame["family"] == family]


# -- 1. the analysis plan --------------------------------------------------------------------
def test_plan_names_the_metric_family_alpha_and_margin(report_text: str):
    plan = report_text.split("## Answer")[0]
    assert "| Primary metric | Balanced accuracy on the test split |" in plan
    assert '= 4 paired t-tests over seeds (`analysis.test` = "t"), family-wise error' in plan
    assert "0.01 (±1.00 pp): the smallest difference that matters" in plan
    assert "so it ran under the plan's defaults" in plan  # the fixture's study.toml has none


def test_a_stated_plan_with_one_comparison_makes_a_family_of_two(tmp_path: Path):
    folder = copy_study(tmp_path)
    study = folder / "study.toml"
    plan = '[analysis]\nprimary_metric = "top1"\ncomparisons = ["cce"]\nmargin = 0.02\n\n'
    study.write_text(study.read_text().replace("[resources]", plan + "[resources]"))
    results = load_results(folder)
    answer = judge(results)
    confirmatory = rows(answer.comparisons, "confirmatory")
    found = confirmatory[["backbone", "arm", "metric"]].to_numpy().tolist()
    assert found == [
        ["resnet18", "cce", "top1"],
        ["densenet121", "cce", "top1"],
    ]
    section = plan_section(results, answer.plan, stated=True)
    assert "Fixed in the study file (`[analysis]`) before any run" in section
    assert "= 2 paired t-tests" in section and "simultaneous 97.5% paired t intervals" in section


# -- 2. two families -------------------------------------------------------------------------
def test_confirmatory_family_is_backbones_times_comparisons_with_bonferroni(judged):
    _, answer = judged
    confirmatory = rows(answer.comparisons, "confirmatory")
    assert len(confirmatory) == 2 * 2
    assert set(confirmatory["metric"]) == {"balanced_accuracy"}
    expected = np.minimum(1.0, 4 * confirmatory["t_pvalue"].to_numpy(float))
    np.testing.assert_allclose(confirmatory["adjusted_pvalue"], expected, rtol=1e-12)


def test_exploratory_family_is_benjamini_yekutieli_over_everything_else(judged):
    _, answer = judged
    exploratory = rows(answer.comparisons, "exploratory")
    tested = len(REPORT_METRICS) - 1 - 3 + len(HAM10000_CLASSES)  # less primary and derived
    assert len(exploratory) == 2 * 2 * tested
    expected = stats.benjamini_yekutieli(exploratory["t_pvalue"].to_numpy(float))
    np.testing.assert_allclose(exploratory["adjusted_pvalue"], expected, rtol=1e-12)


def test_derived_metrics_are_shown_but_not_tested(judged):
    _, answer = judged
    derived = rows(answer.comparisons, "derived")
    assert set(derived["metric"]) == {
        "paper_accuracy",
        "paper_sensitivity",
        "melanoma_sensitivity",
    }
    assert derived["t_pvalue"].isna().all() and derived["adjusted_pvalue"].isna().all()
    assert derived["mean_diff"].notna().all()
    assert derived["verdict"].str.startswith("not tested: a function of").all()


def test_every_exploratory_table_labels_each_row_exploratory(report_text: str):
    for section in ("Exploratory comparisons", "Per-class recall", "Confused pairs"):
        text = report_text.split(f"## {section}")[1].split("\n## ")[0]
        tables = [t for t in re.split(r"\n\n", text) if t.startswith("| Backbone | Comparison")]
        assert tables, section
        for table in tables:
            for line in table.splitlines()[2:]:
                assert "| exploratory |" in line or "| derived (not tested) |" in line


# -- 3. four-outcome verdicts with simultaneous intervals --------------------------------------
def plan_of_one(margin: float = 0.01) -> AnalysisPlan:
    return AnalysisPlan("balanced_accuracy", ("cce",), ("net",), alpha=0.05, margin=margin)


def seed_runs(baseline: list[float], other: list[float]) -> pd.DataFrame:
    """A runs frame of one backbone, two arms, one metric."""
    records = [
        {"backbone": "net", "arm": arm, "seed": seed, "outcome": "completed",
         "balanced_accuracy": value}
        for arm, values in (("ce", baseline), ("cce", other))
        for seed, value in enumerate(values)
    ]  # fmt: skip
    return pd.DataFrame(records)


def judge_one(baseline: list[float], other: list[float]) -> pd.Series:
    frame = comparison_frame(
        seed_runs(baseline, other),
        plan=plan_of_one(),
        baseline="ce",
        arms=("ce", "cce"),
        seeds=range(len(baseline)),
        class_names=(),
        arm_labels={"ce": "CE", "cce": "CCE"},
    )
    return frame[frame["family"] == "confirmatory"].iloc[0]


def test_differences_well_inside_the_margin_are_equivalent():
    ce = [0.70, 0.71, 0.69, 0.72, 0.70, 0.68]
    cce = list(np.add(ce, [0.001, -0.001, 0.002, 0.0, -0.002, 0.001]))
    row = judge_one(ce, cce)
    assert row["verdict"] == "equivalent within ±1.00 pp"
    tost = stats.tost_paired(ce, cce, 0.01)["p_value"]
    assert row["tost_adjusted_pvalue"] == pytest.approx(2 * tost)  # each side at alpha / 2m


def test_noisy_differences_are_inconclusive_and_a_clear_one_names_the_winner():
    ce = [0.70, 0.71, 0.69, 0.72, 0.70]
    assert judge_one(ce, [0.74, 0.66, 0.73, 0.69, 0.71])["verdict"] == "inconclusive"
    assert judge_one(ce, [v - 0.05 for v in ce[:-1]] + [0.66])["verdict"] == "CE better"


def test_simultaneous_interval_is_the_bonferroni_t_interval(judged):
    results, answer = judged
    row = rows(answer.comparisons, "confirmatory").iloc[0]  # resnet18, CCE vs CE
    d = np.array(results.runs.query("backbone == 'resnet18' and arm == 'cce'")["balanced_accuracy"])
    d = d - np.array(
        results.runs.query("backbone == 'resnet18' and arm == 'ce'")["balanced_accuracy"]
    )
    expected = scipy_stats.ttest_1samp(d, 0.0).confidence_interval(1 - 0.05 / 4)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.low, expected.high))
    assert row["level"] == pytest.approx(0.9875)


def test_every_verdict_stands_beside_its_simultaneous_interval(judged, report_text: str):
    results, answer = judged
    text = answer_section(results, answer.plan, answer.comparisons)
    for line in (line for line in text.splitlines() if line.startswith("- **")):
        verdict = line.split("**: ")[1].split(". ")[0].split(" (rests on normality")[0]
        assert verdict in {"CCE better", "CE better", "CCE-tau better", "inconclusive"}
        assert "98.75% CI [" in line
    assert "no evidence" not in report_text


# -- 4. test-set bootstrap -------------------------------------------------------------------
def fixture_run(backbone: str = "densenet121", arm: str = "cce", seed: int = 0):
    results = load_results(FIXTURE)
    ids, y_true, proba = results.store.load_predictions(results.latest_record(backbone, arm, seed))
    return results, ids, y_true, proba


def test_unit_weights_reproduce_the_stored_metrics_of_a_run():
    results, ids, y_true, proba = fixture_run()
    clusters = lesion_clusters(results.manifest, ids, y_true)
    order = np.argsort(ids, kind="stable")
    got = weighted_metrics(
        np.ones((1, ids.size)), clusters.y_true, proba[order], results.class_names
    )
    stored = evaluate_predictions(y_true, proba, results.class_names)
    for metric, values in got.items():
        name = metric.removeprefix("recall_")
        expected = stored["per_class_recall"][name] if metric != name else stored[metric]
        assert values[0] == pytest.approx(expected, nan_ok=True), metric


def test_resamples_draw_whole_lesions_within_each_class():
    results, ids, y_true, _ = fixture_run()
    clusters = lesion_clusters(results.manifest, ids, y_true)
    assert clusters.by_lesion and clusters.lesions == 82
    weights = resample_weights(clusters, 200)
    for lesion in np.unique(clusters.clusters):  # one weight per lesion: whole lesions drawn
        members = clusters.clusters == lesion
        assert (weights[:, members] == weights[:, members][:, :1]).all()
    for label in np.unique(clusters.y_true):  # each class keeps its number of lesions
        lesions = np.unique(clusters.clusters[clusters.y_true == label])
        first = [np.flatnonzero(clusters.clusters == lesion)[0] for lesion in lesions]
        assert (weights[:, first].sum(axis=1) == lesions.size).all()
    np.testing.assert_array_equal(weights, resample_weights(clusters, 200))  # seeded


def test_combined_interval_adds_test_sampling_variance_to_the_seeds(judged):
    _, answer = judged
    for row in rows(answer.comparisons, "confirmatory").itertuples():
        se = math.sqrt(row.sd_diff**2 / row.n + row.test_se**2)
        half = scipy_stats.t.isf(0.05 / 4 / 2, row.n - 1) * se
        assert (row.combined_ci_low, row.combined_ci_high) == pytest.approx(
            (row.mean_diff - half, row.mean_diff + half)
        )
        assert row.test_se >= 0
        assert row.combined_ci_high - row.combined_ci_low >= row.ci_high - row.ci_low


def test_report_says_what_each_interval_answers(report_text: str):
    assert "**CI, seeds** answers: how far would the difference move" in report_text
    assert "**CI, seeds + test set** answers: how far would it move with new seeds" in report_text
    assert "1000 bootstrap resamples of the 122 test images (82 lesions, resampled by lesion" in (
        report_text
    )


def test_without_lesion_ids_the_test_images_are_resampled_one_by_one(tmp_path: Path):
    results, ids, y_true, _ = fixture_run()
    manifest = json.loads(json.dumps(results.manifest))
    del manifest["parts"]["test"]["lesion_ids"]
    clusters = lesion_clusters(manifest, ids, y_true)
    assert not clusters.by_lesion and clusters.lesions == ids.size


# -- 5. McNemar evidence, directional --------------------------------------------------------
def test_signed_stouffer_lets_seeds_that_disagree_cancel():
    ids = np.array([f"img{i}" for i in range(12)])
    y_true = np.zeros(12, dtype=int)
    right, wrong = one_hot([0] * 12), one_hot([1] * 12)
    runs = {  # seed 0: only the other arm is right; seed 1: only the baseline is
        ("ce", 0): (ids, y_true, wrong), ("cce", 0): (ids, y_true, right),
        ("ce", 1): (ids, y_true, right), ("cce", 1): (ids, y_true, wrong),
    }  # fmt: skip
    frame = mcnemar_frame(
        [("net", "ce", "cce")],
        {("net", "cce"): [0, 1]},
        lambda backbone, arm, seed: runs[(arm, seed)],
        class_names=HAM10000_CLASSES,
        confused_pairs=(),
    ).set_index("scope")
    assert frame.loc["all test images", "seed_directions"] == [1, -1]
    assert frame.loc["all test images", "seed_pvalues"] == [pytest.approx(2 * 0.5**12)] * 2
    assert frame.loc["all test images", "combined_pvalue"] == pytest.approx(1.0)


# -- 6. prospective power --------------------------------------------------------------------
def test_follow_up_seeds_detect_the_margin_at_the_family_level(judged, report_text: str):
    _, answer = judged
    for row in rows(answer.comparisons, "confirmatory").itertuples():
        if row.n >= stats.MIN_SEEDS:  # fewer seeds give no size: their sd means too little
            assert row.seeds_needed == min(201, stats.seeds_needed(row.sd_diff, 0.01, 0.05 / 4))
    assert "Seeds for 80% power" not in report_text
    assert "A follow-up would need more than 200 paired seeds to detect ±1.00 pp" in report_text


# -- 7. looks at the data --------------------------------------------------------------------
def test_budget_changes_are_listed_under_looks_at_the_data(tmp_path: Path):
    folder = copy_study(tmp_path)
    log = [
        {"at": "2026-12-01T10:00:00+00:00", "key": "tune.n_trials", "from": 2, "to": 4,
         "completed_runs": 0},
        {"at": "2026-12-02T09:30:00+00:00", "key": "evaluate.seeds", "from": 3, "to": 5,
         "completed_runs": 18},
    ]  # fmt: skip
    (folder / BUDGET_LOG_FILE).write_text("".join(json.dumps(entry) + "\n" for entry in log))
    results = load_results(folder)
    section = looks_section(results, budget_changes(results.store))
    assert (
        "- 2026-12-01 10:00:00 UTC: `tune.n_trials` raised from 2 to 4, before any evaluation "
        "run completed" in section
    )
    assert (
        "- 2026-12-02 09:30:00 UTC: `evaluate.seeds` raised from 3 to 5, with 18 evaluation "
        "runs completed." in section
    )


def test_a_study_whose_budgets_never_changed_had_one_look(report_text: str):
    assert "None: the study ran with the budgets it started with" in report_text


# -- 8. per-class recall ---------------------------------------------------------------------
def test_per_class_recall_differences_show_the_test_images_of_each_class(judged):
    results, answer = judged
    section = recall_section(results, answer.plan, answer.comparisons)
    assert "| densenet121 | CCE vs CE | exploratory | Recall BKL | 14 | 4 † | +37.50 |" in section
    assert "| resnet18 | CCE vs CE | exploratory | Recall VASC | 2 | 5 |" in section


# -- 9. dataset totals -----------------------------------------------------------------------
def test_study_section_gives_the_dataset_totals_above_the_split_table(judged):
    results, _ = judged
    facts = {"versions": {}, "commit": "x", "hours": {"wall": 0, "gpu": 0, "cpu_core": 0},
             "tuning_hours": 0, "tuning_trials": 0}  # fmt: skip
    section = study_section(results, facts)
    totals = section.index("Dataset (from `split.json`): 600 images of 356 lesions.")
    assert totals < section.index("Split sizes (from `split.json`):")


def test_stats_csv_holds_every_comparison_in_its_family(built: Path):
    table = pd.read_csv(built / "stats.csv")
    per_comparison = len(REPORT_METRICS) + len(HAM10000_CLASSES)
    assert len(table) == 2 * 2 * per_comparison
    assert table["family"].value_counts().to_dict() == {
        "exploratory": 2 * 2 * (per_comparison - 4),
        "derived": 12,
        "confirmatory": 4,
    }


def test_verdict_names_the_arm_in_the_metric_direction(built: Path):
    table = pd.read_csv(built / "stats.csv").set_index(["backbone", "arm", "metric"])
    lower_error = table.loc[("densenet121", "cce", "pair_error_nv_mel")]
    assert lower_error["mean_diff"] < 0
    assert lower_error["verdict"] == "CCE better"


def test_significance_table_for_the_cli_is_the_confirmatory_family(built: Path):
    table = significance_table(built)
    assert {"Comparison", "p (Bonferroni)", "Verdict", "98.75% CI, seeds"} <= set(table.columns)
    assert set(table["Comparison"]) == {"CCE vs CE", "CCE-tau vs CE"}
    assert set(table["Metric"]) == {"Balanced accuracy"}
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
    assert frame.loc["NV↔MEL", "combined_pvalue"] == pytest.approx(2 * 0.5**6)  # one seed
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
    assert data["adjustment"].startswith("Bonferroni over the confirmatory family of ")
    assert data["verdict"].startswith("fixed design")
