"""Tiny studies for the end-to-end, fault and determinism tests, and ways to read what they left.

A study here trains ``resnet10t`` on 200 synthetic 32 px images for 2 epochs: a real run through
the real engine that takes seconds on one CPU thread. ``write_study`` varies only what a test
needs to vary; everything else stays the same for every test module, so their timings compare.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna

from cce_bench.study.storage import open_storage
from cce_bench.study.store import ResultsStore

TINY_STUDY = """
name = "tiny"
[data]
source = "synthetic"
n_images = 200
image_size = 32
[models]
backbones = ["resnet10t"]
[losses]
arms = {arms}
[train]
epochs = {epochs}
batch_size = 32
[tune]
n_trials = {n_trials}
pruner = "{pruner}"
{space}[evaluate]
seeds = {seeds}
[resources]
cpus_per_run = 1
max_concurrent = {max_concurrent}
max_retries = {max_retries}
"""

ARMS = ("ce", "cce_tau")
BACKBONE = "resnet10t"


def write_study(
    folder: Path,
    *,
    n_trials: int = 2,
    seeds: int = 2,
    arms: tuple[str, ...] = ARMS,
    epochs: int = 2,
    pruner: str = "median",
    lr: tuple[float, float] | None = None,
    max_concurrent: int = 2,
    max_retries: int = 1,
) -> Path:
    """Write ``tiny.toml`` into ``folder``; ``lr`` sets ``[tune.space] lr`` (else the default)."""
    space = f"[tune.space]\nlr = [{lr[0]!r}, {lr[1]!r}]\n" if lr else ""
    path = folder / "tiny.toml"
    path.write_text(
        TINY_STUDY.format(
            arms=json.dumps(list(arms)),
            epochs=epochs,
            n_trials=n_trials,
            pruner=pruner,
            space=space,
            seeds=seeds,
            max_concurrent=max_concurrent,
            max_retries=max_retries,
        )
    )
    return path


def arm_trials(root: Path, arms: tuple[str, ...] = ARMS) -> dict[str, list]:
    """Every trial of each arm's Optuna study in the results folder ``root``."""
    storage = open_storage(ResultsStore(root).storage_url)
    return {
        arm: optuna.load_study(study_name=f"{root.name}/{BACKBONE}/{arm}", storage=storage).trials
        for arm in arms
    }


def finished(trials) -> list[tuple[int, str, float | None]]:
    """(number, state, value) of the finished trials: what a resume must never lose."""
    return [(t.number, t.state.name, t.value) for t in trials if t.state.is_finished()]


# -- processes a test started ----------------------------------------------------------------
def session_processes(session_id: int) -> list[int]:
    """PIDs of every live process in session ``session_id`` (a ``start_new_session`` child's
    PID): the child itself and everything it spawned, daemons included."""
    table = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True)
    return [
        int(pid)
        for pid, sid, stat in map(str.split, table.stdout.splitlines())
        if int(sid) == session_id and not stat.startswith("Z")
    ]


def kill_session(session_id: int, *, wait_s: float = 20.0) -> None:
    """SIGKILL a whole session started by a test, then any straggler by PID, until none is left.

    Only that session is touched: other sessions' Ray (other tests, other users) stays up.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(session_id, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while session_processes(session_id) and time.monotonic() < deadline:
        for pid in session_processes(session_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
