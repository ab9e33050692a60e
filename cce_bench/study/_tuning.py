"""Optuna's side of tuning: storage, one study per arm, sampler, pruner, search space, budget.

Optuna owns the search, Ray owns the compute: this module never touches Ray; the
driver loop in ``cce_bench.study`` asks these studies for trials, runs them as Ray tasks and
tells the results back, so only the driver process writes the storage (SQLite stays safe and a
cluster needs no shared filesystem).

Every arm gets the same budget (``tune.n_trials``), counted over finished trials: COMPLETE,
PRUNED and FAIL, except trials that a killed or interrupted driver left behind, which carry the
user attribute ``interrupted`` and are replaced.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cce_bench.config.schema import PRUNERS
from cce_bench.errors import ResultsError, UnknownNameError
from cce_bench.study._arms import Arm, build_run_spec
from cce_bench.study._executor import GPU_FIELDS, Job

if TYPE_CHECKING:
    import optuna

    from cce_bench.config import StudySpec
    from cce_bench.study._executor import JobDone

#: The paper's confusion set H = {j != y : l_j > mu_neg} (the text before its Eq. 3) is tau = 0;
#: tuning tries it first, so the tuned arm's validation score is never below the paper's rule.
PAPER_TAU = 0.0


class ArmWithoutTrialError(ResultsError):
    """An arm has no complete trial, so evaluation has no settings to use for it."""


# -- sampler, pruner, space ----------------------------------------------------------------------
def make_sampler(spec: StudySpec, arm: Arm, replicate: int = 0) -> optuna.samplers.TPESampler:
    """TPE seeded per arm, with the constant liar for parallel trials.

    The per-arm offset (CRC32 of ``backbone/arm``, stable across Python processes unlike
    ``hash``) keeps arms from proposing identical first trials. TPE's own default of 10 random
    start-up trials would make a 4-trial quickstart pure random search, so it is capped at half
    the budget (at least 2). Tuning replicate r seeds it with ``sampler_seed + r``.
    """
    import optuna

    offset = zlib.crc32(arm.label.encode("utf-8")) % 100_000
    with warnings.catch_warnings():  # constant_liar is "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=int(spec.tune.sampler_seed) + replicate + offset,
            constant_liar=True,
            n_startup_trials=min(10, max(2, int(spec.tune.n_trials) // 2)),
        )


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """The study's pruner by name (one of ``PRUNERS``); steps are epochs, counted from 1.

    ``median``: stop a trial whose epoch value is below the median of earlier trials at that
    epoch, once 2 trials finished, never on epoch 1 (Optuna prunes from step ``n_warmup_steps``
    on, hence 2): the first epoch, still in warm-up, says little about the final score.

    ``successive_halving`` (asynchronous successive halving): rungs at epochs 2, 4, 8, ...; a
    trial reaching a rung goes on only if its value is among the best n // 2 (at least the best
    one) of the n values recorded at that rung so far, its own included: the first trial to reach
    a rung always goes on, the second only if it beats the first. ``min_resource=1`` makes one
    unit of resource one epoch. Reduction factor 2 because runs here are 3-8 epochs long: with
    Optuna's default of 4 the rungs would be epochs 1, 4, 16, one look in warm-up and at most
    one more; with 2 a 5- to 8-epoch run is looked at on epochs 2 and 4 (a rung on the last
    epoch is skipped, see ``ArmTuner.on_report``). ``min_early_stopping_rate=1`` moves the first
    rung from epoch 1 to epoch 2, for the median pruner's warm-up reason.

    ``hyperband``: brackets of successive halving (reduction factor 3, Optuna's default) over
    resources 1..epochs. For 3-8 epochs that is floor(log3(epochs)) + 1 = 2 brackets, one with
    rungs at epochs 1 and 3, one at epoch 3 only; a hash of the study name and trial number puts
    about 3 trials in 5 in the first. A trial is compared only with trials of its own bracket, so
    a budget of n trials leaves each bracket about n / 2 to compare: in a small study most
    trials are the first or second of their bracket, which successive halving lets go on, and
    hyperband prunes as designed only with larger budgets (Optuna's documentation recommends a
    larger ``n_trials`` with TPE, counting 10 start-up trials per bracket).
    """
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=2, min_early_stopping_rate=1
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(1, int(epochs)), reduction_factor=3
        )
    raise UnknownNameError(
        f"unknown pruner {name!r} in tune.pruner; use one of {', '.join(PRUNERS)}"
    )


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
    storage: optuna.storages.BaseStorage,
    spec: StudySpec,
    arm: Arm,
    *,
    study_name: str,
    replicate: int = 0,
) -> optuna.Study:
    """Create or load the arm's study (``study_name``: ``<name>/<backbone>/<arm>``).

    A fresh ``cce_tau`` study starts with the paper's tau = 0 when the tau range holds it.
    Optuna runs an enqueued value outside the distribution with only a warning, so enqueuing
    it anyway would let a tau the user excluded win and be evaluated.
    """
    import optuna

    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        sampler=make_sampler(spec, arm, replicate),
        pruner=make_pruner(spec.tune.pruner, spec.train.epochs),
        direction=spec.tune.direction,
        load_if_exists=True,
    )
    name_objective(study, spec.tune.metric)
    low, high = spec.tune.space.ranges_for(arm.loss).get("tau", (math.inf, -math.inf))
    if arm.loss == "cce_tau" and low <= PAPER_TAU <= high and not study.get_trials(deepcopy=False):
        study.enqueue_trial({"tau": PAPER_TAU}, user_attrs={"enqueued": "paper tau = 0"})
    return study


def name_objective(study: optuna.Study, metric: str) -> None:
    """Name the study's one objective ``validation <metric>``, once.

    optuna-dashboard labels every chart "Objective 0" without a name. The name is a study
    system attribute, so a study resumed from a storage written before names were set gets it
    on its first resume, and one that has it is not written again. ``set_metric_names`` is
    marked experimental in Optuna 4; its warning says nothing a user can act on.
    """
    import optuna

    name = f"validation {metric}"
    if study.metric_names == [name]:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([name])


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
#: Tuning never sees the test split, or the tuned setting would be chosen on the images that
#: judge it: trials train on train and score on val.
TUNING_PARTS: tuple[str, ...] = ("train",)
TUNING_EVAL_PART = "val"
#: The part no tuning run may name; the split manifest in split.json lists its image ids.
TEST_PARTS = frozenset({"test", "external"})


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

    The arm's ``JobSource`` while it tunes: ``next_job`` starts a trial, ``on_report`` relays an
    epoch's validation value to Optuna and returns the pruner's decision, ``on_done`` finishes
    the trial. Only this object, in the driver process, writes the arm's study.
    """

    def __init__(
        self, study: optuna.Study, spec: StudySpec, arm: Arm, data_ref: Any, replicate: int = 0
    ) -> None:
        self.study, self.spec, self.arm, self.data_ref = study, spec, arm, data_ref
        self.replicate = replicate
        self.space = search_space(spec, arm.loss)
        self.running: dict[str, optuna.Trial] = {}
        self.reported: dict[str, set[int]] = {}  # epochs told to Optuna, per running trial

    def remaining(self) -> int:
        return int(self.spec.tune.n_trials) - trials_used(self.study) - len(self.running)

    @property
    def finished(self) -> bool:
        return self.remaining() <= 0 and not self.running

    def in_flight(self) -> int:
        return len(self.running)

    def next_job(self) -> Job | None:
        if self.remaining() <= 0:
            return None
        trial = self.study.ask(self.space)
        run_spec = build_run_spec(
            self.spec,
            self.arm,
            trial.params,
            # One seed for every trial (common random numbers): trials differ only in params.
            # Each tuning replicate has its own, so replicates differ as independent tunings.
            seed=int(self.spec.tune.sampler_seed) + self.replicate,
            train_parts=TUNING_PARTS,
            eval_part=TUNING_EVAL_PART,
        )
        if tuning_specs_reading_test([run_spec.to_dict()]):
            raise AssertionError(f"tuning run would read the test split: {run_spec}")
        for name, value in (("backbone", self.arm.backbone), ("arm", self.arm.loss)):
            trial.set_user_attr(name, value)
        trial.set_user_attr("spec", run_spec.to_dict())
        key = f"{self.study.study_name}#{trial.number}"
        self.running[key] = trial
        return Job(key, run_spec, self.data_ref, self.spec.tune.metric, source=self)

    def on_report(self, job: Job, epoch: int, value: float) -> bool:
        """Report an epoch's validation value; True when the pruner stops the trial."""
        trial = self.running.get(job.key)
        if trial is None or not math.isfinite(value):
            return False  # a NaN run stops itself as diverged; Optuna cannot rank NaN
        steps = self.reported.setdefault(job.key, set())
        if int(epoch) not in steps:  # a run retried after a lost worker reports epochs again
            trial.report(value, step=int(epoch))
            steps.add(int(epoch))
        if int(epoch) >= job.run_spec.epochs:
            # Stopping after the last epoch saves no training and would throw away a finished
            # trial's score: a rung that falls on the last epoch (hyperband's at epoch 3 of a
            # 3-epoch run) would mark trained-out trials pruned and hide them from the best.
            return False
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
            **{name: done.node[name] for name in GPU_FIELDS if name in done.node},
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

    def requeue(self, job: Job, reason: str) -> None:
        """The machine failed this trial: it is marked interrupted, so it does not count
        against ``tune.n_trials`` and a new trial takes its place."""
        from optuna.trial import TrialState

        trial = self.running.pop(job.key)
        self.reported.pop(job.key, None)
        trial.set_user_attr("interrupted", True)
        trial.set_user_attr("reason", f"machine failure: {reason}")
        self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)

    def abandon_running(self, reason: str) -> None:
        """Ctrl-C: the in-flight trials become interrupted FAIL trials and will be replaced."""
        from optuna.trial import TrialState

        for trial in self.running.values():
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("reason", reason)
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        self.running.clear()
        self.reported.clear()
