"""Optuna's side of tuning: storage URLs, arm studies, budget, and what a trial's end records."""

import math
import time
from dataclasses import replace

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from cce_bench.config.schema import (
    PRUNERS,
    DataSpec,
    LossesSpec,
    ModelsSpec,
    SearchSpace,
    StudySpec,
    TrainSpec,
    TuneSpec,
)
from cce_bench.errors import StorageError, UnknownNameError
from cce_bench.study._arms import Arm
from cce_bench.study._executor import Job, JobDone
from cce_bench.study._progress import first_failure
from cce_bench.study._tuning import (
    ArmTuner,
    make_pruner,
    mark_interrupted,
    open_arm_study,
    search_space,
    trials_used,
    tuning_specs_reading_test,
)
from cce_bench.study.storage import open_storage, redact_url
from cce_bench.train import RunResult

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def spec() -> StudySpec:
    """A study built straight from the schema (no registry checks needed for these tests)."""
    return StudySpec(
        name="t",
        data=DataSpec(source="synthetic", image_size=32),
        models=ModelsSpec(backbones=("resnet10t",)),
        losses=LossesSpec(arms=("ce", "cce_tau")),
        train=TrainSpec(epochs=2, batch_size=16),
        tune=TuneSpec(n_trials=3),
    )


@pytest.fixture
def storage(tmp_path):
    return open_storage(f"sqlite:///{tmp_path}/optuna.db")


def _result(outcome="completed", value=0.5, diverged_at_step=None) -> RunResult:
    return RunResult(
        outcome=outcome, metrics={"balanced_accuracy": value} if outcome == "completed" else {},
        history=[], image_ids=np.array(["a"]), y_true=np.array([0]),
        proba=np.full((1, 7), 1 / 7, dtype=np.float32), wall_time_s=1.0, images_per_s=10.0,
        peak_memory_mb=1.0, device="cpu", versions={}, node="host",
        diverged_at_step=diverged_at_step,
    )  # fmt: skip


def test_redact_url_masks_the_password():
    assert redact_url("postgresql://user:secret@host/db") == "postgresql://user:***@host/db"


def test_redact_url_masks_a_password_query_parameter():
    assert "secret" not in redact_url("mysql://host/db?user=u&password=secret")


def test_redact_url_leaves_a_url_without_password_alone():
    assert redact_url("sqlite:///results/q/optuna.db") == "sqlite:///results/q/optuna.db"


def test_malformed_storage_url_is_a_storage_error():
    with pytest.raises(StorageError, match="cannot open Optuna storage notaurl"):
        open_storage("notaurl")


def test_unusable_storage_fails_fast_without_showing_the_password():
    started = time.perf_counter()
    with pytest.raises(StorageError) as error:
        open_storage("postgresql://user:secret@127.0.0.1:1/db")
    # A hang guard, not a speed check: a driver without a connect timeout waits a minute or more.
    assert time.perf_counter() - started < 30
    assert "secret" not in str(error.value) and "user:***@" in str(error.value)


def test_sqlite_storage_uses_write_ahead_logging_so_the_dashboard_can_read(storage):
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("none", "NopPruner"),
        ("median", "MedianPruner"),
        ("successive_halving", "SuccessiveHalvingPruner"),
        ("hyperband", "HyperbandPruner"),
    ],
)
def test_pruner_by_name(name, kind):
    assert type(make_pruner(name, epochs=4)).__name__ == kind


def test_every_pruner_the_schema_accepts_can_be_built():
    for name in PRUNERS:
        make_pruner(name, epochs=5)


def test_unknown_pruner_names_every_choice():
    with pytest.raises(UnknownNameError, match="none, median, successive_halving, hyperband"):
        make_pruner("asha", epochs=5)


def test_successive_halving_stops_trials_outside_the_best_half_at_epochs_2_and_4():
    """Trial k reports ``values[k]`` at every epoch of 6 (trial 5 collapses at epoch 4)."""
    values = [0.5, 0.6, 0.2, 0.7, 0.3, 0.65]

    def objective(trial: optuna.Trial) -> float:
        for epoch in range(1, 7):
            value = values[trial.number]
            if trial.number == 5 and epoch >= 4:
                value = 0.4
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study = optuna.create_study(
        direction="maximize", pruner=make_pruner("successive_halving", epochs=6)
    )
    study.optimize(objective, n_trials=len(values))
    pruned = {t.number: t.last_step for t in study.trials if t.state == TrialState.PRUNED}
    # Trial 2 loses at the first rung among 3 values, trial 4 among 5 (best half: >= 0.6),
    # trial 5 at the second rung; nothing is pruned on the warm-up epoch 1.
    assert pruned == {2: 2, 4: 2, 5: 4}


def test_search_space_is_log_lr_plus_the_loss_parameters(spec):
    space = search_space(spec, "cce_tau")
    assert set(space) == {"lr", "aug_strength", "tau"}
    assert space["lr"].log and not space["aug_strength"].log
    assert set(search_space(spec, "ce")) == {"lr", "aug_strength"}


def test_cce_tau_study_starts_with_the_papers_tau_once(spec, storage):
    arm = Arm("resnet10t", "cce_tau")
    study = open_arm_study(storage, spec, arm, study_name="t/resnet10t/cce_tau")
    open_arm_study(storage, spec, arm, study_name="t/resnet10t/cce_tau")
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
    assert study.ask(search_space(spec, "cce_tau")).params["tau"] == 0.0


def test_trials_left_running_are_marked_interrupted_and_do_not_count(spec, storage):
    study = open_arm_study(storage, spec, Arm("resnet10t", "ce"), study_name="t/resnet10t/ce")
    study.tell(study.ask(), 0.5)
    study.ask()  # a trial whose driver was killed
    assert mark_interrupted(study) == 1
    orphan = study.trials[1]
    assert orphan.state == TrialState.FAIL and orphan.user_attrs["interrupted"] is True
    assert trials_used(study) == 1


def test_tuning_specs_never_name_the_test_part(spec, storage):
    arm = Arm("resnet10t", "ce")
    tuner = ArmTuner(open_arm_study(storage, spec, arm, study_name="t/a/ce"), spec, arm, None)
    jobs = [tuner.next_job() for _ in range(3)]
    assert tuning_specs_reading_test([job.run_spec.to_dict() for job in jobs]) == []
    assert {job.run_spec.eval_part for job in jobs} == {"val"}


def test_a_spec_scoring_on_test_is_flagged():
    leaks = tuning_specs_reading_test([{"train_parts": ["train"], "eval_part": "test"}])
    assert len(leaks) == 1


def test_tuner_asks_no_more_than_the_budget(spec, storage):
    arm = Arm("resnet10t", "ce")
    tuner = ArmTuner(open_arm_study(storage, spec, arm, study_name="t/a/ce"), spec, arm, None)
    jobs = [tuner.next_job() for _ in range(3)]
    assert tuner.next_job() is None
    tuner.on_done(JobDone(jobs[0], error="WorkerCrashedError: lost"))
    assert tuner.next_job() is None  # a failed trial counts against the budget
    assert all(isinstance(job, Job) for job in jobs)


def test_completed_trial_records_value_and_user_attributes(spec, storage):
    arm = Arm("resnet10t", "ce")
    tuner = ArmTuner(open_arm_study(storage, spec, arm, study_name="t/a/ce"), spec, arm, None)
    job = tuner.next_job()
    tuner.on_done(JobDone(job, result=_result(value=0.7), node={"hostname": "h", "node_id": "n"}))
    trial = tuner.study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.value == 0.7
    attrs = trial.user_attrs
    assert (attrs["backbone"], attrs["arm"], attrs["node"], attrs["outcome"]) == (
        "resnet10t", "ce", "h", "completed",
    )  # fmt: skip
    assert attrs["images_per_s"] == 10.0 and attrs["wall_time_s"] == 1.0


def test_diverged_trial_is_pruned_with_its_reason(spec, storage):
    arm = Arm("resnet10t", "ce")
    tuner = ArmTuner(open_arm_study(storage, spec, arm, study_name="t/a/ce"), spec, arm, None)
    job = tuner.next_job()
    tuner.on_done(JobDone(job, result=_result("diverged", diverged_at_step=3)))
    trial = tuner.study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["reason"] == "diverged at step 3"


def test_failed_task_is_a_fail_trial_with_its_cause(spec, storage):
    arm = Arm("resnet10t", "ce")
    tuner = ArmTuner(open_arm_study(storage, spec, arm, study_name="t/a/ce"), spec, arm, None)
    tuner.on_done(JobDone(tuner.next_job(), error="RuntimeError: boom", attempts=3))
    trial = tuner.study.trials[0]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["error"] == "RuntimeError: boom" and trial.user_attrs["attempts"] == 3


def test_a_study_whose_every_trial_failed_reports_the_first_cause(spec, storage):
    arm = Arm("resnet10t", "ce")
    tuner = ArmTuner(open_arm_study(storage, spec, arm, study_name="t/a/ce"), spec, arm, None)
    for error in ("RuntimeError: CUDA out of memory", "RuntimeError: boom"):
        tuner.on_done(JobDone(tuner.next_job(), error=error))
    cause = first_failure({arm: [tuner.study]}, records=[])
    assert cause == "resnet10t/ce trial 0: RuntimeError: CUDA out of memory"


def test_one_completed_trial_means_the_study_did_not_fail(spec, storage):
    arm = Arm("resnet10t", "ce")
    tuner = ArmTuner(open_arm_study(storage, spec, arm, study_name="t/a/ce"), spec, arm, None)
    tuner.on_done(JobDone(tuner.next_job(), error="RuntimeError: boom"))
    tuner.on_done(JobDone(tuner.next_job(), result=_result()))
    assert first_failure({arm: [tuner.study]}, records=[]) is None


def test_epoch_reports_reach_the_study_and_the_pruner_decides(spec, storage):
    spec = replace(spec, train=TrainSpec(epochs=3), tune=TuneSpec(n_trials=3, pruner="median"))
    arm = Arm("resnet10t", "ce")
    tuner = ArmTuner(open_arm_study(storage, spec, arm, study_name="t/a/ce"), spec, arm, None)
    for value in (0.8, 0.9):  # two finished trials: the median pruner's start-up
        job = tuner.next_job()
        for epoch in (1, 2):
            assert tuner.on_report(job, epoch, value) is False
        tuner.on_done(JobDone(job, result=_result(value=value)))
    weak = tuner.next_job()
    assert tuner.on_report(weak, 1, 0.1) is False  # warm-up epoch: never pruned
    assert tuner.on_report(weak, 2, 0.1) is True
    assert tuner.study.trials[2].intermediate_values == {1: 0.1, 2: 0.1}


def test_a_trial_is_never_pruned_after_its_last_epoch(spec, storage):
    spec = replace(spec, train=TrainSpec(epochs=2), tune=TuneSpec(n_trials=3, pruner="median"))
    arm = Arm("resnet10t", "ce")
    tuner = ArmTuner(open_arm_study(storage, spec, arm, study_name="t/a/ce"), spec, arm, None)
    for value in (0.8, 0.9):
        job = tuner.next_job()
        for epoch in (1, 2):
            tuner.on_report(job, epoch, value)
        tuner.on_done(JobDone(job, result=_result(value=value)))
    weak = tuner.next_job()
    tuner.on_report(weak, 1, 0.1)
    assert tuner.on_report(weak, 2, 0.1) is False  # below the median, but fully trained
    assert tuner.study.trials[2].intermediate_values == {1: 0.1, 2: 0.1}


def test_nan_report_is_ignored_not_ranked(spec, storage):
    arm = Arm("resnet10t", "ce")
    tuner = ArmTuner(open_arm_study(storage, spec, arm, study_name="t/a/ce"), spec, arm, None)
    job = tuner.next_job()
    assert tuner.on_report(job, 1, math.nan) is False
    assert tuner.study.trials[0].intermediate_values == {}


def test_cce_tau_study_skips_the_papers_tau_when_the_range_excludes_it(spec, storage):
    narrow = replace(spec, tune=replace(spec.tune, space=SearchSpace(tau=(0.5, 1.0))))
    arm = Arm("resnet10t", "cce_tau")
    study = open_arm_study(storage, narrow, arm, study_name="t/resnet10t/cce_tau")
    assert study.get_trials(deepcopy=False) == []
    assert 0.5 <= study.ask(search_space(narrow, "cce_tau")).params["tau"] <= 1.0
