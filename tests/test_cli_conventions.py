"""What users of Optuna's and Ray's command lines expect: JSON for scripts, settings from the
environment, --verbose / --quiet through `logging`, and named objectives in the dashboard."""

import json
import logging
from pathlib import Path

import pytest

from cce_bench.cli import main
from cce_bench.config import load_study
from cce_bench.study import Arm, ArmProgress, StudyOutcome, StudyProgress

STUDY = """name = "tiny"
[data]
source = "synthetic"
n_images = 200
image_size = 32
[models]
backbones = ["resnet10t"]
[losses]
arms = ["ce", "cce_tau"]
"""


def _progress(event: str = "finished resnet10t/ce trial 0: completed") -> StudyProgress:
    arms = (
        ArmProgress(Arm("resnet10t", "ce"), n_trials=4, complete=2, pruned=1, running=1,
                    best_value=0.61234, eval_done=1, eval_running=1, eval_total=5),
        ArmProgress(Arm("resnet10t", "cce_tau"), n_trials=4, complete=1, failed=1, eval_total=5),
    )  # fmt: skip
    return StudyProgress("tiny", Path("results/tiny"), "balanced_accuracy", arms, event=event)


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(STUDY)
    return path


@pytest.fixture
def captured_run(monkeypatch) -> dict:
    """Replace ``run_study`` with one that records its arguments and emits one progress event."""
    import cce_bench.cli.study
    import cce_bench.study

    calls: dict = {}

    def fake_run_study(spec, results_dir, **options):
        calls.update(results_dir=Path(results_dir), **options)
        options["on_event"](_progress())
        logging.getLogger("cce_bench.study._driver").info("loading the data of tiny")
        logging.getLogger("cce_bench.study._driver").error("a library error")
        return StudyOutcome(results_dir=Path(results_dir) / spec.name, progress=_progress())

    monkeypatch.setattr(cce_bench.study, "run_study", fake_run_study)
    monkeypatch.setattr(cce_bench.cli.study, "render_report", lambda folder: None)
    return calls


# -- JSON ------------------------------------------------------------------------------------
def test_status_json_has_every_arm_and_the_totals(tmp_path, capsys):
    root = tmp_path / "tiny"
    root.mkdir()
    (root / "study.toml").write_text(STUDY)
    assert _exit_code(["status", str(root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(a["backbone"], a["arm"]) for a in data["arms"]] == [
        ("resnet10t", "ce"),
        ("resnet10t", "cce_tau"),
    ]
    assert data["arms"][0]["evals"] == {"done": 0, "failed": 0, "running": 0, "total": 5}
    assert data["arms"][0]["best"] is None
    assert data["totals"]["evals"]["total"] == 10
    assert data["metric"] == "validation balanced_accuracy"


def test_progress_json_holds_the_tables_numbers():
    data = _progress().to_json_dict()
    ce = data["arms"][0]
    assert (ce["trials"], ce["complete"], ce["pruned"], ce["failed"]) == (3, 2, 1, 0)
    assert ce["running"] == 2 and ce["best"] == pytest.approx(61.234)  # in %, as the report
    assert data["totals"]["trials"] == 5 and data["totals"]["n_trials"] == 8
    assert data["totals"]["evals"]["done"] == 1
    json.dumps(data)  # plain values only


# -- environment variables -------------------------------------------------------------------
def test_environment_sets_storage_address_and_results_dir(
    study_file, tmp_path, monkeypatch, captured_run
):
    monkeypatch.setenv("CCE_BENCH_STORAGE", "sqlite:///from-env.db")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.setenv("CCE_BENCH_RESULTS", str(tmp_path / "env-results"))
    assert _exit_code(["tune", str(study_file)]) == 0
    assert captured_run["storage"] == "sqlite:///from-env.db"
    assert captured_run["address"] == "10.0.0.1:6379"
    assert captured_run["results_dir"] == tmp_path / "env-results"


def test_a_flag_wins_over_the_environment(study_file, tmp_path, monkeypatch, captured_run):
    monkeypatch.setenv("CCE_BENCH_STORAGE", "sqlite:///from-env.db")
    assert _exit_code(["tune", str(study_file), "--storage", "sqlite:///flag.db"]) == 0
    assert captured_run["storage"] == "sqlite:///flag.db"


def test_status_reads_its_storage_from_the_environment(tmp_path, monkeypatch):
    import cce_bench.study

    seen = {}

    def fake_status(results_dir, *, storage=None):
        seen["storage"] = storage
        return _progress()

    monkeypatch.setattr(cce_bench.study, "study_status", fake_status)
    monkeypatch.setenv("CCE_BENCH_STORAGE", "postgresql://u:secret@db/optuna")
    assert _exit_code(["status", str(tmp_path), "--json"]) == 0
    assert seen["storage"] == "postgresql://u:secret@db/optuna"


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        ("run", ("CCE_BENCH_STORAGE", "RAY_ADDRESS", "CCE_BENCH_RESULTS")),
        ("status", ("CCE_BENCH_STORAGE",)),
        ("dashboard", ("CCE_BENCH_STORAGE",)),
    ],
)
def test_help_names_the_environment_variables(command, variables, capsys):
    assert _exit_code([command, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for variable in variables:
        assert variable in out


# -- verbosity -------------------------------------------------------------------------------
def test_verbose_logs_and_shows_the_workers_output(study_file, tmp_path, captured_run, capsys):
    assert _exit_code(["--verbose", "tune", str(study_file), "--results-dir", str(tmp_path)]) == 0
    assert captured_run["worker_logs"] is True
    assert "loading the data of tiny" in capsys.readouterr().err


def test_quiet_hides_progress_but_not_errors(study_file, tmp_path, captured_run, capsys):
    assert _exit_code(["--quiet", "tune", str(study_file), "--results-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "trials" not in captured.out  # no progress line
    assert "a library error" in captured.err
    assert "loading the data" not in captured.err
    assert captured_run["worker_logs"] is False


def test_a_normal_run_prints_progress_but_no_info_logs(study_file, tmp_path, captured_run, capsys):
    assert _exit_code(["tune", str(study_file), "--results-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "trials 5/8" in captured.out
    assert "loading the data" not in captured.err
    assert captured_run["worker_logs"] is False


def test_verbose_and_quiet_together_is_a_usage_error(capsys):
    assert _exit_code(["--verbose", "--quiet", "status", "x"]) == 2
    assert "exclude each other" in capsys.readouterr().err


# -- dashboard -------------------------------------------------------------------------------
def test_each_arm_study_names_its_objective_for_the_dashboard(study_file, tmp_path):
    import optuna

    from cce_bench.study._tuning import open_arm_study
    from cce_bench.study.storage import open_storage

    spec = load_study(study_file)
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    study = open_arm_study(storage, spec, Arm("resnet10t", "ce"), study_name="t/resnet10t/ce")
    assert study.metric_names == ["validation balanced_accuracy"]
    reloaded = optuna.load_study(study_name="t/resnet10t/ce", storage=storage)
    assert reloaded.metric_names == ["validation balanced_accuracy"]


def test_a_study_from_older_storage_gets_its_name_on_resume(study_file, tmp_path):
    import optuna

    from cce_bench.study._tuning import open_arm_study
    from cce_bench.study.storage import open_storage

    spec = load_study(study_file)
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    old = optuna.create_study(storage=storage, study_name="t/resnet10t/ce", direction="maximize")
    old.add_trial(optuna.trial.create_trial(value=0.5))
    assert old.metric_names is None  # as a study written before names were set
    study = open_arm_study(storage, spec, Arm("resnet10t", "ce"), study_name="t/resnet10t/ce")
    assert study.metric_names == ["validation balanced_accuracy"]
    assert len(study.trials) == 1
