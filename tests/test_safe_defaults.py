"""Safe defaults (issue 7): loopback only, no code from weights files, no passwords, no telemetry.

Each test runs the CLI (or the engine) in a subprocess, as a user would, and looks at what a
careless default would expose: the socket the dashboard listens on, a marker file that a
malicious pickle writes when it is unpickled, every byte the command prints or leaves in the
results folder, and Ray's usage-statistics switch.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: ``/proc/net/tcp`` writes 127.0.0.1 as little-endian hex; TCP state 0A is LISTEN.
LOOPBACK_HEX = "0100007F"
LISTEN = "0A"
PASSWORD = "s3cret"
AUTHORITY = f"postgresql://user:{PASSWORD}@127.0.0.1:1/optuna"
QUERY = f"postgresql://user@127.0.0.1:1/optuna?password={PASSWORD}"
STUDY = """name = "tiny"
[data]
source = "synthetic"
n_images = 60
image_size = 32
[models]
backbones = ["resnet50"]
[losses]
arms = ["ce", "cce"]
"""


def cli_command(argv: tuple[str, ...]) -> list[str]:
    """``cce-bench ARGS``: the installed console script, else its entry point."""
    script = Path(sys.executable).with_name("cce-bench")
    if script.is_file():
        return [str(script), *argv]
    return [sys.executable, "-c", "from cce_bench.cli import main; main()", *argv]


def run_cli(cwd: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CCE_BENCH_CACHE_DIR": str(cwd / "cache"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        cli_command(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


# -- the dashboard listens on loopback -------------------------------------------------------
def listening_addresses(pid: int) -> list[str]:
    """``ADDR:PORT`` (kernel hex) of every TCP socket that process ``pid`` listens on."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process has exited
        return []
    inodes = set()
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN and fields[9] in inodes:
                found.append(fields[1])
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket tables")
def test_dashboard_listens_on_loopback_only_unless_told_otherwise(tmp_path):
    from cce_bench.study.storage import open_storage

    folder = tmp_path / "results" / "tiny"
    folder.mkdir(parents=True)
    (folder / "study.toml").write_text(STUDY)
    open_storage(f"sqlite:///{folder / 'optuna.db'}").remove_session()
    port = _free_port()
    server = subprocess.Popen(
        cli_command(("dashboard", str(folder), "--port", str(port))),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300  # a hang guard, generous under load
        while not (addresses := listening_addresses(server.pid)):
            assert server.poll() is None, "the dashboard exited before it listened"
            assert time.monotonic() < deadline, "the dashboard never listened"
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert addresses == [f"{LOOPBACK_HEX}:{port:04X}"]


# -- weights files never run code ------------------------------------------------------------
class CodeOnUnpickle:
    """Unpickling this creates ``marker``: what a malicious "weights" file could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _malicious_weights(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"fc.weight": CodeOnUnpickle(marker)}, path)
    return path


def test_the_crafted_weights_file_runs_code_when_loaded_without_weights_only(tmp_path):
    """The control: without ``weights_only`` the payload does run, so the next test means it."""
    import torch

    marker = tmp_path / "ran"
    weights = _malicious_weights(tmp_path / "evil.pt", marker)
    torch.load(weights, weights_only=False)
    assert marker.exists()


def test_weights_load_with_weights_only_so_a_code_running_pickle_is_refused(tmp_path):
    marker = tmp_path / "ran"
    weights = _malicious_weights(tmp_path / "evil.pt", marker)
    tiny_run = ("--backbone", "resnet50", "--image-size", "32", "--n-images", "60", "--epochs", "1")
    result = run_cli(tmp_path, "train", "--weights", str(weights), *tiny_run, "--threads", "1")
    assert not marker.exists(), "unpickling the weights file ran its code"
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "is not a state dict that loads safely" in result.stderr
    assert "weights_only=True" in result.stderr
    assert "Traceback" not in result.stderr


# -- passwords never leave the URL they came in ------------------------------------------------
def _everything_under(folder: Path) -> bytes:
    """Names and contents of every file below ``folder`` (empty when it was never made)."""
    if not folder.exists():
        return b""
    return b"".join(p.read_bytes() + p.name.encode() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("url", "started"),
    [(AUTHORITY, False), (QUERY, False), (AUTHORITY, True)],
    ids=["in-authority", "in-query", "study-already-started"],
)
def test_storage_password_never_appears_in_output_or_results(tmp_path, url, started):
    (tmp_path / "study.toml").write_text(STUDY)
    if started:  # a folder with results takes another code path: "was run with storage ..."
        from cce_bench.config import load_study

        (tmp_path / "results" / "tiny").mkdir(parents=True)
        stored = load_study(tmp_path / "study.toml").to_toml()
        (tmp_path / "results" / "tiny" / "study.toml").write_text(stored)
    result = run_cli(tmp_path, "run", "study.toml", "--results-dir", "results", "--storage", url)
    assert result.returncode == 2, result.stderr
    assert "***" in result.stderr, "the message should name the storage, password masked"
    assert PASSWORD not in result.stdout + result.stderr
    assert PASSWORD.encode() not in _everything_under(tmp_path / "results")


# -- Ray usage statistics are off unless the user turns them on ------------------------------
USAGE_STATS = """
import os, sys
from cce_bench.errors import ClusterError
from cce_bench.study._executor import start_ray, stop_ray
address = sys.argv[1] if len(sys.argv) > 1 else None
try:
    started = start_ray(address, num_cpus=1)
except ClusterError:
    started = False
from ray._common.usage import usage_lib
print(os.environ.get("RAY_USAGE_STATS_ENABLED"), usage_lib.usage_stats_enabled(), started)
if started:
    stop_ray()
"""


def _usage_stats_after_start_ray(tmp_path: Path, env_value: str | None, *args: str) -> list[str]:
    env = {key: value for key, value in os.environ.items() if key != "RAY_USAGE_STATS_ENABLED"}
    if env_value is not None:
        env["RAY_USAGE_STATS_ENABLED"] = env_value
    command = [sys.executable, "-c", USAGE_STATS, *args]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


def test_ray_usage_stats_are_off_when_the_engine_starts_ray(tmp_path):
    assert _usage_stats_after_start_ray(tmp_path, None) == ["0", "False", "True"]


def test_ray_usage_stats_follow_the_users_own_setting(tmp_path):
    """Set beforehand, the user's choice stands (checked on the --address path, which sets the
    default before it probes, so no Ray needs to start)."""
    assert _usage_stats_after_start_ray(tmp_path, "1", "127.0.0.1:1") == ["1", "True", "False"]
