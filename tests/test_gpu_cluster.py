"""A GPU cluster without surprises, checked on a CPU: a local Ray that advertises a GPU CUDA
cannot see, machine faults that are replaced rather than counted, and every slot filled.

Ray is started here with ``num_gpus=1`` on a machine whose CUDA sees none: the situation of a
node whose driver is older than torch's CUDA build, or whose card fell off the bus.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from studies_for_tests import arm_trials, write_study

import cce_bench.study._driver
from cce_bench.cli._console import EXIT_BAD_INPUT
from cce_bench.cli.app import main
from cce_bench.config import load_study
from cce_bench.study import run_study
from cce_bench.study._executor import Resources, fit_concurrency
from cce_bench.study._health import NoMachineLeftError


@pytest.fixture(scope="module")
def ray_with_a_phantom_gpu():
    """A local Ray (2 CPUs) that advertises one GPU; torch here has no CUDA."""
    import ray
    import torch

    from cce_bench.study._executor import _init_local_ray

    assert not torch.cuda.is_available()
    if ray.is_initialized():
        ray.shutdown()
    # Started again if a busy machine makes it miss Ray's start-up window, as a study's own is.
    _init_local_ray(2, {"num_gpus": 1, "include_dashboard": False, "logging_level": "ERROR"})
    yield
    ray.shutdown()


def with_gpus(study: Path, gpus: str = "1") -> Path:
    text = study.read_text().replace("cpus_per_run = 1", f"cpus_per_run = 1\ngpus_per_run = {gpus}")
    study.write_text(text)
    return study


def recorded_runs(results: Path) -> list[dict]:
    runs = results / "tiny" / "runs.jsonl"
    return [json.loads(line) for line in runs.read_text().splitlines()] if runs.exists() else []


def test_a_gpu_study_that_cannot_see_cuda_is_stopped_by_the_preflight_naming_cuda(
    ray_with_a_phantom_gpu, tmp_path, capsys
):
    study = with_gpus(write_study(tmp_path, arms=("ce",), n_trials=2, seeds=1))
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(study), "--results-dir", str(results)])
    assert exit_.value.code == EXIT_BAD_INPUT
    error = " ".join(capsys.readouterr().err.split())
    assert "CUDA is not available" in error and "node" in error and "driver" in error
    assert recorded_runs(results) == []


def test_a_run_given_a_gpu_cuda_cannot_see_fails_as_a_machine_failure_never_on_the_cpu(
    ray_with_a_phantom_gpu, tmp_path, monkeypatch
):
    """Past the pre-flight (a card that falls off later), every run fails as the machine's,
    none is counted, and with the only node left out the study stops naming CUDA."""
    monkeypatch.setattr(cce_bench.study._driver, "_preflight", lambda spec, nodes: None)
    study = with_gpus(write_study(tmp_path, arms=("ce",), n_trials=2, seeds=1))
    with pytest.raises(NoMachineLeftError, match=r"CUDA is not available.*GPU.*driver"):
        run_study(load_study(study), tmp_path / "results")
    assert not [r for r in recorded_runs(tmp_path / "results") if r.get("device") == "cpu"]
    trials = arm_trials(tmp_path / "results" / "tiny", ("ce",))["ce"]
    assert trials and all(t.user_attrs.get("interrupted") for t in trials)


def first_call_fails_with(message: str, marker: Path):
    """A ``train_fn`` that raises ``message`` in its first call (across workers), then trains."""

    def train(spec, data, reporter=None):
        from cce_bench.train import train_run

        try:
            with open(marker, "x"):
                pass
        except FileExistsError:
            return train_run(spec, data, reporter)
        raise RuntimeError(message)

    return train


def test_a_cuda_error_replaces_the_trial_without_counting_it_against_n_trials(
    ray_with_a_phantom_gpu, tmp_path
):
    study = write_study(tmp_path, arms=("ce",), n_trials=2, seeds=1, max_concurrent=1)
    train = first_call_fails_with("CUDA error: an illegal memory access", tmp_path / "failed")
    run_study(load_study(study), tmp_path / "results", train_fn=train)
    trials = arm_trials(tmp_path / "results" / "tiny", ("ce",))["ce"]
    counted = [t for t in trials if not t.user_attrs.get("interrupted")]
    assert len(counted) == 2 and all(t.state.name == "COMPLETE" for t in counted)
    assert any("machine failure" in str(t.user_attrs.get("reason")) for t in trials)


def test_a_setting_that_raises_still_fails_its_trial_and_counts(ray_with_a_phantom_gpu, tmp_path):
    study = write_study(tmp_path, arms=("ce",), n_trials=1, seeds=1, max_concurrent=1)
    train = first_call_fails_with("shapes do not match", tmp_path / "failed")
    run_study(load_study(study), tmp_path / "results", train_fn=train)
    trials = arm_trials(tmp_path / "results" / "tiny", ("ce",))["ce"]
    assert [t.state.name for t in trials] == ["FAIL"]
    assert not trials[0].user_attrs.get("interrupted")


# -- every slot busy -------------------------------------------------------------------------
EIGHT_GPU_NODE = {"CPU": 64.0, "GPU": 8.0}


def test_auto_concurrency_fills_every_gpu_slot():
    fitted, note = fit_concurrency(
        Resources(gpus_per_run=0.5, max_concurrent="auto"), [EIGHT_GPU_NODE, EIGHT_GPU_NODE]
    )
    assert fitted.max_concurrent == 32 and note is None


def test_auto_concurrency_of_a_cpu_study_is_cpus_over_cpus_per_run():
    fitted, _ = fit_concurrency(Resources(cpus_per_run=4, max_concurrent="auto"), [{"CPU": 18}])
    assert fitted.max_concurrent == 4


def test_an_explicit_concurrency_below_the_slots_gets_a_one_line_note():
    fitted, note = fit_concurrency(Resources(gpus_per_run=0.5, max_concurrent=8), [EIGHT_GPU_NODE])
    assert fitted.max_concurrent == 8
    assert "leaves 8 of the cluster's 16 run slots idle" in note and "\n" not in note


def test_a_gpu_share_per_backbone_asks_each_backbone_its_own_share():
    resources = Resources(
        gpus_per_run={"resnet50": 0.5, "efficientnet_b4": 1.0}, max_concurrent="auto"
    )
    assert resources.gpus_for("efficientnet_b4") == 1.0 and resources.gpus_for("resnet50") == 0.5
    fitted, _ = fit_concurrency(resources, [EIGHT_GPU_NODE])
    assert fitted.max_concurrent == 16  # the smallest share, so no card waits


def test_a_study_file_takes_a_gpu_share_per_backbone_and_auto_concurrency(tmp_path):
    study = write_study(tmp_path)
    study.write_text(
        study.read_text()
        .replace("max_concurrent = 2", 'max_concurrent = "auto"')
        .replace("cpus_per_run = 1", "cpus_per_run = 1\ngpus_per_run = {resnet10t = 0.5}")
    )
    spec = load_study(study)
    assert spec.resources.max_concurrent == "auto"
    assert spec.resources.gpus_for("resnet10t") == 0.5
    assert load_study(study).to_toml() == spec.to_toml()


def test_max_concurrent_defaults_to_auto(tmp_path):
    study = write_study(tmp_path)
    study.write_text(study.read_text().replace("max_concurrent = 2\n", ""))
    assert load_study(study).resources.max_concurrent == "auto"


def test_a_gpu_share_for_a_backbone_not_in_the_study_is_refused_naming_it(tmp_path):
    study = write_study(tmp_path)
    study.write_text(
        study.read_text().replace(
            "cpus_per_run = 1", "cpus_per_run = 1\ngpus_per_run = {resnet5 = 1}"
        )
    )
    with pytest.raises(Exception, match=r"gpus_per_run.*'resnet5'.*models.backbones"):
        load_study(study)


def test_a_gpu_run_asks_for_cuda_and_never_for_auto(tmp_path):
    from cce_bench.study._arms import Arm, run_device

    study = with_gpus(write_study(tmp_path), "0.5")
    assert run_device(load_study(study), Arm("resnet10t", "ce").backbone) == "cuda"
