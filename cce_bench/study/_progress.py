"""Where a study stands: per-arm trial and run counts, from the live driver or from disk.

The same :class:`StudyProgress` feeds the live view of ``cce-bench run`` (built by the driver
after every event) and ``cce-bench status`` (built by :func:`study_status` from the results
folder and the Optuna storage, without starting Ray or loading data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cce_bench.config import StudySpec
from cce_bench.metrics import metric_scale
from cce_bench.study._arms import Arm, study_arms
from cce_bench.study._seeds import released_seeds
from cce_bench.study.storage import open_readonly_storage
from cce_bench.study.store import FINAL_OUTCOMES, ResultsStore

if TYPE_CHECKING:
    import optuna

#: The version of ``status --json``'s shape (docs/status.schema.json); a change that removes or
#: renames a field increments it.
STATUS_SCHEMA_VERSION = 1

#: How each trial state (Optuna's ``TrialState`` by name) is counted; interrupted trials are
#: replaced, so they are not shown.
_COUNTED_STATES = {
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
}


@dataclass(frozen=True)
class ArmProgress:
    """Where one arm stands: its trials and its evaluation runs."""

    arm: Arm
    n_trials: int
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best_value: float | None = None
    eval_done: int = 0
    eval_failed: int = 0
    eval_running: int = 0
    eval_total: int = 0
    problem: str | None = None

    @property
    def label(self) -> str:
        return self.arm.label

    def to_json_dict(self, scale: float = 1.0) -> dict[str, Any]:
        """The row ``cce-bench status`` shows, as plain JSON values (counts, not text).

        ``best`` is multiplied by ``scale``: the report's unit (percent for ratios).
        """
        return {
            "backbone": self.arm.backbone,
            "arm": self.arm.loss,
            "trials": self.complete + self.pruned + self.failed,
            "n_trials": self.n_trials,
            "complete": self.complete,
            "pruned": self.pruned,
            "failed": self.failed,
            "running": self.running + self.eval_running,
            "best": None if self.best_value is None else self.best_value * scale,
            "evals": {
                "done": self.eval_done,
                "failed": self.eval_failed,
                "running": self.eval_running,
                "total": self.eval_total,
            },
            "problem": self.problem,
        }


@dataclass(frozen=True)
class StudyProgress:
    """A snapshot of a study for the live view, the log lines and ``cce-bench status``."""

    name: str
    results_dir: Path
    metric: str
    arms: tuple[ArmProgress, ...]
    #: None when unknown: ``status`` reads a folder, not a running driver's clock.
    elapsed_s: float | None = None
    eta_s: float | None = None
    event: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        """What ``cce-bench status --json`` prints: the table's rows and the study's totals.

        Plain JSON values, so that a script reads the same numbers as the table without parsing
        text; ``best`` is in the report's unit (``unit``) and null for an arm with no complete
        trial; ``elapsed_s`` and ``eta_s`` are null when unknown. The shape is
        docs/status.schema.json, versioned by ``schema_version``.
        """
        scale, unit = metric_scale(self.metric)
        arms = [arm.to_json_dict(scale) for arm in self.arms]
        totals = {
            key: sum(arm[key] for arm in arms)
            for key in ("trials", "n_trials", "complete", "pruned", "failed", "running")
        }
        totals["evals"] = {
            key: sum(arm["evals"][key] for arm in arms)
            for key in ("done", "failed", "running", "total")
        }
        return {
            "schema_version": STATUS_SCHEMA_VERSION,
            "name": self.name,
            "results_dir": str(self.results_dir),
            "metric": f"validation {self.metric}",
            "unit": unit,
            "elapsed_s": self.elapsed_s,
            "eta_s": self.eta_s,
            "arms": arms,
            "totals": totals,
        }


def arm_progress(
    spec: StudySpec,
    arm: Arm,
    studies: Sequence[optuna.Study],
    records: list[dict[str, Any]],
    *,
    eval_running: int = 0,
) -> ArmProgress:
    """Count one arm's trials (from Optuna) and evaluation runs (from ``runs.jsonl``).

    Interrupted trials are neither failed nor done: they are replaced, so they are not shown.
    """
    # Under the anytime design the seeds grow look by look: count those released so far.
    seeds = set(released_seeds(spec, arm.backbone, records))
    counts: dict[str, Any] = dict.fromkeys(_COUNTED_STATES.values(), 0)
    bests = []
    for study in studies:
        complete = False
        for trial in study.get_trials(deepcopy=False):
            state = _COUNTED_STATES.get(trial.state.name)
            if state and not trial.user_attrs.get("interrupted"):
                counts[state] += 1
                complete = complete or state == "complete"
        if complete:
            bests.append(float(study.best_value))
    pick = max if spec.tune.direction == "maximize" else min
    best = pick(bests) if bests else None
    mine = [r for r in records if (r.get("backbone"), r.get("arm")) == (arm.backbone, arm.loss)]
    final = {int(r["seed"]) for r in mine if r.get("outcome") in FINAL_OUTCOMES}
    failed = {int(r["seed"]) for r in mine if r.get("outcome") == "failed"} - final
    return ArmProgress(
        arm=arm,
        n_trials=spec.tune.n_trials * spec.tune.replicates,
        best_value=best,
        eval_done=len(final & seeds),
        eval_failed=len(failed & seeds),
        eval_running=eval_running,
        eval_total=len(seeds),
        **counts,
    )


def study_status(results_dir: Path | str, *, storage: str | None = None) -> StudyProgress:
    """What ``cce-bench status`` prints: the study's progress read from disk, nothing run.

    The trials are read from the storage the study recorded (``--storage`` when it started),
    unless ``storage`` names it again; a SQLite file that does not exist yet shows no trials (it
    is not created).
    """
    import optuna

    store = ResultsStore(results_dir)
    spec = store.study()
    records = store.read_runs()
    backend = open_readonly_storage(storage or store.storage_url)
    stored = {s.study_name for s in backend.get_all_studies()} if backend else set()
    arms = []
    try:
        for arm in study_arms(spec):
            studies = [
                optuna.load_study(study_name=name, storage=backend)
                for name in arm_study_names(store, spec, arm, stored)
            ]
            arms.append(arm_progress(spec, arm, studies, records))
    finally:
        if backend is not None:
            backend.engine.dispose()  # the last connection removes SQLite's -wal/-shm files
    return StudyProgress(
        name=spec.name, results_dir=store.root, metric=spec.tune.metric, arms=tuple(arms)
    )


def arm_study_names(store: ResultsStore, spec: StudySpec, arm: Arm, stored: set[str]) -> list[str]:
    """The arm's Optuna studies in ``stored``: named after the folder, else after the study.

    The driver names them after the folder (``<folder>/<backbone>/<arm>``); a folder renamed
    or moved afterwards keeps its studies' original names, the study's own ``name``, which
    the report also falls back to.
    """
    names = store.optuna_study_names(spec, arm.backbone, arm.loss)
    for owner in dict.fromkeys((store.root.name, spec.name)):
        found = [owner + name[len(store.root.name) :] for name in names]
        found = [name for name in found if name in stored]
        if found:
            return found
    return []


def first_failure(
    studies: dict[Arm, list[optuna.Study]], records: list[dict[str, Any]]
) -> str | None:
    """None when any trial or evaluation run completed; else the first failure's cause.

    A study in which every run failed (weights that do not fit the backbone, CUDA out of memory)
    has no result to report, so it must not look like a success: the CLI exits 3 with this.
    """
    trials = {
        arm: [t for study in arm_studies for t in study.get_trials(deepcopy=False)]
        for arm, arm_studies in studies.items()
    }
    if any(t.state.name == "COMPLETE" for arm_trials in trials.values() for t in arm_trials):
        return None
    if any(record.get("outcome") == "completed" for record in records):
        return None
    for arm, arm_trials in trials.items():
        for trial in arm_trials:
            cause = trial.user_attrs.get("error") or trial.user_attrs.get("reason")
            if cause and not trial.user_attrs.get("interrupted"):
                return f"{arm.label} trial {trial.number}: {cause}"
    causes = [record["error"] for record in records if record.get("error")]
    return causes[0] if causes else "every trial was pruned or failed without a recorded cause"


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s`` or ``?``: short enough for a progress line."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def estimate_eta(
    arms: tuple[ArmProgress, ...], mean_job_s: float | None, phases: tuple[str, ...], slots: int
) -> float | None:
    """Jobs left x mean job time / parallel slots.

    Pruned trials end early, so this overestimates while trials get pruned; it never
    underestimates by more than the spread of job times, which is what a user planning around
    it needs.
    """
    if mean_job_s is None:
        return None
    jobs_left = 0
    for arm in arms:
        if "tune" in phases:
            jobs_left += max(0, arm.n_trials - arm.complete - arm.pruned - arm.failed)
        if "evaluate" in phases and arm.problem is None:
            jobs_left += max(0, arm.eval_total - arm.eval_done)
    return jobs_left * mean_job_s / max(1, slots)
