"""``cce-bench plan``: what a study will train and how long it takes, before it runs; and the
GPU check whose result gives the plan a GPU's throughput."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from studies_for_tests import write_study

from cce_bench.cli.app import main
from cce_bench.cli.plan import _study_without_data
from cce_bench.study._plan import PlanInputError, plan_study, probe_rates, read_throughput

REPO = Path(__file__).resolve().parent.parent
PAPER = REPO / "studies" / "paper-ham10000.toml"
PAPER_BACKBONES = ("resnet50", "efficientnet_b4", "inception_v3", "densenet121")


def gpu_check_result(folder: Path) -> Path:
    """A gpu_check.json as benchmarks/gpu_check.py writes it (backbones keyed by name)."""
    rates = {"resnet50": 2000.0, "efficientnet_b4": 350.0, "inception_v3": 1400.0,
             "densenet121": 1200.0}  # fmt: skip
    document = {"backbones": {name: {"backbone": name, "images_per_s": rate}
                              for name, rate in rates.items()}}  # fmt: skip
    path = folder / "gpu_check.json"
    path.write_text(json.dumps(document))
    return path


def test_the_paper_plan_has_a_row_per_backbone_and_phase():
    plan = plan_study(_study_without_data(PAPER), {})
    assert [(r.backbone, r.phase) for r in plan.rows] == [
        (b, phase) for b in PAPER_BACKBONES for phase in ("tune", "evaluate")
    ]


def test_an_anytime_design_runs_between_its_first_look_and_its_cap():
    plan = plan_study(_study_without_data(PAPER), {})
    evaluate = next(r for r in plan.rows if r.phase == "evaluate")
    assert evaluate.seeds == (5, 20) and evaluate.runs == (15, 60)  # 3 arms


def test_tuning_runs_are_arms_times_trials_on_the_training_part():
    spec = _study_without_data(PAPER)
    tune = plan_study(spec, {}).rows[0]
    train = 10_015 - round(10_015 * 0.2) - round(10_015 * 0.15)
    assert tune.runs == (60, 60) and tune.images[0] == 60 * 20 * train


def test_time_comes_from_a_gpu_check_result(tmp_path):
    rates = read_throughput(gpu_check_result(tmp_path))
    plan = plan_study(_study_without_data(PAPER), rates, slots=16)
    low, high = plan.wall_hours
    assert 0 < low < high and plan.run_hours[0] == pytest.approx(16 * low)


def test_a_file_that_is_no_gpu_check_result_is_refused_naming_it(tmp_path):
    path = tmp_path / "other.json"
    path.write_text("{}")
    with pytest.raises(PlanInputError, match=r"other\.json.*gpu_check"):
        read_throughput(path)


def test_plan_of_the_paper_study_prints_the_table(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["plan", str(PAPER), "--throughput", str(gpu_check_result(tmp_path))])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "plan of paper-ham10000" in out and "run-hours" in out
    assert "resnet50" in out and "evaluate" in out and "5-20" in out


def test_without_a_throughput_file_the_plan_probes_this_machine(tmp_path):
    spec = _study_without_data(write_study(tmp_path))
    rates = probe_rates(spec)
    assert set(rates) == {"resnet10t"} and rates["resnet10t"] > 0


def test_gpu_check_dry_run_names_every_acceptance_step_and_writes_nothing(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--no-setup"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for step in ("losses", "backbones", "fixed", "weights", "packing", "study", "report"):
        assert f"[{step}]" in done.stdout
    assert "--no-setup" in done.stdout and "8,000 synthetic images" in done.stdout
    assert "efficientnet_b4" in done.stdout.split("[packing]")[1].split("[study]")[0]
    assert list(tmp_path.iterdir()) == []


def test_gpu_check_without_setup_refuses_a_venv_that_cannot_import_torch(tmp_path):
    env = {**os.environ, "GPU_CHECK_VENV": str(tmp_path / "none")}
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--no-setup"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "cannot import torch" in done.stderr
