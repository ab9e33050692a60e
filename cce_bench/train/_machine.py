"""The machine a run is on: its GPU's identity, and whether a failure is the machine's fault.

A run that asked for a GPU and cannot see one must never train on the CPU: it would take about
100x longer, have no deadline, and its seed would be paired with runs that trained on a GPU.
A failure of the card, the driver, the node or the weights file on a node says nothing about
the setting being tried, so the study replaces such a run instead of counting it
(``cce_bench.study``); this module only names the facts and tells the two kinds apart.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from cce_bench.errors import ClusterError, ModelError

#: Seconds ``nvidia-smi`` may take before the GPU's facts are left "unknown".
NVIDIA_SMI_TIMEOUT_S = 10.0

#: Text in a run's error that means the card or its driver failed, not the setting: CUDA
#: runtime errors, the driver's Xid and ECC reports, a card that fell off the bus, NCCL.
MACHINE_FAULT_MARKERS: tuple[str, ...] = (
    "cuda error",
    "cudnn_status_",
    "cublas_status_",
    "xid",
    "uncorrectable ecc",
    "ecc error",
    "fallen off the bus",
    "nccl error",
    "no cuda gpus are available",
    "cuda driver version is insufficient",
)

#: A CUDA out-of-memory error counts as the machine's when the card is shared: the neighbour's
#: peak, not this setting, may have taken the memory. On a card of its own it is the setting's.
OOM_MARKER = "out of memory"


class MachineFailure(ClusterError):
    """A run failed because of the machine (GPU, driver, node, weights file), not its setting.

    ``node`` and ``gpu`` say where, so the study can stop sending work there. Pickles with
    them (Ray carries it from the worker to the driver).
    """

    def __init__(self, message: str, node: str = "", gpu: str = "") -> None:
        super().__init__(message)
        self.node, self.gpu = node, gpu

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (str(self), self.node, self.gpu))


class CudaUnavailableError(MachineFailure):
    """A run was given a GPU, and CUDA cannot see it."""


def gpu_facts() -> dict[str, str]:
    """This process's node and GPU, for run records and failure messages.

    Keys: ``hostname``, ``cuda_visible_devices`` (as Ray set it), ``torch_cuda`` (the CUDA
    torch was built for, ``none`` for a CPU build), ``driver`` and ``gpu_uuid`` (from
    ``nvidia-smi``, for the visible cards only; ``unknown`` without it).
    """
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    driver, uuids, models = _nvidia_smi(visible)
    return {
        "hostname": socket.gethostname(),
        "cuda_visible_devices": "unset" if visible is None else visible,
        "torch_cuda": str(torch.version.cuda or "none"),
        "driver": driver,
        "gpu_uuid": ",".join(uuids) or "unknown",
        "gpu_model": ",".join(models) or "unknown",
    }


def _nvidia_smi(visible: str | None) -> tuple[str, list[str], list[str]]:
    """(driver version, UUIDs, model names) of the GPUs in ``visible`` (all when unset)."""
    query = "--query-gpu=index,uuid,name,driver_version"
    try:
        done = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return _proc_driver_version(), [], []
    wanted = None if visible is None else {item.strip() for item in visible.split(",")}
    driver, uuids, models = "unknown", [], []
    for line in done.stdout.splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != 4:
            continue
        index, uuid, name, driver = cells
        if wanted is None or index in wanted or uuid in wanted:
            uuids.append(uuid)
            models.append(name)
    return driver, uuids, models


def _proc_driver_version() -> str:
    """The NVIDIA kernel module's version, when ``nvidia-smi`` is missing; else ``none``."""
    version = Path("/proc/driver/nvidia/version")
    try:
        first = version.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError):
        return "none"
    words = [word for word in first.split() if word[:1].isdigit() and "." in word]
    return words[0] if words else first.strip()


def require_cuda(gpu_ids: list[Any]) -> None:
    """Raise ``CudaUnavailableError`` when this process was given GPUs and CUDA sees none.

    ``gpu_ids`` are the GPUs Ray assigned the task (``ray.get_gpu_ids()``). The message names
    CUDA, the node, the GPU the run was given, and the torch CUDA and driver versions: the
    usual causes are a driver older than torch's CUDA build, a CPU build of torch, and a card
    that fell off the bus.
    """
    import torch

    if torch.cuda.is_available():
        return
    facts = gpu_facts()
    given = ",".join(str(gpu) for gpu in gpu_ids) or facts["cuda_visible_devices"]
    raise CudaUnavailableError(
        f"CUDA is not available on node {facts['hostname']}, but the run was given GPU {given} "
        f"(CUDA_VISIBLE_DEVICES={facts['cuda_visible_devices']}; torch CUDA "
        f"{facts['torch_cuda']}, NVIDIA driver {facts['driver']}); the run was not trained on "
        "the CPU. Check `nvidia-smi` on that node, install a torch build whose CUDA the driver "
        "supports, or set resources.gpus_per_run = 0 for a CPU study",
        node=facts["hostname"],
        gpu=given,
    )


def is_machine_fault(error: BaseException, *, shared_card: bool) -> bool:
    """True when ``error`` is the machine's fault rather than the setting's.

    A ``MachineFailure``, a missing weights file (a node without the file the driver has), a
    CUDA runtime, Xid or ECC error, and an out-of-memory error on a shared card.
    """
    if isinstance(error, MachineFailure):
        return True
    if isinstance(error, FileNotFoundError):
        return True
    if isinstance(error, ModelError) and "weights" in str(error).lower():
        return True  # the driver checked this file at load: the node holds another one
    text = f"{type(error).__name__}: {error}".lower()
    if shared_card and OOM_MARKER in text:
        return True
    return any(marker in text for marker in MACHINE_FAULT_MARKERS)


def cap_cuda_memory(share: float) -> None:
    """Let this process use at most ``share`` of its card when runs share one (0 < share < 1).

    Without the cap, the caching allocator of one run grows into its neighbour's half at its
    peak and the neighbour fails with an out-of-memory error that says nothing of why.
    """
    import torch

    if 0 < share < 1 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(share)


def out_of_memory_detail(error: BaseException, batch_size: int, share: float) -> str | None:
    """For a CUDA out-of-memory error, one line with the batch size, the run's peak and its
    share of the card; None for any other error."""
    if OOM_MARKER not in str(error).lower():
        return None
    import torch

    peak = torch.cuda.max_memory_reserved() / 2**20 if torch.cuda.is_available() else 0.0
    where = f"its share {share:g} of a shared card" if 0 < share < 1 else "a card of its own"
    return (
        f"CUDA out of memory at batch size {batch_size} (peak reserved {peak:,.0f} MB, on "
        f"{where}); lower train.batch_size for every arm, or give the backbone a whole card "
        "(resources.gpus_per_run)"
    )
