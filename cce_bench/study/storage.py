"""The Optuna storage of a study: its URL, shown without its password, opened by every reader.

A study's trials live in one SQLAlchemy URL: ``sqlite:///<results folder>/optuna.db`` by
default, or whatever ``--storage`` named when the study started (recorded, password masked, in
the results folder's ``storage.txt``). The driver, ``cce-bench status``, the dashboard, the
tuning-split check and the report all read that URL, so this module is the one place that parses
it (SQLAlchemy's own ``make_url``) and the one place that opens it.

A password never reaches a log, a message or a file: every URL shown to people passes through
:func:`redact_url`, and a driver's error text through the same mask.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from cce_bench.errors import ResultsError, StorageError

if TYPE_CHECKING:
    import optuna

    from cce_bench.study.store import ResultsStore

#: What a masked password looks like in URLs shown to people or written to disk.
MASK = "***"

#: Query parameters that carry a password in some drivers' URLs (``?password=...``).
_PASSWORD_KEYS = frozenset({"password", "passwd", "pwd"})

#: An unreachable database host must fail in seconds, before any work starts; SQLite waits up to
#: a minute for a lock, which a dashboard or ``status`` reading alongside the driver may hold.
_NETWORK_CONNECT_TIMEOUT_S = 10
_SQLITE_LOCK_TIMEOUT_S = 60


def _parse(url: str) -> URL | None:
    """The URL as SQLAlchemy reads it, or None when it is not one (e.g. a bare file name)."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return None


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: never in logs, messages or reports.

    >>> redact_url("postgresql://user:secret@host/db")
    'postgresql://user:***@host/db'
    """
    parsed = _parse(url)
    if parsed is None:
        # Not a URL SQLAlchemy reads; whatever stands before an "@" may hold a password.
        head, at, tail = url.rpartition("@")
        scheme, separator, _ = head.partition("://")
        return f"{scheme}{separator}{MASK}@{tail}" if at else url
    hidden = {key: MASK for key in parsed.query if key.lower() in _PASSWORD_KEYS}
    if hidden:
        parsed = parsed.update_query_dict(hidden)
    # render_as_string quotes the query's mask; a masked URL must read as masked.
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", MASK)


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (``sqlite:///results/q/optuna.db``), else None."""
    parsed = _parse(url)
    if parsed is None or parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    return Path(database) if database and database != ":memory:" else None


def same_storage(url: str, recorded: str) -> bool:
    """True when ``url`` names the storage recorded for a study (``recorded`` is masked).

    Two SQLite URLs are the same storage when they name the same file, however spelt.
    """
    path, recorded_path = sqlite_path(url), sqlite_path(recorded)
    if path is None and recorded_path is None:
        return redact_url(url) == recorded
    if path is None or recorded_path is None:
        return False
    return path.resolve() == recorded_path.resolve()


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Open (and create) an Optuna RDB storage, failing fast with a redacted message.

    SQLite is switched to write-ahead logging so that ``optuna-dashboard`` can read while the
    driver writes: in WAL mode readers never block the writer. Network databases get a 10 s
    connect timeout so that an unreachable host fails in seconds, before any work starts.
    """
    import optuna
    import sqlalchemy.exc

    if MASK in url:
        raise StorageError(
            f"storage {url} was recorded without its password; pass --storage with the full URL"
        )
    parsed = _parse(url)
    is_sqlite = parsed is not None and parsed.get_backend_name() == "sqlite"
    connect_args: dict[str, Any] = (
        {"timeout": _SQLITE_LOCK_TIMEOUT_S}
        if is_sqlite
        else {"connect_timeout": _NETWORK_CONNECT_TIMEOUT_S}
    )
    try:
        path = sqlite_path(url)
        if path is not None:
            _use_write_ahead_log(path)
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect_args})
    except ImportError:
        dialect = parsed.get_backend_name() if parsed is not None else url.split(":", 1)[0]
        raise StorageError(
            f"cannot open Optuna storage {redact_url(url)}: the database driver for {dialect} "
            "is not installed; install it (psycopg2-binary for PostgreSQL, PyMySQL for MySQL)"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error, ValueError, OSError) as error:
        reason = _scrub(str(error).splitlines()[0] if str(error) else type(error).__name__, url)
        raise StorageError(
            f"cannot open Optuna storage {redact_url(url)}: {reason}; pass --storage with a "
            "reachable SQLAlchemy URL such as sqlite:///results/optuna.db or "
            "postgresql://user:password@host/db"
        ) from None
    return storage


def open_existing_storage(url: str) -> optuna.storages.RDBStorage | None:
    """``open_storage`` for readers: None when the URL names a SQLite file that does not exist.

    Opening it would create an empty database (in the results folder, for the default URL), and
    a reader such as ``cce-bench status`` never writes.
    """
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        return None
    return open_storage(url)


def open_readonly_storage(url: str) -> optuna.storages.RDBStorage | None:
    """Open a storage for a reader that must never change it: ``status``, the dashboard, reports.

    None when the URL names a SQLite file that does not exist (opening it would create one).
    SQLite is opened as it is, without switching its journal mode, through connections that
    refuse every write (``PRAGMA query_only``), so the file stays byte-identical whatever the
    caller does; the last connection to close still removes the ``-wal``/``-shm`` files that a
    write-ahead-logged database gets while it is open. A folder that cannot be written (where
    SQLite could not create those files) is read as ``immutable``: nothing can write it either.
    Other databases are opened as the driver opens them; their read-only-ness is the caller's.
    """
    import optuna

    path = sqlite_path(url)
    if path is None:
        return open_storage(url)
    if not path.is_file():
        return None
    writable_folder = os.access(path.parent, os.W_OK)
    uri = path.resolve().as_uri() + ("?mode=rw" if writable_folder else "?mode=ro&immutable=1")

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(
            uri, uri=True, timeout=_SQLITE_LOCK_TIMEOUT_S, check_same_thread=False
        )
        connection.execute("PRAGMA query_only = ON")
        return connection

    try:
        return optuna.storages.RDBStorage(
            "sqlite://",  # the connections come from `connect`, which names the file
            engine_kwargs={"creator": connect},
            skip_table_creation=True,
        )
    except Exception as error:  # any driver error means the same: the file is not readable
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StorageError(
            f"cannot read Optuna storage {path}: {reason}; check that it is the optuna.db "
            "a study wrote and that you may read it"
        ) from None


def open_study_storage(store: ResultsStore, storage: str | None) -> optuna.storages.RDBStorage:
    """The Optuna storage of a study: ``--storage`` when given, else the one the folder records.

    A study that already has results keeps its storage: pointing it elsewhere would silently
    start tuning from scratch, so a different ``--storage`` is refused.
    """
    recorded = store.storage_url
    if storage and store.exists() and not same_storage(storage, recorded):
        raise ResultsError(
            f"{store.root} was run with storage {recorded}, not {redact_url(storage)}; pass "
            "the same --storage, or --fresh to start over"
        )
    url = storage or recorded
    _refuse_sqlite_on_a_network_filesystem(url)
    return open_storage(url)


def _refuse_sqlite_on_a_network_filesystem(url: str) -> None:
    """The driver writes the storage: a SQLite file on NFS, SMB, Lustre... is refused."""
    from cce_bench.study._filesystem import network_filesystem

    path = sqlite_path(url)
    kind = network_filesystem(path.parent) if path is not None else None
    if kind is not None:
        raise StorageError(
            f"the Optuna storage {path} is on a network filesystem ({kind}), where SQLite's "
            "locks and write-ahead log are unsafe and the study could be corrupted; put the "
            "results on a local disk (--results-dir), or pass --storage with a database "
            "server's URL such as postgresql://user:password@host/db"
        )


def _use_write_ahead_log(path: Path) -> None:
    """Switch a SQLite file to WAL (persistent, so once is enough), outside any transaction."""
    if not path.parent.is_dir():
        return  # let SQLAlchemy report the missing folder in its own words
    connection = sqlite3.connect(path, isolation_level=None, timeout=_SQLITE_LOCK_TIMEOUT_S)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def _scrub(text: str, url: str) -> str:
    """Remove the URL's password from a driver's error text, in case the driver quoted it."""
    parsed = _parse(url)
    password = parsed.password if parsed is not None else None
    return text.replace(str(password), MASK) if password else text
