"""Before the first trial, one task per node checks that node against the driver.

A node with another cce_bench commit, another torch CUDA build, a different weights file or a
GPU CUDA cannot see would otherwise fail (or, worse, succeed differently) run after run; one
short task per node finds it in seconds and names the node and the field (exit 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cce_bench.errors import ClusterError

#: The fields a node must share with the driver: the code and the CUDA build it runs with.
SAME_AS_DRIVER = ("cce_bench", "git_commit", "torch_cuda")


class PreflightMismatchError(ClusterError):
    """A node differs from the driver in a field that changes what, or whether, it computes."""


def node_facts(weights: Mapping[str, str], *, needs_cuda: bool) -> dict[str, Any]:
    """This process's code version, CUDA build, GPUs and weights files' SHA-256 (``missing``
    when a file is absent); what ``check_nodes`` compares with the driver's."""
    import socket

    import torch

    import cce_bench
    from cce_bench.models import weights_sha256
    from cce_bench.train import gpu_facts, source_commit

    facts: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "cce_bench": cce_bench.__version__,
        "git_commit": source_commit() or "none",
        "torch_cuda": str(torch.version.cuda or "none"),
        "weights": {
            name: weights_sha256(Path(path)) if Path(path).is_file() else "missing"
            for name, path in weights.items()
        },
    }
    if needs_cuda:
        facts["cuda_available"] = torch.cuda.is_available()
        facts.update({k: v for k, v in gpu_facts().items() if k in ("driver", "gpu_uuid")})
    return facts


def mismatches(driver: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per node and field that differs from the driver, or that cannot run a GPU run."""
    found = []
    for node, facts in nodes.items():
        where = f"node {facts.get('hostname', node)} ({node[:8]})"
        for field in SAME_AS_DRIVER:
            if facts.get(field) != driver.get(field):
                found.append(
                    f"{where}: {field} is {facts.get(field)}, the driver's {driver.get(field)}"
                )
        for name, digest in (facts.get("weights") or {}).items():
            if digest != driver["weights"].get(name):
                found.append(f"{where}: weights of {name} have SHA-256 {digest}, the driver's "
                             f"{driver['weights'].get(name)}")  # fmt: skip
        if facts.get("cuda_available") is False:
            found.append(
                f"{where}: CUDA is not available (GPU {facts.get('gpu_uuid', 'unknown')}, driver "
                f"{facts.get('driver', 'unknown')}, torch CUDA {facts.get('torch_cuda')})"
            )
    return found


def check_nodes(spec: Any, gpu_share: float) -> None:
    """Run ``node_facts`` once on every alive node and raise ``PreflightMismatchError`` naming
    each node and field that differs from this driver; each task takes ``gpu_share`` of a GPU on
    nodes that have one, so that it sees CUDA as a run will."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    weights = {b: str(spec.models.initialisation(b)) for b in spec.models.weights_sha256}
    driver = node_facts(weights, needs_cuda=False)
    task = ray.remote(num_cpus=0, max_calls=1)(node_facts)
    refs = {}
    for node in ray.nodes():
        resources = node.get("Resources", {})
        if not node.get("Alive") or resources.get("CPU", 0) <= 0:
            continue
        gpus = gpu_share if resources.get("GPU", 0) > 0 else 0
        where = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        refs[node["NodeID"]] = task.options(num_gpus=gpus, scheduling_strategy=where).remote(
            weights, needs_cuda=gpus > 0
        )
    found = mismatches(driver, dict(zip(refs, ray.get(list(refs.values())), strict=True)))
    if found:
        raise PreflightMismatchError(
            "the pre-flight check found nodes that differ from the driver: "
            + "; ".join(found)
            + ". Install the same cce-bench commit, torch build and weights files on every "
            "node, or stop the nodes that cannot run the study's runs"
        )
