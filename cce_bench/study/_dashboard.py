"""``cce-bench dashboard``: optuna-dashboard on a study's Optuna storage, read live, read-only.

optuna-dashboard's API and UI can create, rename and delete studies and write notes, and
``--host 0.0.0.0`` puts it on a network: by default every request but GET and HEAD is refused
before it reaches the app, and the storage is opened through connections that refuse writes
(:func:`cce_bench.study.storage.open_readonly_storage`). ``--allow-edits`` opts out of both.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from shlex import quote
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from cce_bench.errors import CceBenchError
from cce_bench.study.storage import open_readonly_storage, open_storage
from cce_bench.study.store import ResultsStore

#: The methods that only read; everything else changes the storage (DELETE, POST, PUT, PATCH).
READ_METHODS = frozenset({"GET", "HEAD"})

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class DashboardError(CceBenchError):
    """optuna-dashboard cannot listen where it was asked to."""


def read_only(app: WsgiApp, results_dir: Path | str) -> WsgiApp:
    """``app`` behind a guard that answers 403 to every request that is not GET or HEAD.

    The message names the flag that allows edits, since the UI's buttons are what send them.
    """
    message = (
        "this dashboard is read-only: deleting, renaming, creating or annotating studies is "
        f"refused; to allow it, restart it with `cce-bench dashboard {quote(str(results_dir))} "
        "--allow-edits`\n"
    ).encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in READ_METHODS:
            return app(environ, start_response)
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(message))),
        ]
        start_response("403 Forbidden", headers)
        return [message]

    return guarded


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (``kill``, a service manager, a container stop) into KeyboardInterrupt.

    Python's default SIGTERM ends the process without running ``finally`` blocks, which would
    leave an open SQLite database's ``-wal``/``-shm`` files in the results folder.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _not_ready(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """What the server answers before the storage is open (it serves nothing until then)."""
    start_response("503 Service Unavailable", [("Content-Length", "0")])
    return []


def serve_dashboard(
    results_dir: Path | str,
    *,
    host: str,
    port: int,
    storage: str | None = None,
    allow_edits: bool = False,
) -> None:
    """Serve optuna-dashboard on the folder's Optuna storage until interrupted (or SIGTERM).

    Read-only unless ``allow_edits``. Reading never blocks the driver of a running study (SQLite
    in WAL mode, as the driver leaves it). The port is bound before the storage is opened: a
    busy port then fails with one clear line, without Bottle's start-up banner, and leaves no
    SQLite ``-wal``/``-shm`` files behind (an open WAL database has them until its last
    connection closes, which the ``finally`` below does, on Ctrl-C and SIGTERM alike).
    """
    import optuna_dashboard

    store = ResultsStore(results_dir)
    store.study_dict()  # a clear error when the folder is not a study's

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as Bottle does

    try:
        server = make_server(host, port, _not_ready, server_class=Server)  # app set below
    except OSError as error:
        raise DashboardError(
            f"optuna-dashboard cannot listen on {host}:{port} ({error.strerror or error}); "
            "pass --port with a free port"
        ) from None
    backend = None
    url = storage or store.storage_url
    try:
        with sigterm_as_interrupt():
            backend = open_storage(url) if allow_edits else open_readonly_storage(url)
            if backend is None:  # a SQLite file that does not exist yet: nothing to show
                backend = open_storage("sqlite:///:memory:")
            app = optuna_dashboard.wsgi(backend)
            server.set_app(app if allow_edits else read_only(app, results_dir))
            server.serve_forever()
    finally:
        server.server_close()
        if backend is not None:
            backend.engine.dispose()  # closes SQLite, which then removes its -wal/-shm files
