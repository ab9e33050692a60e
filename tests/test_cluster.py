"""A study on a real two-node Ray cluster on this machine, which loses its worker node mid-study.

Start a head node and a worker node with ``ray start`` (one CPU each, so that the two
concurrent runs land one on each node), run a small study through ``cce-bench run --address``,
SIGKILL the worker node as soon as it has finished a run, and check that the study completes on
the head node with nothing lost or duplicated. Each node's processes form one session, started
and stopped by PID here, so another Ray on the machine (another test, another user) is never
touched; ``ray stop`` would kill them all.

Ray 2.60 registers both nodes under the machine's address even when told 127.0.0.1
(``--node-ip-address`` is resolved to it), but the head's port is reached on loopback. The
cluster uses Ray's token authentication with a fresh token in the environment of every
process (Ray 2.60's ``ray start --head`` enables it whenever ``~/.ray/auth_token`` exists, and a
process joining by address does not pick the token up by itself). Skip with
``CCE_BENCH_SKIP_CLUSTER=1`` where Ray cannot start a cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from optuna.trial import TrialState
from studies_for_tests import ARMS, arm_trials, kill_session, session_processes, write_study

from cce_bench.study.store import ResultsStore

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.timeout(1200),  # a last resort: STALL_S below is the real hang guard
    pytest.mark.skipif(
        os.environ.get("CCE_BENCH_SKIP_CLUSTER") == "1", reason="CCE_BENCH_SKIP_CLUSTER=1"
    ),
]

RAY = str(Path(sys.executable).with_name("ray"))
#: The scenario fails when nothing moves for this long: no node comes up, no trial or run
#: finishes. It is a hang guard, not a speed check: the scenario takes about a minute on an idle
#: fast machine, several on a slow one whose other core is busy (each node's first import of
#: torch and Ray's start-up dominate), and only progress, never a total, is required of it.
STALL_S = 300.0
NODE_START_ATTEMPTS = 3
N_TRIALS, SEEDS = 2, 2


@dataclass
class ClusterRun:
    """What the scenario left behind, after every process it started was stopped."""

    root: Path
    driver_returncode: int
    driver_log: str
    node_ids: dict[str, str]  # "head" / "worker" -> Ray node id
    before_loss: dict[str, str]  # finished_jobs() when the worker node was killed
    sessions: list[int]  # the session (process group) of each node and of the driver


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LoopbackCluster:
    """A head node and a worker node on this machine, one CPU each, each node one session."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.address = f"127.0.0.1:{free_port()}"
        # Ray's socket paths must stay under 108 characters: pytest's tmp paths are too long.
        self.temp_dirs = [Path(tempfile.mkdtemp(prefix="ccer-")) for _ in range(2)]
        self.nodes: dict[str, subprocess.Popen] = {}
        self.node_ids: dict[str, str] = {}

    def start(self) -> None:
        """Start both nodes; each must bring up its raylet within ``STALL_S``."""
        self._start_node("head", lambda: ["--head", f"--port={self.address.rpartition(':')[2]}",
                                          "--include-dashboard=false",
                                          f"--ray-client-server-port={free_port()}"])  # fmt: skip
        self._start_node("worker", lambda: [f"--address={self.address}"])

    def _start_node(self, name: str, args: Callable[[], list[str]]) -> None:
        """``ray start --block``: it stays in the foreground, so the node is one session.

        Ray gives a starting node a fixed 30 s to register (``raylet_start_wait_time_s`` in
        ``ray/_private/node.py``, not configurable), which a machine whose cores are busy with
        other work can miss; a node that gives up that way is started again, on a fresh port.
        """
        temp_dir = self.temp_dirs[len(self.nodes)]
        for attempt in range(1, NODE_START_ATTEMPTS + 1):
            command = [RAY, "start", "--block", "--disable-usage-stats", "--num-cpus=1",
                       "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
                       f"--dashboard-agent-listen-port={free_port()}", *args()]  # fmt: skip
            log_path = self.folder / f"{name}-{attempt}.log"
            with log_path.open("w") as log:
                node = subprocess.Popen(
                    command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            self.nodes[name] = node
            if node_started(node, log_path, time.monotonic() + STALL_S):
                self.node_ids[name] = raylet_node_id(node, time.monotonic() + STALL_S)
                return
            kill_session(node.pid)
            node.wait()
            if name == "head":
                self.address = f"127.0.0.1:{free_port()}"
        raise RuntimeError(f"`ray start` of the {name} node failed {NODE_START_ATTEMPTS} times")

    def lose(self, name: str) -> None:
        """SIGKILL every process of one node, as a crashed or preempted machine would."""
        kill_session(self.nodes[name].pid)
        self.nodes[name].wait()

    def stop(self) -> None:
        for name in self.nodes:
            self.lose(name)
        for temp_dir in self.temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)


def node_started(node: subprocess.Popen, log_path: Path, deadline: float) -> bool:
    """Whether ``ray start --block`` says the node is up before it exits or ``deadline``."""
    while time.monotonic() < deadline and node.poll() is None:
        if "Ray runtime started" in log_path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def raylet_node_id(node: subprocess.Popen, deadline: float) -> str:
    """The Ray node id of the node ``ray start`` (``node``) started, read from its raylet."""
    while time.monotonic() < deadline and node.poll() is None:
        for pid in session_processes(node.pid):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as handle:
                args = handle.read().replace(b"\0", b" ").decode(errors="replace")
                match = re.search(r"/raylet .*--node_id=([0-9a-f]+)", args)
                if match:
                    return match.group(1)
        time.sleep(0.2)
    raise RuntimeError(f"`{' '.join(map(str, node.args))}` started no raylet; see its log")


def start_driver(study: Path, results_dir: Path, address: str, env: dict[str, str]):
    """``cce-bench run STUDY --address ADDRESS`` as a user would type it, in its own session."""
    with (results_dir.parent / "driver.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-c", "from cce_bench.cli import main; main()", "run", str(study),
             "--results-dir", str(results_dir), "--address", address],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def finished_jobs(root: Path) -> dict[str, str]:
    """Each finished trial (by Optuna trial id) and evaluation run (by line) -> its node id."""
    jobs: dict[str, str] = {}
    if (root / "optuna.db").is_file():
        uri = f"file:{root / 'optuna.db'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            try:
                rows = db.execute(
                    "select trial_id, value_json from trial_user_attributes where key = 'node_id'"
                ).fetchall()
            except sqlite3.OperationalError:  # tables not created yet
                rows = []
        jobs.update({f"trial {trial_id}": json.loads(value) for trial_id, value in rows})
    if (root / "runs.jsonl").is_file():
        for number, line in enumerate((root / "runs.jsonl").read_text().splitlines(), start=1):
            with contextlib.suppress(json.JSONDecodeError):  # a line being written
                jobs[f"run {number}"] = json.loads(line)["node_id"]
    return jobs


class ProgressWatch:
    """Fails a wait only when no trial or run has finished for ``STALL_S``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen = 0
        self.deadline = time.monotonic() + STALL_S

    def check(self, what: str) -> None:
        finished = len(finished_jobs(self.root))
        if finished > self.seen:
            self.seen, self.deadline = finished, time.monotonic() + STALL_S
        assert time.monotonic() < self.deadline, f"{what} for {STALL_S:.0f} s"


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory) -> ClusterRun:
    """Start both nodes, run the study, lose the worker node, finish; then stop everything."""
    folder = tmp_path_factory.mktemp("cluster")
    study = write_study(folder, n_trials=N_TRIALS, seeds=SEEDS, max_retries=2)
    root = folder / "results" / "tiny"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
    cluster, driver = LoopbackCluster(folder, env), None
    try:
        cluster.start()
        driver = start_driver(study, folder / "results", cluster.address, env)
        watch = ProgressWatch(root)
        while cluster.node_ids["worker"] not in finished_jobs(root).values():
            assert driver.poll() is None, (folder / "driver.log").read_text()
            watch.check("no run finished on the worker node")
            time.sleep(0.2)
        cluster.lose("worker")
        before_loss = finished_jobs(root)
        while (returncode := driver.poll()) is None:
            watch.check("the study stopped making progress after the worker node was lost")
            time.sleep(0.2)
    finally:
        if driver is not None:
            kill_session(driver.pid)
            driver.wait()
        cluster.stop()
    sessions = [driver.pid] + [node.pid for node in cluster.nodes.values()]
    log = (folder / "driver.log").read_text()
    return ClusterRun(root, returncode, log, cluster.node_ids, before_loss, sessions)


def test_runs_land_on_both_nodes(cluster_run):
    assert set(finished_jobs(cluster_run.root).values()) == set(cluster_run.node_ids.values())


def test_the_worker_node_was_lost_mid_study(cluster_run):
    assert len(cluster_run.before_loss) < len(ARMS) * (N_TRIALS + SEEDS)


def test_the_study_completes_on_the_head_node_after_losing_the_worker(cluster_run):
    assert cluster_run.driver_returncode == 0, cluster_run.driver_log
    after_loss = finished_jobs(cluster_run.root).items() - cluster_run.before_loss.items()
    assert after_loss and {node for _, node in after_loss} == {cluster_run.node_ids["head"]}


def test_no_trial_or_run_is_lost_or_duplicated(cluster_run):
    for trials in arm_trials(cluster_run.root).values():
        assert [t.state for t in trials] == [TrialState.COMPLETE] * N_TRIALS
    records = ResultsStore(cluster_run.root).read_runs()
    keys = Counter((r["backbone"], r["arm"], r["seed"], r["outcome"]) for r in records)
    assert keys == {
        ("resnet10t", arm, seed, "completed"): 1 for arm in ARMS for seed in range(SEEDS)
    }


def test_every_process_the_test_started_is_stopped(cluster_run):
    assert [pid for sid in cluster_run.sessions for pid in session_processes(sid)] == []
