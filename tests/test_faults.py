"""Faults during a study: a killed worker, a diverging trial, a half-written record.

Real processes throughout: a local Ray with 2 CPUs, the real executor (Ray tasks, retries,
the trial channel), real SQLite, and the real ``train_run`` wherever the fault is about
training. A worker is found the way an operator would find it: the run leaves its PID in a
marker file at a known point (after its first epoch) and waits there; the test SIGKILLs it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState
from studies_for_tests import arm_trials, write_study

from cce_bench.cli import main
from cce_bench.cli._console import EXIT_NOTHING_COMPLETED
from cce_bench.config import load_study
from cce_bench.errors import ClusterError
from cce_bench.study import run_study
from cce_bench.study._executor import start_ray
from cce_bench.study.store import ResultsStore, latest_records

pytestmark = pytest.mark.slow

KEY = ("resnet10t", "ce", 0)


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


def train_killed_after_first_epoch(markers: Path, *, kill_parts: tuple[str, ...], real: bool):
    """A ``train_fn`` whose first run scoring each of ``kill_parts`` (``val``: a trial, ``test``:
    an evaluation run) writes its worker's PID to ``markers/<part>.pid`` after epoch 1 and waits
    there to be killed; every other run is ``train_run`` (``real``) or a 2-epoch stand-in.

    Defined inside a factory so that Ray ships it by value to workers that cannot import tests.
    """
    import numpy as np

    from cce_bench.train import RunResult

    def stand_in(spec, data, reporter):
        for epoch in range(1, spec.epochs + 1):
            if reporter is not None and reporter(epoch, {"balanced_accuracy": 0.5}):
                break
        index = data.indices(spec.eval_part)
        return RunResult(
            outcome="completed", metrics={"balanced_accuracy": 0.5}, history=[],
            image_ids=data.image_ids[index], y_true=data.labels[index],
            proba=np.full((len(index), 7), 1 / 7, np.float32), wall_time_s=0.0,
            images_per_s=0.0, peak_memory_mb=0.0, device="cpu", versions={}, node="host",
        )  # fmt: skip

    def train(spec, data, reporter=None):
        if real:
            from cce_bench.train import train_run as run
        else:
            run = stand_in
        marker = markers / f"{spec.eval_part}.pid"
        if spec.eval_part not in kill_parts or marker.exists():
            return run(spec, data, reporter)

        def report_then_wait(epoch, metrics):
            stop = reporter(epoch, metrics) if reporter is not None else False
            partial = marker.with_suffix(".tmp")
            partial.write_text(str(os.getpid()))
            os.replace(partial, marker)
            time.sleep(120)  # SIGKILLed here by the test
            return stop

        return run(spec, data, report_then_wait)

    return train


class WorkerKiller:
    """While active, SIGKILLs the process named by each new ``*.pid`` file in ``markers``."""

    def __init__(self, markers: Path) -> None:
        self.markers, self.killed = markers, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> WorkerKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for marker in sorted(self.markers.glob("*.pid")):
                if marker.stem not in self.killed:
                    pid = int(marker.read_text())
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    self.killed[marker.stem] = pid
            time.sleep(0.05)


def run_with_kills(folder: Path, study: Path, train) -> tuple[Path, WorkerKiller]:
    markers = folder / "markers"
    markers.mkdir(exist_ok=True)
    with WorkerKiller(markers) as killer:
        run_study(load_study(study), folder / "results", train_fn=train)
    return folder / "results" / "tiny", killer


# -- a killed worker is retried ------------------------------------------------------------------
@pytest.fixture(scope="module")
def killed_and_retried(ray_local, tmp_path_factory):
    """One arm, one trial, one seed, one retry; the first trial and the first evaluation run
    each lose their worker after epoch 1. Real training."""
    folder = tmp_path_factory.mktemp("retried")
    study = write_study(folder, arms=("ce",), n_trials=1, seeds=1, max_concurrent=1)
    train = train_killed_after_first_epoch(folder / "markers", kill_parts=("val", "test"),
                                           real=True)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        root, killer = run_with_kills(folder, study, train)
    return root, killer, [str(warning.message) for warning in caught]


def test_a_trial_whose_worker_is_killed_mid_run_is_retried_and_completes(killed_and_retried):
    root, killer, _ = killed_and_retried
    assert "val" in killer.killed
    [trial] = arm_trials(root, ("ce",))["ce"]
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["attempts"] == 2
    assert sorted(trial.intermediate_values) == [1, 2]


def test_a_retried_trial_tells_optuna_each_epoch_once(killed_and_retried):
    _, _, warned = killed_and_retried
    assert [message for message in warned if "already reported" in message] == []


def test_an_evaluation_run_whose_worker_is_killed_is_retried_and_recorded_once(killed_and_retried):
    root, killer, _ = killed_and_retried
    assert "test" in killer.killed
    store = ResultsStore(root)
    [record] = store.read_runs()
    assert (record["backbone"], record["arm"], record["seed"]) == KEY
    assert record["outcome"] == "completed" and record["attempts"] == 2
    image_ids, _, proba = store.load_predictions(record)
    assert len(image_ids) == len(proba) > 0


# -- a killed worker with no retry left: failed with its cause, and the study goes on -------------
@pytest.fixture(scope="module")
def killed_without_retries(ray_local, tmp_path_factory):
    """``max_retries = 0``; 2 trials and 1 seed; the first trial and the first evaluation run
    lose their worker. A stand-in trains: what is under test is the bookkeeping."""
    folder = tmp_path_factory.mktemp("no-retry")
    study = write_study(folder, arms=("ce",), n_trials=2, seeds=1, max_concurrent=1,
                        max_retries=0)  # fmt: skip
    train = train_killed_after_first_epoch(folder / "markers", kill_parts=("val", "test"),
                                           real=False)  # fmt: skip
    root, killer = run_with_kills(folder, study, train)
    return study, root, killer, train


def test_a_trial_that_loses_its_worker_with_no_retry_left_fails_with_its_cause(
    killed_without_retries,
):
    _, root, killer, _ = killed_without_retries
    assert "val" in killer.killed
    first, second = arm_trials(root, ("ce",))["ce"]
    assert first.state == TrialState.FAIL and first.user_attrs["outcome"] == "failed"
    assert re.match(r"WorkerCrashedError: .*worker died", first.user_attrs["error"])
    assert second.state == TrialState.COMPLETE  # the study went on to its budget


def test_an_evaluation_run_that_loses_its_worker_with_no_retry_left_is_recorded_failed(
    killed_without_retries,
):
    _, root, killer, _ = killed_without_retries
    assert "test" in killer.killed
    [record] = ResultsStore(root).read_runs()
    assert record["outcome"] == "failed" and record["attempts"] == 1
    assert re.match(r"WorkerCrashedError: .*worker died", record["error"])
    assert record["predictions"] is None


def test_a_run_that_failed_on_a_lost_worker_is_redone_on_resume_and_counted_once(
    killed_without_retries, tmp_path
):
    study, root, _, train = killed_without_retries
    copy = tmp_path / "results" / "tiny"
    shutil.copytree(root, copy)
    run_study(load_study(study), copy.parent, train_fn=train)  # markers exist: no more kills
    store = ResultsStore(copy)
    assert [r["outcome"] for r in store.read_runs()] == ["failed", "completed"]
    assert list(latest_records(store.read_runs())) == [KEY]
    assert len(arm_trials(copy, ("ce",))["ce"]) == 2  # the failed trial spent its budget


# -- a diverging trial ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def diverged(ray_local, tmp_path_factory):
    """`cce-bench run` with lr in [1e6, 1e7]: every trial of both arms diverges (real training)."""
    folder = tmp_path_factory.mktemp("diverged")
    study = write_study(folder, n_trials=2, seeds=1, lr=(1e6, 1e7))
    output = io.StringIO()
    with (
        contextlib.redirect_stdout(output),
        contextlib.redirect_stderr(output),
        pytest.raises(SystemExit) as exit_info,
    ):
        main(["run", str(study), "--results-dir", str(folder / "results")])
    return folder / "results" / "tiny", exit_info.value.code, output.getvalue()


def test_a_trial_whose_loss_becomes_nan_is_pruned_with_the_step_it_diverged_at(diverged):
    root, _, _ = diverged
    for trials in arm_trials(root).values():
        assert [t.state for t in trials] == [TrialState.PRUNED] * 2  # the budget was spent
        for trial in trials:
            assert trial.user_attrs["outcome"] == "diverged"
            assert re.fullmatch(r"diverged at step \d+", trial.user_attrs["reason"])


def test_a_study_whose_every_trial_diverged_finishes_every_arm_and_says_why(diverged):
    root, code, output = diverged
    for arm in ("ce", "cce_tau"):
        assert f"warning: arm resnet10t/{arm} has no complete tuning trial" in output
    records = ResultsStore(root).read_runs()
    assert Counter((r["arm"], r["outcome"]) for r in records) == {
        ("ce", "failed"): 1,
        ("cce_tau", "failed"): 1,
    }
    assert all("no complete tuning trial" in r["error"] for r in records)
    assert code == EXIT_NOTHING_COMPLETED  # it ran, but nothing completed: not a success
    assert re.search(r"the first failure: resnet10t/\w+ trial \d+: diverged at step \d+", output)


# -- a half-written record -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_runs(ray_local, tmp_path_factory):
    """A finished study with two evaluation records (two arms, seed 0; a stand-in)."""
    folder = tmp_path_factory.mktemp("records")
    study = write_study(folder, n_trials=1, seeds=1, max_concurrent=1)
    train = train_killed_after_first_epoch(folder / "markers", kill_parts=(), real=False)
    run_study(load_study(study), folder / "results", train_fn=train)
    return study, folder / "results" / "tiny"


def truncated_copy(root: Path, destination: Path) -> tuple[Path, bytes]:
    """A copy of the study whose last record is cut mid-line, as a killed writer leaves it;
    returns the copy and the bytes of its first (intact) record."""
    copy = destination / "results" / "tiny"
    shutil.copytree(root, copy)
    first, second = (copy / "runs.jsonl").read_bytes().splitlines(keepends=True)
    (copy / "runs.jsonl").write_bytes(first + second[: len(second) // 2])
    return copy, first


@pytest.mark.parametrize("command", ["status", "report"])
def test_reading_a_truncated_last_record_exits_2_naming_the_file_line_and_fix(
    two_runs, tmp_path, capsys, command
):
    copy, _ = truncated_copy(two_runs[1], tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(copy)])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert f"{copy / 'runs.jsonl'} line 2 is not a complete JSON record" in lines[0]
    assert "cce-bench run" in lines[0] and "runs.jsonl.corrupt" in lines[0]


def test_resuming_sets_a_truncated_last_record_aside_keeps_the_rest_and_redoes_it(
    two_runs, tmp_path, capsys
):
    study, root = two_runs
    copy, first = truncated_copy(root, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(study), "--results-dir", str(copy.parent)])
    output = capsys.readouterr()
    assert exit_info.value.code == 0, output.err
    assert "line 2 is not a complete JSON record: set aside in runs.jsonl.corrupt" in output.out
    assert (copy / "runs.jsonl").read_bytes().startswith(first)  # the valid record is kept
    assert (copy / "runs.jsonl.corrupt").read_bytes().startswith(b'{"arm": "cce_tau"')
    arms = Counter(r["arm"] for r in ResultsStore(copy).read_runs())
    assert arms == {"ce": 1, "cce_tau": 1}  # the cut-off run redone, nothing duplicated


# -- a cluster that wants a token ----------------------------------------------------------------
def test_joining_a_cluster_that_wants_a_token_says_how_to_pass_it(monkeypatch):
    """Ray 2.60 reports a missing token as "Failed to connect", the cause only in the chain
    (seen with ``ray start --head`` while ``~/.ray/auth_token`` existed); Ray's own retries
    take ~20 s, so ``ray.init`` is replaced here by one that fails the same way at once."""
    import ray
    from ray.exceptions import AuthenticationError

    def refuse(**options):
        try:
            raise AuthenticationError("RPC error: InvalidAuthToken: token is missing or incorrect")
        except AuthenticationError as cause:
            raise ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6379") from cause

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with socket.socket() as head:  # something listens, as a head node would
        head.bind(("127.0.0.1", 0))
        head.listen()
        address = f"127.0.0.1:{head.getsockname()[1]}"
        with pytest.raises(ClusterError, match="requires token authentication; set RAY_AUTH_MODE"):
            start_ray(address)
