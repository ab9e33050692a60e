"""Ray execution: concurrency limit, epoch relay and pruning, failures, retries, cluster joins.

These use a real local Ray with 2 CPUs and fake training functions (defined inside factories
so that Ray ships them by value): what is under test is the engine, not the training.
"""

import itertools
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from cce_bench.errors import ClusterError
from cce_bench.study._executor import Executor, Job, Resources, check_resources, start_ray
from cce_bench.train import RunResult, RunSpec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for this module (its start costs ~7 s here), shut down after it so that
    other modules start from a process without Ray."""
    import ray

    started = start_ray(None, num_cpus=2)
    yield
    if started:
        ray.shutdown()


def fake_train(*, epochs=3, values=(0.5, 0.6, 0.7), sleep_s=0.0, log_dir=None, crash=0,
               raise_error=None):  # fmt: skip
    """A train_run stand-in: reports `values` per epoch, obeys the reporter, may crash/raise.

    ``crash`` is how many attempts die with os._exit before one succeeds (a lost worker);
    ``log_dir`` receives one file per attempt with its start and end time.
    """

    def train(spec, data, reporter=None):
        attempt_dir = Path(log_dir) if log_dir else None
        if attempt_dir is not None:
            attempt = len(list(attempt_dir.glob(f"{spec.seed}-*"))) + 1
            marker = attempt_dir / f"{spec.seed}-{attempt}"
            marker.write_text(f"{time.time()}")
            if attempt <= crash:
                os._exit(1)
        if raise_error is not None:
            raise raise_error
        outcome, history = "completed", []
        for epoch in range(1, epochs + 1):
            time.sleep(sleep_s)
            history.append({"epoch": epoch, "balanced_accuracy": values[epoch - 1]})
            if reporter is not None and reporter(epoch, {"balanced_accuracy": values[epoch - 1]}):
                outcome = "pruned"
                break
        if attempt_dir is not None:
            marker.write_text(f"{marker.read_text()} {time.time()}")
        return RunResult(
            outcome=outcome, metrics={"balanced_accuracy": history[-1]["balanced_accuracy"]},
            history=history, image_ids=np.array(["a"]), y_true=np.array([0]),
            proba=np.ones((1, 7), np.float32) / 7, wall_time_s=0.1, images_per_s=1.0,
            peak_memory_mb=1.0, device="cpu", versions={}, node=socket.gethostname(),
        )  # fmt: skip

    return train


def _jobs(n, executor, *, metric=None):
    ref = executor.put({"images": np.zeros((4, 8, 8, 3), np.uint8)})
    return [Job(f"job{seed}", RunSpec(seed=seed), ref, metric) for seed in range(n)]


def _run_all(executor, jobs, on_report=lambda job, epoch, value: False):
    pending, done = list(jobs), []
    executor.run(lambda: pending.pop(0) if pending else None, on_report, done.append)
    return done


def test_no_more_than_max_concurrent_runs_at_once(ray_local, tmp_path):
    resources = Resources(cpus_per_run=1, max_concurrent=1, max_retries=0)
    executor = Executor(resources, train_fn=fake_train(sleep_s=0.2, log_dir=tmp_path))
    done = _run_all(executor, _jobs(3, executor))
    assert [d.result.outcome for d in done] == ["completed"] * 3
    spans = sorted(tuple(map(float, p.read_text().split())) for p in tmp_path.iterdir())
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))


def test_epoch_values_reach_the_driver_and_its_prune_decision_stops_the_run(ray_local):
    executor = Executor(Resources(max_retries=0), train_fn=fake_train(values=(0.5, 0.1, 0.9)))
    reports = []

    def on_report(job, epoch, value):
        reports.append((job.key, epoch, value))
        return epoch == 2

    [done] = _run_all(executor, _jobs(1, executor, metric="balanced_accuracy"), on_report)
    assert reports == [("job0", 1, 0.5), ("job0", 2, 0.1)]
    assert done.result.outcome == "pruned" and len(done.result.history) == 2


def test_a_run_that_raises_fails_once_with_its_cause(ray_local):
    train = fake_train(raise_error=ValueError("lr must be positive"))
    executor = Executor(Resources(max_retries=2), train_fn=train)
    [done] = _run_all(executor, _jobs(1, executor))
    assert done.result is None
    assert done.error == "ValueError: lr must be positive"
    assert done.attempts == 1  # an exception is the setting's fault: retrying would not help


def test_a_run_whose_worker_dies_is_retried(ray_local, tmp_path):
    executor = Executor(Resources(max_retries=2), train_fn=fake_train(log_dir=tmp_path, crash=1))
    [done] = _run_all(executor, _jobs(1, executor))
    assert done.result is not None and done.result.outcome == "completed"
    assert done.attempts == 2
    assert done.node["hostname"] == socket.gethostname() and done.node["node_id"]


def test_a_run_whose_worker_always_dies_fails_after_max_retries(ray_local, tmp_path):
    executor = Executor(Resources(max_retries=1), train_fn=fake_train(log_dir=tmp_path, crash=9))
    [done] = _run_all(executor, _jobs(1, executor))
    assert done.result is None and "Worker" in done.error
    assert done.attempts == 2


def test_joining_an_address_where_no_cluster_listens_fails_within_seconds():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(ClusterError, match=f"no Ray cluster answers at --address 127.0.0.1:{port}"):
        start_ray(f"127.0.0.1:{port}")
    # A hang guard, not a speed check: without the probe Ray retries for about a minute.
    assert time.perf_counter() - started < 30


def test_a_malformed_address_is_a_cluster_error():
    with pytest.raises(ClusterError, match="not HOST:PORT"):
        start_ray("nonsense")


# -- requests no node can meet (Ray would queue them forever) -------------------------------
CPU_NODE = {"CPU": 16.0, "memory": 6.4e10}
GPU_NODE = {"CPU": 8.0, "GPU": 1.0}


def test_a_gpu_request_without_any_gpu_node_is_refused_naming_the_key():
    with pytest.raises(ClusterError, match=r"`resources.gpus_per_run` = 1, but no node .* GPU"):
        check_resources(Resources(gpus_per_run=1), nodes=[CPU_NODE, CPU_NODE])


def test_a_cpu_request_is_compared_with_the_largest_node_not_the_cluster_total():
    with pytest.raises(ClusterError, match=r"cpus_per_run` = 24, but the largest node .* 16 CPUs"):
        check_resources(Resources(cpus_per_run=24), nodes=[CPU_NODE, CPU_NODE])


def test_cpus_and_gpus_that_no_single_node_has_together_are_refused():
    with pytest.raises(ClusterError, match=r"no node of the Ray cluster .* has both 16 CPUs and 1"):
        check_resources(Resources(cpus_per_run=16, gpus_per_run=1), nodes=[CPU_NODE, GPU_NODE])


def test_cuda_device_without_any_gpu_node_is_refused():
    with pytest.raises(ClusterError, match=r"`train.device` = 'cuda', but no node"):
        check_resources(Resources(), device="cuda", nodes=[CPU_NODE])


def test_a_request_one_node_can_meet_passes():
    check_resources(Resources(cpus_per_run=8, gpus_per_run=0.5), device="cuda",
                    nodes=[CPU_NODE, GPU_NODE])  # fmt: skip


def test_the_running_ray_refuses_more_cpus_than_its_node_has(ray_local):
    with pytest.raises(ClusterError, match=r"cpus_per_run` = 3, but the largest node .* has 2 CPU"):
        check_resources(Resources(cpus_per_run=3))


@pytest.mark.skipif(Path("/dev/nvidiactl").exists(), reason="a GPU is present here")
def test_the_running_ray_without_a_gpu_refuses_a_gpu_request(ray_local):
    with pytest.raises(ClusterError, match="gpus_per_run` = 1, but no node"):
        check_resources(Resources(gpus_per_run=1))


def test_a_local_ray_that_misses_its_start_up_window_is_started_again(monkeypatch):
    import ray

    from cce_bench.study import _executor as execution

    calls = []

    def flaky_init(**options):
        calls.append(options)
        if len(calls) == 1:
            raise Exception("The current node timed out during startup. This could happen ...")

    monkeypatch.setattr(ray, "init", flaky_init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    execution._init_local_ray(2, {"include_dashboard": False})
    assert len(calls) == 2 and calls[1]["num_cpus"] == 2


def test_a_local_ray_never_joins_a_running_cluster(monkeypatch):
    """A bare ``ray.init()`` joins the last ``ray start`` cluster on the machine; "local" never."""
    import ray

    from cce_bench.study import _executor as execution

    calls = []
    monkeypatch.setattr(ray, "init", lambda **options: calls.append(options))
    execution._init_local_ray(1, {})
    assert calls == [{"address": "local", "num_cpus": 1}]


def test_a_local_ray_that_fails_otherwise_is_not_retried(monkeypatch):
    import ray

    from cce_bench.study import _executor as execution

    calls = []

    def broken_init(**options):
        calls.append(options)
        raise Exception("something else")

    monkeypatch.setattr(ray, "init", broken_init)
    with pytest.raises(Exception, match="something else"):
        execution._init_local_ray(None, {})
    assert len(calls) == 1
