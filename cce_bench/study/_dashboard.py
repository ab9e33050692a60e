"""``cce-bench dashboard``: optuna-dashboard on a study's Optuna storage, read live."""

from __future__ import annotations

import socket
from pathlib import Path
from wsgiref.simple_server import WSGIServer, make_server

from cce_bench.errors import CceBenchError
from cce_bench.study.storage import open_storage
from cce_bench.study.store import ResultsStore


class DashboardError(CceBenchError):
    """optuna-dashboard cannot listen where it was asked to."""


def serve_dashboard(
    results_dir: Path | str, *, host: str, port: int, storage: str | None = None
) -> None:
    """Serve optuna-dashboard on the folder's Optuna storage until interrupted.

    It only reads; with SQLite in WAL mode (``storage.open_storage``) it never blocks the driver
    of a running study. The port is bound before the storage is opened: a busy port then fails
    with one clear line, without Bottle's start-up banner, and leaves no SQLite ``-wal``/``-shm``
    files behind (an open WAL database has them until its last connection closes).
    """
    import optuna_dashboard

    store = ResultsStore(results_dir)
    store.study_dict()  # a clear error when the folder is not a study's

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as Bottle does

    try:
        server = make_server(host, port, None, server_class=Server)  # its app is set below
    except OSError as error:
        raise DashboardError(
            f"optuna-dashboard cannot listen on {host}:{port} ({error.strerror or error}); "
            "pass --port with a free port"
        ) from None
    backend = None
    try:
        backend = open_storage(storage or store.storage_url)
        server.set_app(optuna_dashboard.wsgi(backend))
        server.serve_forever()
    finally:
        server.server_close()
        if backend is not None:
            backend.engine.dispose()  # closes SQLite, which then removes its -wal/-shm files
