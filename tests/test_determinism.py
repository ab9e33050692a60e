"""Same study, same seeds, on CPU: two fresh runs give identical trials, metrics and predictions.

What makes it hold: every trial and run derives its initialisation, data order and augmentation
stream from its seed alone (``cce_bench.train``), each arm's sampler is seeded
(``tune.make_sampler``), and each run trains on ``resources.cpus_per_run`` threads whichever Ray
worker it lands on. Only costs and places (times, throughput, memory, node) may differ.

Rebuilding a report twice gives byte-identical files: ``tests/test_report.py``
(``test_cli_rebuild_gives_byte_identical_files_and_prints_table``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from studies_for_tests import arm_trials, write_study

from cce_bench.config import load_study
from cce_bench.study import run_study
from cce_bench.study.store import ResultsStore, latest_records

pytestmark = pytest.mark.slow

#: Record fields that measure cost or place, not the result.
COST_FIELDS = frozenset({"wall_time_s", "images_per_s", "peak_memory_mb", "node", "node_id"})
COST_HISTORY_FIELDS = frozenset({"seconds", "train_images_per_s"})


@pytest.fixture(scope="module")
def two_fresh_runs(ray_local, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny study (2 arms x 1 trial, 1 seed) run twice, each in its own results folder."""
    folder = tmp_path_factory.mktemp("determinism")
    study = write_study(folder, n_trials=1, seeds=1)
    study.write_text(
        study.read_text().replace("batch_size = 32", 'batch_size = 32\ndevice = "cpu"')
    )
    roots = []
    for copy in ("first", "second"):
        run_study(load_study(study), folder / copy)
        roots.append(folder / copy / "tiny")
    return roots[0], roots[1]


def without_costs(record: dict[str, Any]) -> dict[str, Any]:
    history = [
        {key: value for key, value in epoch.items() if key not in COST_HISTORY_FIELDS}
        for epoch in record.get("history") or []
    ]
    kept = {key: value for key, value in record.items() if key not in COST_FIELDS}
    return {**kept, "history": history}


def tuning(root: Path) -> dict[str, list]:
    return {
        arm: [(t.state, t.params, t.value, t.intermediate_values) for t in trials]
        for arm, trials in arm_trials(root).items()
    }


def test_two_fresh_runs_tune_to_identical_trials(two_fresh_runs):
    first, second = two_fresh_runs
    assert tuning(first) == tuning(second)


def test_two_fresh_runs_record_identical_metrics(two_fresh_runs):
    first, second = (latest_records(ResultsStore(root).read_runs()) for root in two_fresh_runs)
    assert len(first) == 2
    assert {k: without_costs(r) for k, r in first.items()} == {
        k: without_costs(r) for k, r in second.items()
    }


def test_two_fresh_runs_store_identical_predictions(two_fresh_runs):
    stores = [ResultsStore(root) for root in two_fresh_runs]
    for key, record in latest_records(stores[0].read_runs()).items():
        other = latest_records(stores[1].read_runs())[key]
        for mine, theirs in zip(
            stores[0].load_predictions(record), stores[1].load_predictions(other), strict=True
        ):
            np.testing.assert_array_equal(mine, theirs)
