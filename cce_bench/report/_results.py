"""A study's results folder, loaded for the report: the study as run, its split, its runs.

Only what the study wrote is read (``study.toml``, ``split.json``, ``runs.jsonl``, the run
records' predictions); nothing is trained or written here. The derived facts the report's
header and completeness section need (expected seeds, runs that did not complete, versions,
commit, compute hours, mean confusion matrices) are computed here from the records, so that
:mod:`cce_bench.report._build` only assembles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cce_bench.config import StudySpec
from cce_bench.data.labeled import HAM10000_CLASSES
from cce_bench.errors import ResultsError
from cce_bench.study.store import ResultsStore, latest_records
from cce_bench.train import source_commit

#: How the report names each registered loss; an unknown arm is shown by its own name.
ARM_LABELS: dict[str, str] = {
    "ce": "CE",
    "cce": "CCE",
    "cce_tau": "CCE-tau",
    "focal": "Focal",
    "label_smoothing": "LS-CE",
}

#: Keys of a run record's ``versions`` that carry the code's commit rather than a library.
COMMIT_KEYS: tuple[str, ...] = ("git_commit", "commit", "git", "cce_bench_commit")


#: The first columns of ``runs.csv``; metric, recall and parameter columns follow by name.
RUN_COLUMNS: tuple[str, ...] = (
    "backbone",
    "arm",
    "seed",
    "outcome",
    "error",
    "attempts",
    "wall_time_s",
    "images_per_s",
    "peak_memory_mb",
    "device",
    "node",
    "predictions",
)


def completed(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of a runs frame whose run completed: the only ones with test metrics to use."""
    return runs[runs["outcome"] == "completed"]


class NoRunsError(ResultsError):
    """The results folder has no evaluation run to report on."""


@dataclass(frozen=True)
class StudyResults:
    """One results folder, loaded: the study as run, its split, and its runs.

    ``records`` are the evaluation records in the order they were appended (a retried run
    appears more than once); ``latest`` holds the record that counts per (backbone, arm, seed),
    and ``runs`` has one row per such record, with scalar metrics, per-class recalls
    (``recall_<class>``) and parameters (``param_<k>``) as columns.
    """

    store: ResultsStore
    spec: StudySpec
    manifest: dict[str, Any]
    records: list[dict[str, Any]]
    latest: dict[tuple[str, str, int], dict[str, Any]]
    runs: pd.DataFrame
    backbones: tuple[str, ...]
    arms: tuple[str, ...]
    baseline: str
    seeds: tuple[int, ...]
    class_names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def arm_labels(self) -> dict[str, str]:
        return {arm: ARM_LABELS.get(arm, arm) for arm in self.arms}

    def latest_record(self, backbone: str, arm: str, seed: int) -> dict[str, Any] | None:
        """The record that counts for a run: its last one (a retry supersedes a failure)."""
        return self.latest.get((backbone, arm, seed))


def load_results(results_dir: Path | str) -> StudyResults:
    """Read a study's results folder; ``ResultsError`` names what is missing and the fix."""
    store = ResultsStore(Path(results_dir))
    if not store.root.is_dir():
        raise ResultsError(
            f"results folder {store.root} does not exist; pass the folder `cce-bench run` wrote "
            "(<results-dir>/<study name>)"
        )
    records = [r for r in store.read_runs() if r.get("phase", "evaluate") == "evaluate"]
    if not records and store.exists():
        raise NoRunsError(
            f"{store.runs_path} holds no evaluation run yet; run `cce-bench evaluate STUDY` "
            "(or `cce-bench run STUDY`) first"
        )
    spec = store.study()  # a folder without study.toml is refused here, naming the fix
    manifest = store.split_manifest() if store.split_path.is_file() else {}
    latest = latest_records(records)
    runs = _runs_frame(latest)
    backbones = _ordered(spec.models.backbones, runs["backbone"])
    baseline = spec.losses.baseline
    arms = (baseline, *(arm for arm in _ordered(spec.losses.arms, runs["arm"]) if arm != baseline))
    return StudyResults(
        store=store,
        spec=spec,
        manifest=manifest,
        records=records,
        latest=latest,
        runs=runs,
        backbones=backbones,
        arms=arms,
        baseline=baseline,
        seeds=_expected_seeds(spec.evaluate.seed_range, runs["seed"]),
        class_names=_class_names(records),
    )


def _ordered(declared: Sequence[str], found: pd.Series) -> tuple[str, ...]:
    """The study's order first, then anything the records hold that the study does not name."""
    names = [str(name) for name in declared]
    return tuple(names + sorted(set(found.astype(str)) - set(names)))


def _expected_seeds(expected: range, found: pd.Series) -> tuple[int, ...]:
    """Seeds the study asked for, plus any seed on record."""
    return tuple(sorted(set(expected) | {int(seed) for seed in found}))


def _class_names(records: list[dict[str, Any]]) -> tuple[str, ...]:
    """Class names in label order, from a record's per-class recall (HAM10000's by default)."""
    for record in records:
        recall = (record.get("metrics") or {}).get("per_class_recall")
        if isinstance(recall, dict) and recall:
            return tuple(recall)
    return HAM10000_CLASSES


def _runs_frame(latest: dict[tuple[str, str, int], dict[str, Any]]) -> pd.DataFrame:
    """One row per (backbone, arm, seed): its latest record, flattened (``runs.csv``)."""
    frame = pd.DataFrame([_flatten(record) for record in latest.values()])
    # Identity and outcome first, then every other column by name, whatever order records had.
    leading = [column for column in RUN_COLUMNS if column in frame]
    frame = frame[leading + sorted(set(frame.columns) - set(leading))]
    return frame.sort_values(["backbone", "arm", "seed"], kind="stable").reset_index(drop=True)


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    """A record as one flat row: identity, outcome, timings, scalar metrics, parameters.

    Metrics on an external test set (``external_metrics``) get the prefix ``external_``.
    """
    row: dict[str, Any] = {
        "backbone": str(record["backbone"]),
        "arm": str(record["arm"]),
        "seed": int(record["seed"]),
        "outcome": str(record.get("outcome", "unknown")),
        "error": _error_text(record),
    }
    for key in RUN_COLUMNS[5:-1]:
        row[key] = record.get(key)
    metrics = record.get("metrics") or {}
    row.update(_scalars(metrics))
    for name, recall in (metrics.get("per_class_recall") or {}).items():
        row[f"recall_{name}"] = math.nan if recall is None else float(recall)
    row.update(_scalars(record.get("external_metrics") or {}, prefix="external_"))
    for key, value in sorted((record.get("params") or {}).items()):
        row[f"param_{key}"] = value
    row["predictions"] = record.get("predictions") or ""
    return row


def _scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The scalar entries of a metrics dict (not the matrix, the recalls or the notes)."""
    return {
        prefix + key: float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def _error_text(record: dict[str, Any]) -> str:
    """The record's error, or where a diverged run diverged when it recorded no message."""
    if record.get("error"):
        return str(record["error"])
    step = record.get("diverged_at_step")
    return f"non-finite loss at step {step}" if step is not None else ""


def incomplete_runs(results: StudyResults) -> pd.DataFrame:
    """Every expected (backbone, arm, seed) whose latest record did not complete, or is missing.

    A study is judged on what it was asked to run: a failed, diverged or interrupted run, or
    one never recorded, is listed rather than silently left out of the means.
    """
    outcome = {
        (row.backbone, row.arm, row.seed): (row.outcome, row.error)
        for row in results.runs.itertuples()
    }
    rows = []
    for backbone in results.backbones:
        for arm in results.arms:
            for seed in results.seeds:
                state, error = outcome.get((backbone, arm, seed), ("missing", "no record"))
                if state != "completed":
                    rows.append((backbone, results.arm_labels[arm], seed, state, error or "—"))
    return pd.DataFrame(rows, columns=["Backbone", "Arm", "Seed", "Outcome", "Error"])


def git_commit(records: list[dict[str, Any]]) -> str:
    """The code's commit: from the run records when they carry it, else this checkout's, else
    "unknown". The records come first because they describe the code that produced the numbers.
    """
    found = sorted(
        {
            str(value)
            for record in records
            for key, value in (record.get("versions") or {}).items()
            if key in COMMIT_KEYS and value
        }
    )
    if found:
        return ", ".join(found)
    commit = source_commit()  # the same guarded lookup the run records use
    if commit is None:
        return "unknown"
    short = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    return f"{short} (this checkout, not recorded by the runs)"


def library_versions(records: list[dict[str, Any]]) -> dict[str, str]:
    """Each library's version(s) over all records, sorted; several values joined by " / "."""
    values: dict[str, set[str]] = {}
    for record in records:
        for key, value in (record.get("versions") or {}).items():
            if key not in COMMIT_KEYS and value is not None:
                values.setdefault(str(key), set()).add(str(value))
    return {key: " / ".join(sorted(found)) for key, found in sorted(values.items())}


def compute_hours(results: StudyResults) -> dict[str, float]:
    """Wall hours of every evaluation attempt and device-hours (wall time x devices held).

    A CUDA run holds ``resources.gpus_per_run`` GPUs (a fraction when runs share one), a CPU
    run ``resources.cpus_per_run`` cores, so GPU-hours and CPU core-hours are kept apart.
    """
    resources = results.spec.resources
    cpus = float(resources.cpus_per_run)
    hours = {"wall": 0.0, "gpu": 0.0, "cpu_core": 0.0}
    for record in results.records:
        wall = float(record.get("wall_time_s") or 0.0) / 3600
        hours["wall"] += wall
        if str(record.get("device", "cpu")).startswith("cuda"):
            hours["gpu"] += wall * (resources.gpus_for(str(record.get("backbone"))) or 1.0)
        else:
            hours["cpu_core"] += wall * cpus
    return hours


def seed_values(results: StudyResults, metric: str) -> pd.DataFrame:
    """Long frame (backbone, arm, seed, value) of one metric over completed runs, for plots."""
    done = completed(results.runs)
    if metric not in done:
        return pd.DataFrame(columns=["backbone", "arm", "seed", "value"])
    frame = done[["backbone", "arm", "seed", metric]].rename(columns={metric: "value"})
    return frame.dropna().reset_index(drop=True)


def mean_confusion_matrices(results: StudyResults) -> dict[tuple[str, str], np.ndarray]:
    """Per (backbone, arm) the mean over completed seeds of the row-normalised matrix.

    Each seed's matrix is normalised first so every seed weighs the same; a class with no test
    image has a zero row (nothing to normalise), not NaN.
    """
    stacks: dict[tuple[str, str], list[np.ndarray]] = {}
    for row in completed(results.runs).itertuples():
        record = results.latest_record(row.backbone, row.arm, row.seed)
        matrix = (record.get("metrics") or {}).get("confusion_matrix") if record else None
        if not matrix:
            continue
        counts = np.asarray(matrix, dtype=float)
        totals = counts.sum(axis=1, keepdims=True)
        normalised = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        stacks.setdefault((row.backbone, row.arm), []).append(normalised)
    return {key: np.mean(mats, axis=0) for key, mats in stacks.items()}
