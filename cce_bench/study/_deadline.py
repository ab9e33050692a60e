"""A deadline per task: k times the median of the finished tasks like it, never below a floor.

A run on a card that hangs (a driver fault, a stuck NCCL call, a worker swapping) never ends
and never fails: its slot is lost for good and the study never finishes. Runs of one backbone
and phase take about the same time (same images, epochs and batch), so a run past k times the
median of its finished peers is cancelled (``ray.cancel(force=True)``) and marked interrupted.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Finished tasks of a group before its median is trusted for a deadline.
MIN_FINISHED = 3

Group = tuple[str, str]  # (backbone, phase)


@dataclass
class Deadlines:
    """The finished durations per (backbone, phase), and which running tasks are past due.

    ``factor`` is k (``resources.deadline_factor``), ``floor_s`` the least deadline
    (``resources.deadline_floor_s``): a short first run must not make every later one late.
    """

    factor: float
    floor_s: float
    durations: dict[Group, list[float]] = field(default_factory=dict)

    def finished(self, group: Group, seconds: float) -> None:
        self.durations.setdefault(group, []).append(seconds)

    def limit(self, group: Group) -> float | None:
        """Seconds a task of ``group`` may run; None until ``MIN_FINISHED`` of them finished."""
        done = self.durations.get(group, [])
        if len(done) < MIN_FINISHED:
            return None
        return max(self.floor_s, self.factor * statistics.median(done))

    def overdue(self, running: Mapping[str, tuple[Group, float]], now: float) -> list[str]:
        """Keys of the ``running`` tasks (key -> (group, start time)) past their deadline."""
        late = []
        for key, (group, started) in running.items():
            limit = self.limit(group)
            if limit is not None and now - started > limit:
                late.append(key)
        return late

    def describe(self, group: Group, ran_s: float) -> str:
        """Why a task of ``group`` that ran ``ran_s`` seconds was cancelled, one line."""
        median = statistics.median(self.durations[group])
        return (
            f"deadline: ran {ran_s:.0f} s, past {self.factor:g} x the median {median:.0f} s of "
            f"the finished {group[0]} {group[1]} runs (floor {self.floor_s:.0f} s); cancelled "
            "and run again (resources.deadline_factor)"
        )
