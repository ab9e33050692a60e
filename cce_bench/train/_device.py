"""The device side of a run: which device, which precision, which layout, what it cost.

Kept apart from ``cce_bench.train`` so the training loop reads as the recipe; everything here
is a small function of the spec's device settings and the machine.
"""

from __future__ import annotations

import functools
import os
import platform
import resource
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import cce_bench
from cce_bench.train._machine import require_cuda
from cce_bench.train._spec import RunSpecError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import torch

    from cce_bench.data.labeled import PreparedData

#: Seconds a ``git`` call may take before the commit is left out of a run record.
GIT_TIMEOUT_S = 5.0

#: On CUDA a part's images are uploaded once when they take at most this share of free memory;
#: a per-batch host-to-device copy is the fallback (HAM10000 at 380 px is 4.3 GB as uint8).
CUDA_RESIDENT_FRACTION = 0.25


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the first CUDA GPU when one is visible, else the CPU.

    ``cuda`` without a visible GPU raises ``CudaUnavailableError`` (a machine failure naming
    the node, the GPU and the CUDA and driver versions), never a run on the CPU: a study's
    run given a GPU share asks for ``cuda`` (``study._arms.run_device``).
    """
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        require_cuda([])
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def set_backend_flags(device: torch.device, deterministic: bool) -> None:
    """Set, on every run, the global flags that decide which kernels run.

    cuDNN autotuning picks kernels by timing, so it is on only when determinism is not asked
    for. ``deterministic`` selects PyTorch's deterministic kernels and makes an operation that
    has none raise instead of warning: a run that only warns would be recorded as reproducible
    while it is not. cuBLAS needs a fixed workspace for that (``CUBLAS_WORKSPACE_CONFIG``),
    read when cuBLAS starts in the process, so it is set here, before the model touches the
    GPU; a study's GPU runs each get a fresh worker process (``execution``), so no earlier run
    has started cuBLAS. The four paper backbones run no operation PyTorch lists as lacking a
    deterministic CUDA kernel (checked on CPU by tests/test_gpu_readiness.py).

    What it costs on a GPU: cuDNN then uses neither autotuning nor its fastest
    nondeterministic convolution algorithms, and a few operations switch to slower
    deterministic kernels; expect slower runs (PyTorch's reproducibility notes). On CPU runs
    are deterministic anyway and these flags change nothing measurable.
    """
    import torch

    if deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=False)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 on GPUs that compute in it natively (compute capability 8.0 and up: no
    loss scaling needed), else fp16 with a gradient scaler; fp32 on CPU.

    Cards before 8.0 (T4, RTX 20xx, V100) accept bf16 tensors but emulate its arithmetic, so
    ``is_bf16_supported()`` says yes there; only ``including_emulation=False`` says whether
    the card has the tensor-core path that makes bf16 worth using.
    """
    import torch

    if precision == "auto":
        if device.type != "cuda":
            return None
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise RunSpecError("run setting precision = 'fp16' needs a CUDA device; use bf16 or fp32")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def memory_format(channels_last: bool) -> torch.memory_format:
    """NHWC when ``channels_last`` (see ``cce_bench.train`` for the measured speed-ups)."""
    import torch

    return torch.channels_last if channels_last else torch.contiguous_format


def reset_peak_memory(device: torch.device) -> None:
    """Start counting a run's peak CUDA memory from now (nothing to do on CPU).

    Called once the run's images are on the device, so that the upload's transient copies are
    not counted as training memory.
    """
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device, data_bytes: int = 0) -> float:
    """Peak CUDA allocation since ``reset_peak_memory``, less ``data_bytes`` (the images and
    labels kept on the device), so that it measures what training needs (model, optimizer,
    activations) and compares between runs whose data did or did not fit on the card.

    On CPU the process's peak resident set, which in a pooled worker includes earlier runs
    (Linux offers no per-interval peak).
    """
    import torch

    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - data_bytes) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def peak_reserved_mb(device: torch.device) -> float | None:
    """Peak CUDA memory held by PyTorch's caching allocator, data included: what the card must
    have free for the run, which decides how many runs share one GPU. None on CPU."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_reserved(device) / 2**20
    return None


def device_label(device: torch.device) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``: timings are only comparable per card."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return "cpu"


def library_versions(device: torch.device) -> dict[str, str]:
    """Versions that change numbers between otherwise identical runs, for the run record."""
    import timm
    import torch

    versions = {
        "cce_bench": cce_bench.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        versions["cuda"] = str(torch.version.cuda)
        versions["cudnn"] = str(torch.backends.cudnn.version())
    commit = source_commit()
    if commit is not None:
        versions["git_commit"] = commit
    return versions


@functools.cache
def source_commit() -> str | None:
    """The git commit of the cce-bench source tree that is running (``commit_of`` its root).

    Cached: a pooled worker asks git once, not once per run.
    """
    return commit_of(Path(cce_bench.__file__).resolve().parent.parent)


def commit_of(root: Path) -> str | None:
    """``git rev-parse HEAD`` of the checkout at ``root``, ``-dirty`` appended when tracked
    files differ from it; None when ``root`` is no checkout's root or git is absent or stuck.

    Only a checkout rooted at ``root`` counts, so an installed copy inside some other
    repository (a virtual environment in a project folder) never reports that repository's
    commit. Two git calls, under 10 ms here.
    """
    if not (root / ".git").exists():  # a folder in a clone, a file in a worktree
        return None
    try:
        head = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "diff", "--quiet", "HEAD", "--")
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0 or not head.stdout.strip():
        return None
    return head.stdout.strip() + ("-dirty" if dirty.returncode == 1 else "")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
        check=False,
    )


class PartOnDevice:
    """Batches of one part's uint8 images and labels, on the training device.

    On CUDA the part is uploaded once when it fits (``CUDA_RESIDENT_FRACTION``), so a step
    costs no host gather or transfer; otherwise, and on CPU, each batch is gathered from the
    (possibly memory-mapped, read-only) array by numpy fancy indexing, which also copies it.
    """

    def __init__(self, data: PreparedData, indices: np.ndarray, device: torch.device) -> None:
        import torch

        self.data, self.indices, self.device = data, indices, device
        self.labels = torch.from_numpy(data.labels[indices].astype(np.int64)).to(device)
        self.resident = None
        if device.type == "cuda":
            needed = len(indices) * int(np.prod(data.images.shape[1:]))
            if needed <= CUDA_RESIDENT_FRACTION * torch.cuda.mem_get_info(device)[0]:
                self.resident = torch.from_numpy(data.images[indices]).to(device)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def device_bytes(self) -> int:
        """Bytes this part keeps on a CUDA device (images when resident, and labels)."""
        if self.device.type != "cuda":
            return 0
        held = self.labels.nbytes
        return held + (self.resident.nbytes if self.resident is not None else 0)

    def batch(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``[B, H, W, 3]`` images and int64 labels at ``positions`` within the part."""
        return next(self.batches([positions]))

    def batches(
        self, positions: Sequence[np.ndarray]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The images and labels of each array of ``positions`` (within the part), in order.

        Every position goes to the device in one upload per call (an epoch's permutation, an
        evaluation pass), pinned and non-blocking, and each batch indexes with a slice of it
        already on the device. A per-batch upload from ordinary host memory would wait for all
        the GPU work queued before it, at every training step.
        """
        import torch

        flat = np.concatenate(positions) if len(positions) else np.zeros(0, np.int64)
        where = torch.from_numpy(flat.astype(np.int64, copy=False))
        if self.device.type == "cuda":
            where = where.pin_memory()
        where = where.to(self.device, non_blocking=True)
        start = 0
        for host in positions:
            on_device, start = where[start : start + len(host)], start + len(host)
            yield self._images(host, on_device), self.labels.index_select(0, on_device)

    def _images(self, host: np.ndarray, on_device: torch.Tensor) -> torch.Tensor:
        import torch

        if self.resident is not None:
            return self.resident.index_select(0, on_device)
        images = torch.from_numpy(self.data.images[self.indices[host]])
        if self.device.type == "cuda":
            images = images.pin_memory().to(self.device, non_blocking=True)
        return images
