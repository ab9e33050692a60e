"""`cce-bench dashboard` only reads unless told otherwise: no request of its UI or API can
delete, rename or create a study, and stopping it leaves the results folder as it was."""

import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_dashboard import _free_port, _wait_for_json

from cce_bench.study._dashboard import read_only

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example-report"


@pytest.fixture
def moved_example(tmp_path) -> Path:
    """The committed example, renamed and moved, its database in WAL mode as a driver leaves
    it (an open WAL database has -wal/-shm files beside it)."""
    folder = tmp_path / "elsewhere" / "renamed-example"
    shutil.copytree(EXAMPLE, folder)
    connection = sqlite3.connect(folder / "optuna.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    return folder


def _serve(folder: Path, *flags: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    command = [sys.executable, "-c", "from cce_bench.cli import main; main()", "dashboard",
               str(folder), "--port", str(port), *flags]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_json(f"http://127.0.0.1:{port}/api/studies")
    return server, port


def _send(method: str, url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _stop(server: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    server.send_signal(sig)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _study_names(folder: Path) -> list[str]:
    # mode=ro would leave -wal/-shm files behind on a WAL database; query_only does not.
    connection = sqlite3.connect(f"file:{folder / 'optuna.db'}?mode=rw", uri=True)
    try:
        connection.execute("PRAGMA query_only = ON")
        return [row[0] for row in connection.execute("SELECT study_name FROM studies")]
    finally:
        connection.close()


def test_a_read_only_dashboard_refuses_delete_and_post_and_sigterm_leaves_no_wal(moved_example):
    before = _study_names(moved_example)
    server, port = _serve(moved_example)
    try:
        base = f"http://127.0.0.1:{port}/api/studies"
        deleted = _send("DELETE", f"{base}/1")
        created = _send("POST", base)
        listed = _wait_for_json(base)["study_summaries"]
    finally:
        _stop(server, signal.SIGTERM)
    assert deleted[0] == 403 and "--allow-edits" in deleted[1]
    assert created[0] == 403
    assert len(listed) == len(before) == 6
    assert _study_names(moved_example) == before
    assert sorted(p.name for p in moved_example.glob("optuna.db*")) == ["optuna.db"]


def test_allow_edits_lets_the_dashboard_delete_a_study(moved_example):
    server, port = _serve(moved_example, "--allow-edits")
    try:
        status, _ = _send("DELETE", f"http://127.0.0.1:{port}/api/studies/1")
    finally:
        _stop(server)
    assert status == 204
    assert len(_study_names(moved_example)) == 5


def test_the_read_only_guard_passes_get_and_head_and_refuses_the_rest():
    seen = []

    def app(environ, start_response):
        seen.append(environ["REQUEST_METHOD"])
        start_response("200 OK", [])
        return [b"ok"]

    statuses = {}
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        guarded = read_only(app, "results/x")
        guarded(
            {"REQUEST_METHOD": method},
            lambda status, headers, m=method: statuses.update({m: status}),
        )
    assert seen == ["GET", "HEAD"]
    assert {m for m, s in statuses.items() if s.startswith("403")} == {
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
    }
