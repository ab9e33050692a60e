"""One training run: ``train_run(spec, data, reporter) -> RunResult``.

The unit of work of every trial, evaluation seed, test and benchmark. ``RunSpec`` holds names
and numbers only (it is stored in every run record and Optuna trial); the images travel
separately as ``PreparedData``.
"""

from cce_bench.train._device import source_commit
from cce_bench.train._loop import train_run
from cce_bench.train._machine import (
    CudaUnavailableError,
    MachineFailure,
    gpu_facts,
    is_machine_fault,
    require_cuda,
)
from cce_bench.train._spec import RunResult, RunSpec, RunSpecError

__all__ = [
    "CudaUnavailableError",
    "MachineFailure",
    "RunResult",
    "RunSpec",
    "RunSpecError",
    "gpu_facts",
    "is_machine_fault",
    "require_cuda",
    "source_commit",
    "train_run",
]
