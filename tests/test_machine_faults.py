"""Machine faults are not setting faults: which failures are the machine's, and which nodes and
GPUs keep getting work after them. No Ray and no GPU needed."""

from __future__ import annotations

import pytest
import torch

from cce_bench.errors import ModelError
from cce_bench.study._health import MachineHealth, NoMachineLeftError
from cce_bench.train import CudaUnavailableError, MachineFailure, is_machine_fault
from cce_bench.train._device import resolve_device


def test_asking_for_cuda_where_cuda_sees_no_gpu_is_a_machine_failure_naming_versions():
    assert not torch.cuda.is_available()
    with pytest.raises(CudaUnavailableError) as raised:
        resolve_device("cuda")
    message = str(raised.value)
    for words in ("CUDA is not available", "node", "GPU", "torch CUDA", "driver"):
        assert words in message
    assert "not trained on the CPU" in message


def test_a_machine_failure_survives_pickling_with_its_node_and_gpu():
    import pickle

    error = pickle.loads(pickle.dumps(MachineFailure("card gone", node="n1", gpu="GPU-1")))
    assert (str(error), error.node, error.gpu) == ("card gone", "n1", "GPU-1")


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        RuntimeError("NVRM: Xid 79, GPU has fallen off the bus"),
        RuntimeError("uncorrectable ECC error encountered"),
        FileNotFoundError("weights/resnet50.safetensors"),
        ModelError("weights file x does not fit resnet50: missing fc.weight"),
    ],
)
def test_cuda_driver_and_weights_failures_are_the_machines(error):
    assert is_machine_fault(error, shared_card=False)


def test_an_out_of_memory_error_is_the_machines_only_on_a_shared_card():
    oom = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_machine_fault(oom, shared_card=True)
    assert not is_machine_fault(oom, shared_card=False)


def test_a_setting_that_fails_is_not_a_machine_fault():
    assert not is_machine_fault(ValueError("lr must be positive"), shared_card=True)


def test_a_node_with_k_machine_failures_in_a_row_gets_no_more_work():
    health = MachineHealth(limit=2)
    assert health.failed("n1", "GPU-a", "CUDA error") == []
    notes = health.failed("n1", "GPU-a", "CUDA error")
    assert health.excluded_nodes == {"n1"} and health.excluded_gpus == {"GPU-a"}
    assert any("node n1 gets no more work" in note for note in notes)


def test_a_success_between_failures_resets_the_count():
    health = MachineHealth(limit=2)
    health.failed("n1", "", "CUDA error")
    health.succeeded("n1", "")
    health.failed("n1", "", "CUDA error")
    assert health.excluded_nodes == set()


def test_with_no_node_left_the_study_stops_saying_so():
    health = MachineHealth(limit=1)
    health.failed("n1", "", "CUDA is not available on node n1")
    health.check_some_left(["n1", "n2"])  # n2 still works
    health.failed("n2", "", "CUDA is not available on node n2")
    with pytest.raises(NoMachineLeftError, match=r"no node is left.*CUDA is not available"):
        health.check_some_left(["n1", "n2"])


# -- memory on a shared card -----------------------------------------------------------------
def test_a_run_sharing_a_card_caps_its_cuda_memory_at_its_share(monkeypatch):
    from cce_bench.train._machine import cap_cuda_memory

    fractions = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", fractions.append)
    cap_cuda_memory(0.5)
    cap_cuda_memory(1.0)  # a whole card: no cap
    assert fractions == [0.5]


def test_an_out_of_memory_error_is_reported_with_batch_size_and_peak(monkeypatch):
    from cce_bench.train._machine import out_of_memory_detail

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: 30 * 2**30)
    detail = out_of_memory_detail(RuntimeError("CUDA out of memory. Tried"), 64, 0.5)
    assert "batch size 64" in detail and "30,720 MB" in detail and "share 0.5" in detail
    assert out_of_memory_detail(ValueError("bad lr"), 64, 0.5) is None
