"""The study commands' rendering and exit codes (no Ray, no training)."""

from pathlib import Path

import pytest
from rich.console import Console

from cce_bench.cli import main
from cce_bench.cli.study import progress_line, progress_table
from cce_bench.study import Arm, ArmProgress, StudyProgress, format_duration

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


def _progress(**changes) -> StudyProgress:
    arms = (
        ArmProgress(Arm("resnet10t", "ce"), n_trials=4, complete=2, pruned=1, running=1,
                    best_value=0.61234, eval_done=1, eval_running=1, eval_total=5),
        ArmProgress(Arm("resnet10t", "cce_tau"), n_trials=4, complete=1, failed=1, eval_total=5),
    )  # fmt: skip
    fields = {"name": "tiny", "results_dir": Path("results/tiny"), "metric": "balanced_accuracy",
              "arms": arms, "elapsed_s": 65.0, "eta_s": 190.0, "event": "started x"}  # fmt: skip
    return StudyProgress(**{**fields, **changes})


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "?"), (42.4, "42s"), (185, "3m05s"), (3720, "1h02m")]
)
def test_durations_read_short(seconds, text):
    assert format_duration(seconds) == text


def test_progress_line_sums_every_arm():
    line = progress_line(_progress())
    assert line == "[1m05s] started x | trials 5/8 (1 pruned) | runs 1/10 | ETA 3m10s"


def test_progress_table_has_one_row_per_arm_with_counts_and_best_value():
    console = Console(width=200, record=True)
    console.print(progress_table(_progress()))
    text = console.export_text()
    assert "3/4" in text and "61.23" in text and "1/5" in text  # best in %, as the report
    assert "resnet10t/ce " in text and "resnet10t/cce_tau" in text


def test_interrupted_run_exits_130_with_the_resume_hint(tmp_path, monkeypatch, capsys):
    import cce_bench.study

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cce_bench.study, "run_study", interrupted)
    (tmp_path / "tiny.toml").write_text(STUDY)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(tmp_path / "tiny.toml"), "--results-dir", str(tmp_path)])
    assert exit_info.value.code == 130
    assert "interrupted; rerun the same command to resume" in capsys.readouterr().err


def test_status_of_a_folder_that_is_not_a_study_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["status", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "study.toml is missing" in capsys.readouterr().err


def test_status_prints_a_row_per_arm(tmp_path, capsys):
    root = tmp_path / "tiny"
    root.mkdir()
    (root / "study.toml").write_text(STUDY)
    with pytest.raises(SystemExit) as exit_info:
        main(["status", str(root)])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "cce_tau" in out and "0/5" in out
    assert not (root / "optuna.db").exists()  # status never creates the storage


def test_a_study_in_which_nothing_completed_exits_3_with_the_first_failure(
    tmp_path, monkeypatch, capsys
):
    import cce_bench.study

    def every_run_failed(spec, results_dir, **options):
        return cce_bench.study.StudyOutcome(
            results_dir=Path(results_dir) / spec.name,
            progress=_progress(),
            failure="resnet10t/ce trial 0: RuntimeError: CUDA out of memory",
        )

    monkeypatch.setattr(cce_bench.study, "run_study", every_run_failed)
    (tmp_path / "tiny.toml").write_text(STUDY)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(tmp_path / "tiny.toml"), "--results-dir", str(tmp_path)])
    assert exit_info.value.code == 3
    err = capsys.readouterr().err
    assert "no trial or evaluation run of tiny completed" in err
    assert "trial 0: RuntimeError: CUDA out of memory" in err


def test_report_of_a_single_arm_study_says_there_is_no_paired_comparison(
    tmp_path, monkeypatch, capsys
):
    import pandas as pd

    import cce_bench.report

    monkeypatch.setattr(cce_bench.report, "build_report", lambda folder: folder / "report.md")
    monkeypatch.setattr(cce_bench.report, "significance_table", lambda folder: pd.DataFrame())
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 0
    assert "no paired comparisons: the study has a single arm" in capsys.readouterr().out
