"""Every run knows its GPU, and the report says which cards ran the study and whether its
kernels were deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
from studies_for_tests import write_study

from cce_bench.config import load_study
from cce_bench.report._sections import determinism_line, gpu_models_line
from cce_bench.study._arms import Arm, build_run_spec
from cce_bench.study._evaluation import run_record
from cce_bench.study._executor import Job, JobDone
from cce_bench.train import RunResult, RunSpec

H100 = "NVIDIA H100 80GB HBM3"


def finished_on_a_gpu() -> JobDone:
    spec = RunSpec(backbone="resnet10t", image_size=32, loss="ce")
    result = RunResult(
        outcome="completed", metrics={"balanced_accuracy": 0.5}, history=[],
        image_ids=np.array(["a"]), y_true=np.array([0]), proba=np.ones((1, 7)) / 7,
        wall_time_s=1.0, images_per_s=1.0, peak_memory_mb=1.0, device="cuda:0", versions={},
        node="gpu-node-1",
    )  # fmt: skip
    node = {
        "hostname": "gpu-node-1", "node_id": "abc", "gpu_uuid": "GPU-1234", "gpu_model": H100,
        "cuda_visible_devices": "3", "driver": "550.54.15", "torch_cuda": "12.4",
    }  # fmt: skip
    return JobDone(Job("evaluate/resnet10t/ce/seed0", spec, None), result=result, node=node)


def test_a_run_record_names_its_gpu_uuid_visible_devices_driver_and_node():
    record, _ = run_record(Arm("resnet10t", "ce"), 0, {"lr": 1e-3}, finished_on_a_gpu())
    assert record["gpu_uuid"] == "GPU-1234" and record["cuda_visible_devices"] == "3"
    assert record["driver"] == "550.54.15" and record["node"] == "gpu-node-1"


def test_the_hardware_row_lists_gpu_models_and_how_many_cards():
    runs = pd.DataFrame(
        {
            "gpu_model": [H100, H100, H100, None],
            "gpu_uuid": ["GPU-1", "GPU-2", "GPU-1", None],
        }
    )
    assert gpu_models_line(runs) == f"; GPUs: 2 x {H100}"


def test_the_hardware_row_has_no_gpu_part_for_a_cpu_study():
    assert gpu_models_line(pd.DataFrame({"device": ["cpu"]})) == ""


def test_the_report_says_whether_kernels_were_deterministic():
    assert "deterministic kernels" in determinism_line([{"spec": {"deterministic": True}}])
    assert "fastest kernels" in determinism_line([{"spec": {"deterministic": False}}])


def test_train_deterministic_in_a_study_file_reaches_every_run(tmp_path):
    study = write_study(tmp_path)
    study.write_text(
        study.read_text().replace("batch_size = 32", "batch_size = 32\ndeterministic = true")
    )
    spec = load_study(study)
    run = build_run_spec(spec, Arm("resnet10t", "ce"), {"lr": 1e-3, "aug_strength": 0.5},
                         seed=0, train_parts=("train",), eval_part="val")  # fmt: skip
    assert run.deterministic is True


def test_a_study_without_the_determinism_key_keeps_its_fingerprint(tmp_path):
    study = write_study(tmp_path)
    spec = load_study(study)
    assert "deterministic" not in spec.to_dict()["train"]
