"""Where a study stands: per-arm trial and run counts, from the live driver or from disk.

The same :class:`StudyProgress` feeds the live view of ``cce-bench run`` (built by the driver
after every event) and ``cce-bench status`` (built by :func:`study_status` from the results
folder and the Optuna storage, without starting Ray or loading data). ``cce-bench dashboard``
(:func:`serve_dashboard`) reads the same storage, live, through optuna-dashboard.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cce_bench.errors import CceBenchError
from cce_bench.study._tuning import Arm
from cce_bench.study.storage import open_existing_storage, open_storage
from cce_bench.study.store import FINAL_OUTCOMES, ResultsStore

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class ArmProgress:
    """Where one (backbone, arm) stands: its trials and its evaluation runs."""

    backbone: str
    arm: str
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
        return f"{self.backbone}/{self.arm}"


@dataclass(frozen=True)
class StudyProgress:
    """A snapshot of a study for the live view, the log lines and ``cce-bench status``."""

    name: str
    results_dir: Path
    metric: str
    arms: tuple[ArmProgress, ...]
    elapsed_s: float = 0.0
    eta_s: float | None = None
    event: str = ""


def arm_progress(
    study_dict: dict[str, Any],
    arm: Arm,
    study: optuna.Study | None,
    records: list[dict[str, Any]],
    *,
    eval_running: int = 0,
) -> ArmProgress:
    """Count one arm's trials (from Optuna) and evaluation runs (from ``runs.jsonl``).

    Interrupted trials are neither failed nor done: they are replaced, so they are not shown.
    """
    from optuna.trial import TrialState

    tune, evaluate = study_dict.get("tune", {}), study_dict.get("evaluate", {})
    first = int(evaluate.get("first_seed", 0))
    seeds = set(range(first, first + int(evaluate.get("seeds", 5))))
    counts = dict.fromkeys(("complete", "pruned", "failed", "running"), 0)
    best: float | None = None
    for trial in study.get_trials(deepcopy=False) if study is not None else []:
        if trial.user_attrs.get("interrupted"):
            continue
        state = {
            TrialState.COMPLETE: "complete",
            TrialState.PRUNED: "pruned",
            TrialState.FAIL: "failed",
            TrialState.RUNNING: "running",
        }.get(trial.state)
        if state:
            counts[state] += 1
    if counts["complete"]:
        best = float(study.best_value)
    mine = [r for r in records if (r.get("backbone"), r.get("arm")) == (arm.backbone, arm.arm)]
    final = {int(r["seed"]) for r in mine if r.get("outcome") in FINAL_OUTCOMES}
    failed = {int(r["seed"]) for r in mine if r.get("outcome") == "failed"} - final
    return ArmProgress(
        backbone=arm.backbone,
        arm=arm.arm,
        n_trials=int(tune.get("n_trials", 0)),
        best_value=best,
        eval_done=len(final & seeds),
        eval_failed=len(failed & seeds),
        eval_running=eval_running,
        eval_total=len(seeds),
        **counts,
    )


def study_arms(study_dict: dict[str, Any]) -> list[Arm]:
    """Every (backbone, arm) of a study, backbones outer: the order of every table."""
    backbones = study_dict.get("models", {}).get("backbones", [])
    arms = study_dict.get("losses", {}).get("arms", [])
    return [Arm(backbone, arm) for backbone in backbones for arm in arms]


def study_status(results_dir: Path | str, *, storage: str | None = None) -> StudyProgress:
    """What ``cce-bench status`` prints: the study's progress read from disk, nothing run.

    The trials are read from the storage the study recorded (``--storage`` when it started),
    unless ``storage`` names it again; a SQLite file that does not exist yet shows no trials (it
    is not created).
    """
    import optuna

    store = ResultsStore(results_dir)
    study_dict = store.study_dict()
    records = store.read_runs()
    backend = open_existing_storage(storage or store.storage_url)
    names = {s.study_name for s in backend.get_all_studies()} if backend else set()
    arms = []
    for arm in study_arms(study_dict):
        name = store.optuna_study_name(arm.backbone, arm.arm)
        study = optuna.load_study(study_name=name, storage=backend) if name in names else None
        arms.append(arm_progress(study_dict, arm, study, records))
    return StudyProgress(
        name=str(study_dict.get("name", store.root.name)),
        results_dir=store.root,
        metric=str(study_dict.get("tune", {}).get("metric", "balanced_accuracy")),
        arms=tuple(arms),
    )


def first_failure(studies: dict[Arm, optuna.Study], records: list[dict[str, Any]]) -> str | None:
    """None when any trial or evaluation run completed; else the first failure's cause.

    A study in which every run failed (weights that do not fit the backbone, CUDA out of memory)
    has no result to report, so it must not look like a success: the CLI exits 1 with this.
    """
    from optuna.trial import TrialState

    trials = {arm: study.get_trials(deepcopy=False) for arm, study in studies.items()}
    if any(t.state == TrialState.COMPLETE for arm_trials in trials.values() for t in arm_trials):
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


class DashboardError(CceBenchError):
    """optuna-dashboard cannot listen where it was asked to."""


def serve_dashboard(
    results_dir: Path | str, *, host: str, port: int, storage: str | None = None
) -> None:
    """Serve optuna-dashboard on the folder's Optuna storage until interrupted.

    It only reads; with SQLite in WAL mode (``storage.open_storage``) it never blocks the driver
    of a running study. The port is bound before the storage is opened: a busy port then fails
    with one clear line, without Bottle's start-up banner, and leaves no SQLite ``-wal``/``-shm``
    files behind (an open WAL database has them until its last connection closes).
    """
    from wsgiref.simple_server import WSGIServer, make_server

    import optuna_dashboard

    store = ResultsStore(results_dir)
    store.study_dict()  # a clear error when the folder is not a study's

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as Bottle does

    try:
        server = make_server(host, port, None, server_class=Server)  # its app is set below
    except OSError as error:
        raise DashboardError(
            f"optuna-dashboard cannot listen on {host}:{port} ({error.strerror or error}); "
            "pass --port with a free port"
        ) from None
    backend = None
    try:
        backend = open_storage(storage or store.storage_url)
        server.set_app(optuna_dashboard.wsgi(backend))
        server.serve_forever()
    finally:
        server.server_close()
        if backend is not None:
            backend.engine.dispose()  # closes SQLite, which then removes its -wal/-shm files
