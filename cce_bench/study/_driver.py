"""A whole study: tune every arm, evaluate the tuned settings over paired seeds, resume anything.

``run_study`` is what ``cce-bench run``, ``tune`` and ``evaluate`` call. It checks everything
that can fail fast (results folder, storage, cluster) before loading data or training, keeps one
driver loop that feeds Ray with trials and runs of every arm in turn (an arm's evaluation starts
as soon as its own tuning is done, so the cluster never idles waiting for the slowest arm), and
reports a :class:`StudyProgress` snapshot whenever a trial or run changes state.

Resuming is the default: the results folder and the Optuna storage are the whole state. On start,
trials a killed driver left RUNNING are marked interrupted and replaced, finished trials count
against the budget, and evaluation runs already recorded are skipped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cce_bench.data.pipeline import load_run_data, split_differences
from cce_bench.errors import ResultsError
from cce_bench.study._arms import Arm, JobSource, study_arms, tuning_replicate
from cce_bench.study._estimate import estimate_remaining
from cce_bench.study._evaluation import (
    ArmEvaluator,
    load_external_test,
    unevaluated_records,
    with_external_part,
)
from cce_bench.study._executor import (
    Executor,
    Job,
    JobDone,
    Resources,
    check_address,
    check_resources,
    fit_concurrency,
    node_resources,
    start_ray,
    stop_ray,
)
from cce_bench.study._health import MachineHealth, NoMachineLeftError
from cce_bench.study._progress import (
    StudyProgress,
    arm_progress,
    estimate_eta,
    first_failure,
)
from cce_bench.study._seeds import SeedSchedule
from cce_bench.study._tuning import (
    ArmTuner,
    ArmWithoutTrialError,
    best_params,
    has_complete_trial,
    mark_interrupted,
    open_arm_study,
    tuning_specs_reading_test,
)
from cce_bench.study.storage import open_existing_storage, open_study_storage, redact_url
from cce_bench.study.store import (
    CorruptRecordError,
    ResultsStore,
    check_writable,
    completed_keys,
    folder_lock,
    resolve_results_folder,
)

if TYPE_CHECKING:
    import optuna

    from cce_bench.config import StudySpec

PHASES = ("tune", "evaluate")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyOutcome:
    """What ``run_study`` did: where the results are, each arm's settings, what went wrong."""

    results_dir: Path
    progress: StudyProgress
    best_params: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: Why the study has nothing to show: the first failure's cause when no trial and no
    #: evaluation run ever completed (every run failed in its worker), else None.
    failure: str | None = None


@dataclass(frozen=True)
class DriverOptions:
    """How the driver loop runs a study: which phases, who hears of each event, what it resumes."""

    phases: tuple[str, ...] = PHASES
    on_event: Callable[[StudyProgress], None] | None = None
    #: ``time.monotonic()`` when the study began, so the elapsed time counts the data load too.
    started: float | None = None
    #: The run records read (and repaired) at start; None reads them from the store.
    records: list[dict[str, Any]] | None = None
    #: Runs in flight at once (``fit_concurrency``'s ``max_concurrent``); None reads the spec's.
    slots: int | None = None


# -- data ----------------------------------------------------------------------------------------
def load_study_data(spec: StudySpec) -> tuple[dict[int, Any], dict[str, Any]]:
    """One ``PreparedData`` per image size the study's backbones use, and the split manifest.

    The split depends on the images and ``split_seed`` only, never on the size, so every size
    sees the same manifest; each size is decoded once into the cache (``load_run_data``). An
    ``external_test`` set joins each size as part ``external``.
    """
    prepared: dict[int, Any] = {}
    manifest: dict[str, Any] = {}
    for size in sorted({spec.image_size_for(b) for b in spec.models.backbones}):
        _, prepared[size], manifest = load_run_data(
            spec.data.source,
            spec.data.path,
            image_size=size,
            split=spec.data.split,
            test_fraction=spec.data.test_fraction,
            val_fraction=spec.data.val_fraction,
            split_seed=spec.data.split_seed,
            n_images=spec.data.n_images,
            difficulty=spec.data.difficulty,
            resize_mode=spec.data.resize_mode,
            metadata=spec.data.metadata,
        )
        if spec.data.external_test:
            prepared[size] = with_external_part(prepared[size], load_external_test(spec, size))
    return prepared, manifest


# -- the driver loop -----------------------------------------------------------------------------
class StudyDriver:
    """Feeds the executor with every arm's trials, then that arm's evaluation runs, in turn."""

    def __init__(
        self,
        spec: StudySpec,
        store: ResultsStore,
        studies: dict[Arm, list[optuna.Study]],
        data_refs: dict[int, Any],
        options: DriverOptions = DriverOptions(),
    ) -> None:
        self.spec, self.store, self.studies, self.data_refs = spec, store, studies, data_refs
        self.phases, self.on_event = options.phases, options.on_event
        self.records = store.read_runs() if options.records is None else options.records
        #: Per arm, one tuner per tuning replicate (``tune.replicates``), replicate 0 first.
        self.tuners = {
            arm: [
                ArmTuner(study, spec, arm, self._ref(arm), replicate)
                for replicate, study in enumerate(arm_studies)
            ]
            for arm, arm_studies in studies.items()
        }
        self.evaluators: dict[Arm, ArmEvaluator] = {}
        #: Per backbone, the paired seeds its arms may run (``evaluate.stopping``).
        self.schedules = {
            backbone: SeedSchedule(spec, backbone, lambda: self.records)
            for backbone in spec.models.backbones
        }
        self.stops_told: set[str] = set()
        self.problems: dict[Arm, str] = {}
        self.started = time.monotonic() if options.started is None else options.started
        self.durations: list[float] = []
        #: The throughput probe's prediction (seconds from ``started``), shown as the ETA until
        #: the first jobs finish; set by ``_drive`` once the probe has run.
        self.initial_eta_s: float | None = None
        self.submitted: dict[str, float] = {}
        #: Runs in flight at once: ``max_concurrent``, capped at the cluster's GPU slots.
        wanted = spec.resources.max_concurrent
        #: Consecutive machine failures per node and GPU (``resources.machine_failures``).
        self.health = MachineHealth(spec.resources.machine_failures)
        self.deadline_misses: dict[str, int] = {}
        #: The executor whose nodes ``health`` leaves out; set by ``_drive``.
        self.executor: Executor | None = None
        self.slots = options.slots or (wanted if isinstance(wanted, int) else 1)
        self._turn = 0

    def _ref(self, arm: Arm) -> Any:
        return self.data_refs[self.spec.image_size_for(arm.backbone)]

    def sources(self) -> list[JobSource]:
        """Every arm's current source of jobs, in a fixed order (tuner, then evaluator)."""
        found: list[JobSource] = []
        for arm, tuners in self.tuners.items():
            tuning = [tuner for tuner in tuners if not tuner.finished]
            if "tune" in self.phases and tuning:
                found.extend(tuning)
            elif "evaluate" in self.phases and arm not in self.problems:
                evaluator = self.evaluators.get(arm) or self._start_evaluation(arm)
                if evaluator is not None:
                    found.append(evaluator)
        return found

    def _start_evaluation(self, arm: Arm) -> ArmEvaluator | None:
        try:
            params = [best_params(study, arm) for study in self.studies[arm]]
        except ArmWithoutTrialError as error:
            # Recorded (as failed seeds) so the report lists the arm instead of dropping it.
            self.problems[arm] = str(error)
            self.schedules[arm.backbone].exclude(arm.loss)
            for record in unevaluated_records(self.spec, arm, str(error), self.records):
                self.records.append(self.store.append_run(record))
            self.emit(f"{arm.label}: {error}")
            return None
        # Seeds count as done only with today's best setting: a study whose tuning was extended
        # after evaluation re-evaluates every seed with the new best (later records win).
        mine = [r for r in self.records if (r.get("backbone"), r.get("arm")) == astuple(arm)]
        current = (
            r for r in mine if r.get("params") == params[tuning_replicate(self.spec, r["seed"])]
        )
        done = completed_keys(current)
        if completed_keys(mine) - done:
            self.emit(f"{arm.label}: best setting changed since its seeds ran; re-evaluating")
        self.evaluators[arm] = ArmEvaluator(
            self.spec,
            arm,
            params,
            self.store,
            self._ref(arm),
            done_keys=done,
            schedule=self.schedules[arm.backbone],
        )
        return self.evaluators[arm]

    def next_job(self) -> Job | None:
        """Round-robin over arms, so that every arm advances and the slots stay full."""
        sources = self.sources()
        for offset in range(len(sources)):
            source = sources[(self._turn + offset) % len(sources)]
            job = source.next_job()
            if job is not None:
                self._turn = (self._turn + offset + 1) % max(1, len(sources))
                self.submitted[job.key] = time.monotonic()
                self.emit(f"started {job.key}")
                return job
        self._tell_stops()
        return None

    def _tell_stops(self) -> None:
        """Say once per backbone why the anytime design stopped adding seeds to it."""
        for backbone, schedule in self.schedules.items():
            if schedule.stop_reason and backbone not in self.stops_told:
                self.stops_told.add(backbone)
                self.emit(schedule.stop_reason)

    def on_report(self, job: Job, epoch: int, value: float) -> bool:
        prune = _source_of(job).on_report(job, epoch, value)
        if prune:
            self.emit(f"pruned {job.key} after epoch {epoch} ({self.spec.tune.metric} {value:.4f})")
        return prune

    def on_done(self, done: JobDone) -> None:
        if done.deadline:
            self.deadline_misses[done.job.key] = self.deadline_misses.get(done.job.key, 0) + 1
            # A run late twice is its own fault (a setting that trains slowly), not the
            # machine's: it is recorded as failed instead of looping.
            done.machine = self.deadline_misses[done.job.key] < 2
        if done.machine:
            self._machine_failed(done)
            return
        self.health.succeeded(done.node.get("node_id", ""), done.node.get("gpu_uuid", ""))
        record = _source_of(done.job).on_done(done)
        if record is not None:
            self.records.append(record)
        self.durations.append(time.monotonic() - self.submitted.pop(done.job.key, time.monotonic()))
        outcome = done.result.outcome if done.result is not None else f"failed ({done.error})"
        self.emit(f"finished {done.job.key}: {outcome}")

    def _machine_failed(self, done: JobDone) -> None:
        """A run the machine failed is replaced, never counted; a node or GPU that keeps
        failing gets no more work, and with no node left the study stops
        (``NoMachineLeftError``)."""
        error = done.error or "machine failure"
        self.submitted.pop(done.job.key, None)
        _source_of(done.job).requeue(done.job, error)
        self.emit(f"machine failure in {done.job.key}, to be run again: {error}")
        node, gpu = done.node.get("node_id", ""), done.node.get("gpu", "")
        for note in self.health.failed(node, gpu, error):
            self.emit(note)
        if self.executor is not None:
            self.executor.excluded_nodes = set(self.health.excluded_nodes)
            self.health.check_some_left(self.executor.alive_nodes())

    def interrupt(
        self, executor: Executor, reason: str = "interrupted by the user (Ctrl-C)"
    ) -> None:
        """Ctrl-C: cancel the tasks, record the trials as interrupted, append no partial run."""
        executor.cancel_all()
        tuners = [tuner for arm_tuners in self.tuners.values() for tuner in arm_tuners]
        for source in [*tuners, *self.evaluators.values()]:
            source.abandon_running(reason)

    def emit(self, event: str) -> None:
        if self.on_event is not None:
            self.on_event(self.progress(event))

    def progress(self, event: str = "") -> StudyProgress:
        arms = []
        for arm, arm_studies in self.studies.items():
            evaluator = self.evaluators.get(arm)
            running = evaluator.in_flight() if evaluator is not None else 0
            progress = arm_progress(self.spec, arm, arm_studies, self.records, eval_running=running)
            arms.append(replace(progress, problem=self.problems.get(arm)))
        slots = self.slots
        # The first job on each worker also pays its import of torch and timm (10-30 s on a
        # slow CPU), so finished jobs replace the probe's estimate only from the second round.
        measured = len(self.durations) >= 2 * slots or self.initial_eta_s is None
        mean_job_s = (
            sum(self.durations) / len(self.durations) if measured and self.durations else None
        )
        eta_s = estimate_eta(tuple(arms), mean_job_s, self.phases, slots)
        if eta_s is None and self.initial_eta_s is not None:
            eta_s = max(0.0, self.initial_eta_s - (time.monotonic() - self.started))
        return StudyProgress(
            name=self.spec.name,
            results_dir=self.store.root,
            metric=self.spec.tune.metric,
            arms=tuple(arms),
            elapsed_s=time.monotonic() - self.started,
            eta_s=eta_s,
            event=event,
        )


def _source_of(job: Job) -> JobSource:
    """The tuner or evaluator that made ``job``: every job the driver starts has one."""
    if job.source is None:
        raise ValueError(f"job {job.key} was not made by an arm's tuner or evaluator")
    return job.source


# -- the entry points ----------------------------------------------------------------------------
def run_study(
    spec: StudySpec,
    results_dir: Path | str,
    *,
    phases: tuple[str, ...] = PHASES,
    storage: str | None = None,
    address: str | None = None,
    fresh: bool = False,
    on_event: Callable[[StudyProgress], None] | None = None,
    train_fn: Callable[..., Any] | None = None,
    worker_logs: bool = False,
) -> StudyOutcome:
    """Tune and/or evaluate ``spec`` with results under ``<results_dir>/<name>/``; resumable.

    Fails fast, before any data is loaded or anything is written: ``ResultsError`` (folder not
    writable, a different study already there), ``StorageError`` (``storage`` malformed or
    unreachable), ``ClusterError`` (no Ray at ``address``). Then the data is loaded before Ray
    starts (a ``DataError`` costs the load, not Ray's 15-25 s start-up), and a run that no node
    of the cluster can schedule raises ``ClusterError`` (Ray would wait forever); nothing is
    written before these checks pass. Ctrl-C cancels the running tasks, marks their trials
    interrupted and re-raises ``KeyboardInterrupt``. ``train_fn`` replaces ``train_run`` (tests);
    ``worker_logs`` shows the Ray workers' own output (``cce-bench --verbose``).
    ``StudyOutcome.failure`` says why when no trial and no evaluation run completed.
    """
    import optuna

    started = time.monotonic()
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown phases {sorted(unknown)}; use {PHASES}")
    store, notes = resolve_results_folder(spec, results_dir, fresh=fresh)
    check_writable(store)
    with contextlib.ExitStack() as stack:
        if store.exists():
            stack.enter_context(folder_lock(store))
        records, notes = _read_records(store, notes)
        _check_same_weights(store, spec, records)
        # Fail fast: a bad URL or a missing cluster must cost seconds, not a data load.
        backend = open_study_storage(store, storage) if storage or store.exists() else None
        check_address(address)
        logger.info("loading the data of %s", spec.name)
        prepared, manifest = load_study_data(spec)
        if store.exists():
            _check_same_split(store, spec, manifest)
        if start_ray(address, worker_logs=worker_logs):
            stack.callback(stop_ray)
        nodes = node_resources()
        check_resources(run_resources(spec), device=spec.train.device, nodes=nodes)
        _preflight(spec, nodes)
        resources, capped = fit_concurrency(run_resources(spec), nodes)
        notes = (*notes, capped) if capped else notes
        if not store.exists():
            stack.enter_context(folder_lock(store))
            backend = backend or open_study_storage(store, None)
            _start_folder(store, spec, manifest, storage)
        else:
            notes = (*notes, *_budget_notes(store, spec, records))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        options = DriverOptions(phases, on_event, started, records, resources.max_concurrent)
        return _drive(spec, store, backend, prepared, resources, options, train_fn, notes)


def _preflight(spec: StudySpec, nodes: list[dict[str, float]]) -> None:
    """One task per node checks it against the driver (``_preflight.check_nodes``): for a GPU
    study or a cluster of several nodes; a one-node CPU study runs where the driver does."""
    from cce_bench.study._preflight import check_nodes

    shares = [share for share in run_resources(spec).gpu_shares if share > 0]
    if shares or len(nodes) > 1:
        check_nodes(spec, min(shares, default=0.0))


def _read_records(
    store: ResultsStore, notes: tuple[str, ...]
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The run records; a truncated last line (a driver killed mid-append) is set aside.

    That run was never counted, so it simply runs again; corruption anywhere else still raises.
    """
    try:
        return store.read_runs(), notes
    except CorruptRecordError as error:
        records = store.read_runs(repair=True)
        return records, (*notes, f"{error.args[0].split(';')[0]}: set aside in runs.jsonl.corrupt")


def _check_same_weights(
    store: ResultsStore, spec: StudySpec, records: list[dict[str, Any]]
) -> None:
    """Resume only from the weights files the finished runs started from.

    A weights file is named by its path in the study, and its path is all the fingerprint sees:
    a file overwritten in place (re-converted, re-downloaded, another checkpoint) would let new
    runs start from other weights than the finished runs they are paired with, and the report
    would compare the two as one arm. Each run record carries the SHA-256 of its file.
    """
    for record in records:
        recorded = (record.get("spec") or {}).get("pretrained_sha256")
        backbone = record.get("backbone")
        current = spec.models.weights_sha256.get(backbone)
        if recorded and current and recorded != current:
            path = spec.models.initialisation(backbone)
            raise ResultsError(
                f"{path}, the weights file of {backbone}, has SHA-256 {current}, but the runs "
                f"in {store.runs_path} started from {recorded}; restore the file they used, "
                "or pass --fresh to start over in a new folder with these weights"
            )


def _check_same_split(store: ResultsStore, spec: StudySpec, manifest: dict[str, Any]) -> None:
    """Resume only on the images the study started with.

    ``data.path`` is not part of the study's fingerprint (``config.PLACEMENT_KEYS``: a dataset
    may move), so the stored split manifest is what proves the data is the same.
    """
    changes = split_differences(store.split_manifest(), manifest)
    if changes:
        where = spec.data.path or f"source {spec.data.source!r}"
        raise ResultsError(
            f"{store.split_path} records another split than the data at {where} gives "
            f"({'; '.join(changes[:3])}); point --data at the dataset this study started "
            "with, or pass --fresh to start over in a new folder"
        )


def _budget_notes(
    store: ResultsStore, spec: StudySpec, records: list[dict[str, Any]]
) -> tuple[str, ...]:
    """Log a resume's changed budgets in the results folder, and say so (a note per change)."""
    completed = sum(
        record.get("outcome") == "completed" and record.get("phase", "evaluate") == "evaluate"
        for record in records
    )
    from cce_bench.study.budget_log import BUDGET_LOG_FILE, record_budget_changes

    entries = record_budget_changes(store, spec.to_dict(), completed_runs=completed)
    return tuple(
        f"{entry['key']} changed from {entry['from']} to {entry['to']}, with {completed} "
        f"completed evaluation runs on record; logged in {BUDGET_LOG_FILE}, and the report "
        'lists it under "Looks at the data"'
        for entry in entries
    )


def _start_folder(
    store: ResultsStore, spec: StudySpec, manifest: dict[str, Any], storage: str | None
) -> None:
    """First run: the split manifest, the storage (if not the default) and, last, the study.

    ``study.toml`` goes last because its presence marks the folder as a started study.
    """
    store.write_split_manifest(manifest)
    if storage:
        store.write_storage_url(redact_url(storage))
    store.write_study(spec.to_toml())


def _drive(
    spec: StudySpec,
    store: ResultsStore,
    storage: optuna.storages.BaseStorage,
    prepared: dict[int, Any],
    resources: Resources,
    options: DriverOptions,
    train_fn: Callable[..., Any] | None,
    notes: tuple[str, ...],
) -> StudyOutcome:
    """Open every arm's study, put the data in the object store, and run the driver loop."""
    studies: dict[Arm, list[optuna.Study]] = {}
    for arm in study_arms(spec):
        names = store.optuna_study_names(spec, arm.backbone, arm.loss)
        studies[arm] = [
            open_arm_study(storage, spec, arm, study_name=name, replicate=replicate)
            for replicate, name in enumerate(names)
        ]
        for study in studies[arm]:
            mark_interrupted(study, "the driver stopped while it ran (killed or interrupted)")
    executor = Executor(resources, train_fn=train_fn)
    # The images go to the object store once per size; every task gets the same reference.
    refs = {size: executor.put(data) for size, data in prepared.items()}
    driver = StudyDriver(spec, store, studies, refs, options)
    driver.executor = executor
    for note in notes:
        driver.emit(note)
    estimate = estimate_remaining(
        spec, prepared, driver.progress().arms, driver.phases, slots=resources.max_concurrent
    )
    if estimate is not None:
        driver.initial_eta_s = (time.monotonic() - driver.started) + estimate.seconds
        driver.emit(estimate.describe())
    try:
        executor.run(driver.next_job, driver.on_report, driver.on_done)
    except KeyboardInterrupt:
        driver.interrupt(executor)
        raise
    except NoMachineLeftError as error:
        driver.interrupt(executor, f"the study stopped: {error}")
        raise
    best = {
        a.label + (f"/r{r}" if r else ""): s.best_params
        for a, arm_studies in studies.items()
        for r, s in enumerate(arm_studies)
        if has_complete_trial(s)
    }
    return StudyOutcome(
        results_dir=store.root,
        progress=driver.progress("done"),
        best_params=best,
        problems=tuple(driver.problems.values()),
        notes=notes,
        failure=first_failure(studies, driver.records),
    )


def run_resources(spec: StudySpec) -> Resources:
    """What each of the study's runs asks Ray for (``[resources]``)."""
    return Resources(
        cpus_per_run=spec.resources.cpus_per_run,
        gpus_per_run=spec.resources.gpus_per_run,
        max_concurrent=spec.resources.max_concurrent,
        max_retries=spec.resources.max_retries,
        machine_failures=spec.resources.machine_failures,
        deadline_factor=spec.resources.deadline_factor,
        deadline_floor_s=spec.resources.deadline_floor_s,
    )


def check_tuning_split(results_dir: Path | str, *, storage: str | None = None) -> list[str]:
    """Tuning trials of a finished study that read a test part: empty, or tuning saw the test set.

    Each trial stores its ``RunSpec``; together with ``split.json`` (which image ids form the
    test part) this lets anyone check that tuning never saw a test image. Only this study's
    arm studies are read: a shared storage holds other folders' studies too, and their trials
    say nothing about this one.
    """
    import optuna

    store = ResultsStore(results_dir)
    backend = open_existing_storage(storage or store.storage_url)
    if backend is None:
        return []
    spec = store.study()
    mine = {
        name
        for a in study_arms(spec)
        for name in store.optuna_study_names(spec, a.backbone, a.loss)
    }
    specs = []
    for summary in backend.get_all_studies():
        if summary.study_name not in mine:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=backend)
        specs += [t.user_attrs["spec"] for t in study.get_trials() if "spec" in t.user_attrs]
    return tuning_specs_reading_test(specs)
