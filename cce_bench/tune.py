"""Optuna's side of tuning: storage, one study per arm, sampler, pruner, search space, budget.

DESIGN.md: "Optuna owns the search, Ray owns the compute". This module never touches Ray; the
driver loop in ``cce_bench.study`` asks these studies for trials, runs them as Ray tasks and
tells the results back, so only the driver process writes the storage (SQLite stays safe and a
cluster needs no shared filesystem).

Every arm gets the same budget (``tune.n_trials``), counted over finished trials: COMPLETE,
PRUNED and FAIL, except trials that a killed or interrupted driver left behind, which carry the
user attribute ``interrupted`` and are replaced.
"""

from __future__ import annotations

import math
import re
import warnings
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cce_bench.errors import ResultsError, StorageError, UnknownNameError

if TYPE_CHECKING:
    import optuna

    from cce_bench.config import StudySpec
    from cce_bench.execution import Job, JobDone
    from cce_bench.train import RunSpec

#: What a masked password looks like in URLs shown to people or written to disk.
MASK = "***"

#: The paper's confusion set H = {j != y : l_j > mu_neg} (the text before its Eq. 3) is tau = 0;
#: tuning tries it first, so the tuned arm's validation score is never below the paper's rule.
PAPER_TAU = 0.0


class ArmWithoutTrialError(ResultsError):
    """An arm has no complete trial, so evaluation has no settings to use for it."""


@dataclass(frozen=True)
class Arm:
    """One (backbone, loss) pair: the unit that gets its own Optuna study and budget."""

    backbone: str
    arm: str

    @property
    def label(self) -> str:
        return f"{self.backbone}/{self.arm}"


# -- storage -------------------------------------------------------------------------------------
def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (issue 7: never in logs or reports).

    >>> redact_url("postgresql://user:secret@host/db")
    'postgresql://user:***@host/db'
    """
    masked = re.sub(r"(://[^:/@]*:)[^@/]*@", rf"\g<1>{MASK}@", url)
    return re.sub(r"(?i)(password=)[^&;]*", rf"\g<1>{MASK}", masked)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Open (and create) an Optuna RDB storage, failing fast with a redacted message.

    SQLite is switched to write-ahead logging so that ``optuna-dashboard`` can read while the
    driver writes: in WAL mode readers never block the writer. Network databases get a 10 s
    connect timeout so that an unreachable host fails in seconds, before any work starts.
    """
    import sqlite3

    import optuna
    import sqlalchemy.exc

    if MASK in url:
        raise StorageError(
            f"storage {url} was recorded without its password; pass --storage with the full URL"
        )
    is_sqlite = url.startswith("sqlite")
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": 60}}
        if is_sqlite
        else {"connect_args": {"connect_timeout": 10}}
    )
    try:
        if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
            _use_write_ahead_log(Path(url[len("sqlite:///") :]))
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except ImportError:
        dialect = url.split(":", 1)[0]
        raise StorageError(
            f"cannot open Optuna storage {redact_url(url)}: the database driver for {dialect} "
            "is not installed; install it (psycopg2-binary for PostgreSQL, PyMySQL for MySQL)"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error, ValueError, OSError) as error:
        reason = _scrub(str(error).splitlines()[0] if str(error) else type(error).__name__, url)
        raise StorageError(
            f"cannot open Optuna storage {redact_url(url)}: {reason}; pass --storage with a "
            "reachable SQLAlchemy URL such as sqlite:///results/optuna.db or "
            "postgresql://user:password@host/db"
        ) from None
    return storage


def _use_write_ahead_log(path: Path) -> None:
    """Switch a SQLite file to WAL (persistent, so once is enough), outside any transaction."""
    import sqlite3

    if not path.parent.is_dir():
        return  # let SQLAlchemy report the missing folder in its own words
    connection = sqlite3.connect(path, isolation_level=None, timeout=60)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def _scrub(text: str, url: str) -> str:
    """Remove the URL's password from a driver's error text, in case the driver quoted it."""
    match = re.search(r"://[^:/@]*:([^@/]*)@", url)
    return text.replace(match.group(1), MASK) if match and match.group(1) else text


# -- sampler, pruner, space ----------------------------------------------------------------------
def make_sampler(spec: StudySpec, arm: Arm) -> optuna.samplers.TPESampler:
    """TPE seeded per arm, with the constant liar for parallel trials.

    The per-arm offset (CRC32 of ``backbone/arm``, stable across Python processes unlike
    ``hash``) keeps arms from proposing identical first trials. TPE's own default of 10 random
    start-up trials would make a 4-trial quickstart pure random search, so it is capped at half
    the budget (at least 2).
    """
    import optuna

    offset = zlib.crc32(arm.label.encode("utf-8")) % 100_000
    with warnings.catch_warnings():  # constant_liar is "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=int(spec.tune.sampler_seed) + offset,
            constant_liar=True,
            n_startup_trials=min(10, max(2, int(spec.tune.n_trials) // 2)),
        )


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """The study's pruner by name; steps are epochs.

    ``median``: stop a trial whose epoch value is below the median of earlier trials at that
    epoch, once 2 trials finished, never on epoch 1 (steps are epochs counted from 1 and Optuna
    prunes from step ``n_warmup_steps`` on, hence 2): the first epoch, still in warm-up, says
    little about the final score. ``hyperband``: resources 1..epochs.
    """
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, int(epochs)))
    raise UnknownNameError(f"unknown pruner {name!r} in tune.pruner; use none, median or hyperband")


def search_space(spec: StudySpec, arm: str) -> dict[str, optuna.distributions.BaseDistribution]:
    """lr (log-uniform), aug_strength, and the loss's own parameters (e.g. CCE's tau).

    A parameter's range comes from ``[tune.space]`` when the study gives one, else from the
    loss's default (``cce_bench.losses.tunable_parameters``); see ``SearchSpace.ranges_for``.
    """
    from optuna.distributions import FloatDistribution

    return {
        name: FloatDistribution(float(low), float(high), log=(name == "lr"))
        for name, (low, high) in spec.tune.space.ranges_for(arm).items()
    }


# -- studies and budget --------------------------------------------------------------------------
def open_arm_study(
    storage: optuna.storages.BaseStorage, spec: StudySpec, arm: Arm, *, study_name: str
) -> optuna.Study:
    """Create or load the arm's study (``study_name``: ``<name>/<backbone>/<arm>``); a fresh
    ``cce_tau`` study starts with the paper's tau = 0."""
    import optuna

    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        sampler=make_sampler(spec, arm),
        pruner=make_pruner(spec.tune.pruner, spec.train.epochs),
        direction=spec.tune.direction,
        load_if_exists=True,
    )
    if arm.arm == "cce_tau" and not study.get_trials(deepcopy=False):
        study.enqueue_trial({"tau": PAPER_TAU}, user_attrs={"enqueued": "paper tau = 0"})
    return study


def mark_interrupted(study: optuna.Study, reason: str = "driver stopped") -> int:
    """Mark trials left RUNNING (by a killed or interrupted driver) as interrupted FAIL trials.

    Only the driver runs trials, so at start-up every RUNNING trial is an orphan. They keep their
    intermediate values (visible in the dashboard) but do not count against the budget.
    Returns how many were marked.
    """
    import optuna
    from optuna.trial import TrialState

    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for frozen in orphans:
        # FrozenTrial exposes no public id; Trial(study, id) is how Optuna itself wraps one.
        trial = optuna.trial.Trial(study, frozen._trial_id)
        trial.set_user_attr("interrupted", True)
        trial.set_user_attr("reason", reason)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    return len(orphans)


def counts_against_budget(trial: optuna.trial.FrozenTrial) -> bool:
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return trial.state in finished and not trial.user_attrs.get("interrupted", False)


def trials_used(study: optuna.Study) -> int:
    """Finished trials that count against ``tune.n_trials`` (interrupted ones do not)."""
    return sum(counts_against_budget(t) for t in study.get_trials(deepcopy=False))


def has_complete_trial(study: optuna.Study) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def best_params(study: optuna.Study, arm: Arm) -> dict[str, float]:
    """The best complete trial's parameters; ``ArmWithoutTrialError`` when there is none."""
    if not has_complete_trial(study):
        raise ArmWithoutTrialError(
            f"arm {arm.label} has no complete tuning trial (all pruned, diverged or failed), so "
            "it cannot be evaluated; widen tune.space (e.g. a lower lr) or raise tune.n_trials"
        )
    return dict(study.best_trial.params)


# -- run specs and the tuning split --------------------------------------------------------------
#: DESIGN.md: "Tuning never sees the test split": trials train on train and score on val.
TUNING_PARTS: tuple[str, ...] = ("train",)
TUNING_EVAL_PART = "val"
#: The part no tuning run may name; the split manifest in split.json lists its image ids.
TEST_PARTS = frozenset({"test", "external"})


def build_run_spec(
    spec: StudySpec,
    arm: Arm,
    params: Mapping[str, float],
    *,
    seed: int,
    train_parts: tuple[str, ...],
    eval_part: str,
) -> RunSpec:
    """The ``RunSpec`` of one trial or evaluation run: the study's recipe plus tuned ``params``.

    ``lr`` and ``aug_strength`` are recipe fields; every other parameter (tau, gamma, epsilon)
    belongs to the loss.
    """
    from cce_bench.train import RunSpec

    loss_params = {k: float(v) for k, v in params.items() if k not in ("lr", "aug_strength")}
    return RunSpec(
        backbone=arm.backbone,
        image_size=spec.image_size_for(arm.backbone),
        loss=arm.arm,
        loss_params=loss_params,
        optimizer=spec.train.optimizer,
        lr=float(params["lr"]),
        weight_decay=spec.train.weight_decay,
        batch_size=spec.train.batch_size,
        epochs=spec.train.epochs,
        warmup_epochs=spec.train.warmup_epochs,
        augment_policy=spec.train.augment_policy,
        aug_strength=float(params["aug_strength"]),
        seed=seed,
        train_parts=tuple(train_parts),
        eval_part=eval_part,
        device=run_device(spec),
        threads=spec.resources.threads_per_run or spec.resources.cpus_per_run,
        precision=spec.train.precision,
        pretrained=_pretrained(spec.models.pretrained),
    )


def run_device(spec: StudySpec) -> str:
    """``train.device`` as each run sees it: ``auto`` is ``cpu`` when runs ask Ray for no GPU.

    Ray narrows ``CUDA_VISIBLE_DEVICES`` only for a task it gives GPUs; a task that asked for
    none sees every GPU of its node. On a GPU machine ``auto`` would then put a study planned
    for CPUs on ``cuda:0``: every run on one card that Ray never counted, in bf16, with numbers
    that no longer match the same study on a CPU machine.
    """
    if spec.train.device == "auto" and spec.resources.gpus_per_run == 0:
        return "cpu"
    return spec.train.device


def _pretrained(value: bool | Any) -> bool | str:
    """A weights path travels as a string (RunSpec stays JSON-able)."""
    return value if isinstance(value, bool) else str(value)


def tuning_specs_reading_test(run_specs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The tuning run specs (``RunSpec.to_dict()``) that train or score on a test part.

    Empty for every study this engine runs; ``cce_bench.study.check_tuning_split`` applies it
    to the specs stored with each trial, so anyone can check the claim on a finished study.
    """
    leaks = []
    for run in run_specs:
        parts = set(run.get("train_parts", ())) | {run.get("eval_part")}
        if parts & TEST_PARTS:
            leaks.append(
                f"{run.get('backbone')}/{run.get('loss')} lr={run.get('lr')}: "
                f"trains on {list(run.get('train_parts', ()))}, scores on {run.get('eval_part')}"
            )
    return leaks


# -- one arm's tuning, driven by the study loop --------------------------------------------------
class ArmTuner:
    """Asks one arm's study for trials within its budget and tells it what happened.

    Used by the driver loop (``cce_bench.study``): ``next_job`` starts a trial, ``on_report``
    relays an epoch's validation value to Optuna and returns the pruner's decision, ``on_done``
    finishes the trial. Only this object, in the driver process, writes the arm's study.
    """

    def __init__(self, study: optuna.Study, spec: StudySpec, arm: Arm, data_ref: Any) -> None:
        self.study, self.spec, self.arm, self.data_ref = study, spec, arm, data_ref
        self.space = search_space(spec, arm.arm)
        self.running: dict[str, optuna.Trial] = {}
        self.reported: dict[str, set[int]] = {}  # epochs told to Optuna, per running trial

    def remaining(self) -> int:
        return int(self.spec.tune.n_trials) - trials_used(self.study) - len(self.running)

    @property
    def finished(self) -> bool:
        return self.remaining() <= 0 and not self.running

    def next_job(self) -> Job | None:
        from cce_bench.execution import Job

        if self.remaining() <= 0:
            return None
        trial = self.study.ask(self.space)
        run_spec = build_run_spec(
            self.spec,
            self.arm,
            trial.params,
            # One seed for every trial (common random numbers): trials differ only in params.
            seed=int(self.spec.tune.sampler_seed),
            train_parts=TUNING_PARTS,
            eval_part=TUNING_EVAL_PART,
        )
        if tuning_specs_reading_test([run_spec.to_dict()]):
            raise AssertionError(f"tuning run would read the test split: {run_spec}")
        for name, value in (("backbone", self.arm.backbone), ("arm", self.arm.arm)):
            trial.set_user_attr(name, value)
        trial.set_user_attr("spec", run_spec.to_dict())
        key = f"{self.study.study_name}#{trial.number}"
        self.running[key] = trial
        return Job(key, run_spec, self.data_ref, self.spec.tune.metric, context=self)

    def on_report(self, job: Job, epoch: int, value: float) -> bool:
        """Report an epoch's validation value; True when the pruner stops the trial."""
        trial = self.running.get(job.key)
        if trial is None or not math.isfinite(value):
            return False  # a NaN run stops itself as diverged; Optuna cannot rank NaN
        steps = self.reported.setdefault(job.key, set())
        if int(epoch) not in steps:  # a run retried after a lost worker reports epochs again
            trial.report(value, step=int(epoch))
            steps.add(int(epoch))
        return bool(trial.should_prune())

    def on_done(self, done: JobDone) -> None:
        from optuna.trial import TrialState

        trial = self.running.pop(done.job.key)
        self.reported.pop(done.job.key, None)
        trial.set_user_attr("attempts", done.attempts)
        if done.result is None:
            trial.set_user_attr("outcome", "failed")
            trial.set_user_attr("error", done.error)
            self.study.tell(trial, state=TrialState.FAIL)
            return
        result = done.result
        attrs = {
            "outcome": result.outcome,
            "images_per_s": float(result.images_per_s),
            "wall_time_s": float(result.wall_time_s),
            "node": done.node.get("hostname", result.node),
            "node_id": done.node.get("node_id", ""),
            "device": result.device,
        }
        for name, value in attrs.items():
            trial.set_user_attr(name, value)
        value = float(result.metrics.get(self.spec.tune.metric, float("nan")))
        if result.outcome == "completed" and math.isfinite(value):
            self.study.tell(trial, value)
        elif result.outcome == "diverged":
            trial.set_user_attr("reason", f"diverged at step {result.diverged_at_step}")
            self.study.tell(trial, state=TrialState.PRUNED)
        elif result.outcome == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            trial.set_user_attr("reason", f"metric {self.spec.tune.metric} is {value}")
            self.study.tell(trial, state=TrialState.FAIL)

    def abandon_running(self, reason: str) -> None:
        """Ctrl-C: the in-flight trials become interrupted FAIL trials and will be replaced."""
        from optuna.trial import TrialState

        for trial in self.running.values():
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("reason", reason)
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        self.running.clear()
        self.reported.clear()
