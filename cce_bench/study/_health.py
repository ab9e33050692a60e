"""Which nodes and GPUs still get work: k machine failures in a row and a place is left out.

A card that fell off the bus, a driver older than torch's CUDA, or a node without the weights
file fails every run sent to it within seconds; without this, a study would feed it its whole
tuning budget. Failures are counted per node and per GPU, consecutively: one success resets
the count, so a single transient fault does not cost a healthy card its share of the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cce_bench.train import MachineFailure


class NoMachineLeftError(MachineFailure):
    """Every node of the cluster failed k runs in a row: the study cannot go on."""


@dataclass
class MachineHealth:
    """Consecutive machine failures per node and per GPU, and the places that get no more work.

    ``limit`` is k (``resources.machine_failures``). A GPU is named by its UUID when the run
    knew it, else by ``node/CUDA_VISIBLE_DEVICES``.
    """

    limit: int
    streak: dict[str, int] = field(default_factory=dict)
    excluded_nodes: set[str] = field(default_factory=set)
    excluded_gpus: set[str] = field(default_factory=set)
    last_failure: str = ""

    def failed(self, node: str, gpu: str, error: str) -> list[str]:
        """Count a machine failure at ``node`` / ``gpu``; the places newly left out, as lines."""
        self.last_failure = error
        notes = []
        for kind, place, excluded in (
            ("node", node, self.excluded_nodes),
            ("GPU", gpu, self.excluded_gpus),
        ):
            if not place:
                continue
            key = f"{kind}:{place}"
            self.streak[key] = self.streak.get(key, 0) + 1
            if self.streak[key] >= self.limit and place not in excluded:
                excluded.add(place)
                notes.append(
                    f"{kind} {place} gets no more work: {self.streak[key]} machine failures in "
                    f"a row (resources.machine_failures = {self.limit}); the last: {error}"
                )
        return notes

    def succeeded(self, node: str, gpu: str) -> None:
        """A run finished at ``node`` / ``gpu``: their streaks start again from zero."""
        self.streak.pop(f"node:{node}", None)
        self.streak.pop(f"GPU:{gpu}", None)

    def check_some_left(self, alive_nodes: list[str]) -> None:
        """Raise ``NoMachineLeftError`` when every alive node is left out."""
        if alive_nodes and all(node in self.excluded_nodes for node in alive_nodes):
            raise NoMachineLeftError(
                f"no node is left to run the study: each of {', '.join(sorted(alive_nodes))} "
                f"failed {self.limit} runs in a row for the machine's sake; the last failure: "
                f"{self.last_failure}. Fix the machines (or resources.gpus_per_run) and rerun "
                "the same command to resume; the failed runs were not counted"
            )
