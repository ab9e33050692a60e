"""`cce-bench dashboard` serves a study's Optuna storage over HTTP, on loopback by default."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest

from cce_bench.study.storage import open_storage
from cce_bench.study.store import ResultsStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results_folder(tmp_path_factory):
    """A study folder as `cce-bench run` leaves it: study.toml and an optuna.db with curves."""
    root = tmp_path_factory.mktemp("results") / "tiny"
    root.mkdir()
    (root / "study.toml").write_text('name = "tiny"\n[data]\nsource = "synthetic"\n')
    storage = open_storage(ResultsStore(root).storage_url)
    study = optuna.create_study(
        study_name="tiny/resnet10t/ce", storage=storage, direction="maximize"
    )
    for value in (0.4, 0.6):
        trial = study.ask()
        for epoch in (1, 2):
            trial.report(value * epoch / 2, epoch)
        study.tell(trial, value)
    return root


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _wait_for_json(url: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _get_json(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture(scope="module")
def dashboard(results_folder):
    """The dashboard as a subprocess on a free port, started once: (its first line, port)."""
    port = _free_port()
    command = [sys.executable, "-c", "from cce_bench.cli import main; main()", "dashboard",
               str(results_folder), "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield server.stdout.readline(), port
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_dashboard_prints_its_loopback_url(dashboard):
    first_line, port = dashboard
    assert f"http://127.0.0.1:{port}/" in first_line


def test_dashboard_lists_the_arm_studies_with_learning_curves(dashboard):
    _, port = dashboard
    studies = _wait_for_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["tiny/resnet10t/ce"]
    detail = _get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}")
    curves = [[point["value"] for point in t["intermediate_values"]] for t in detail["trials"]]
    assert curves == [[0.2, 0.4], [0.3, 0.6]]


def test_dashboard_of_a_folder_that_is_not_a_study_is_a_user_error(tmp_path):
    from cce_bench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", str(tmp_path)])
    assert exit_info.value.code == 2
