"""The results folder of one study: what was run, what it produced, and nothing half-written.

Layout of ``<results-dir>/<name>/`` (docs/interfaces.md, "Results store")::

    study.toml      the study file exactly as run (a rerun is compared against it)
    split.json      the split manifest: which image ids and lesions sit in which part
    optuna.db       the default Optuna storage (one study per arm)
    storage.txt     only when ``--storage`` named another storage: its URL, password masked
    runs.jsonl      one JSON record per finished evaluation run, appended
    predictions/    ``<backbone>__<arm>__seed<k>.npz``: image_ids, y_true, proba per run
    budget_changes.jsonl  budgets changed on a resume (:mod:`cce_bench.study.budget_log`)

Everything a run produced is on disk before it is counted: a run counts once its
line is in ``runs.jsonl``; its predictions are written before that line (tmp file +
``os.replace``, atomic on POSIX), and the line is appended with one ``write`` followed by
``fsync``. A driver killed at any instant therefore leaves either no trace of a run, orphan
predictions that the rerun overwrites, or a truncated last line, which ``read_runs`` detects and
``repair=True`` sets aside.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import secrets
import tempfile
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cce_bench.config import BUDGET_KEYS, PLACEMENT_KEYS, StudySpec, diff_studies, read_stored_study
from cce_bench.errors import ResultsError

STUDY_FILE = "study.toml"
SPLIT_FILE = "split.json"
RUNS_FILE = "runs.jsonl"
STORAGE_FILE = "storage.txt"
OPTUNA_FILE = "optuna.db"
PREDICTIONS_DIR = "predictions"
LOCK_FILE = ".lock"

#: Outcomes after which a (backbone, arm, seed) run is never redone; `failed` and `interrupted`
#: runs are retried on the next resume (a crash or a lost node is not a property of the setting).
FINAL_OUTCOMES = frozenset({"completed", "diverged"})


class CorruptRecordError(ResultsError):
    """A line of ``runs.jsonl`` is not a JSON object."""


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the new one, never half.

    The temporary file lives in the same folder because ``os.replace`` is only atomic within one
    filesystem; the fsync before the rename keeps a power cut from exposing an empty file. It is
    created with mode 0o666 under the umask (not ``mkstemp``'s 0o600), because results folders
    are meant to be shared and read by others, the dashboard and the report included.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    handle = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def run_key(record: dict[str, Any]) -> tuple[str, str, int]:
    """The identity of an evaluation run: (backbone, arm, seed)."""
    return (str(record["backbone"]), str(record["arm"]), int(record["seed"]))


class ResultsStore:
    """Reads and writes one study's results folder; every write is atomic.

    >>> store = ResultsStore(Path("results/quickstart"))  # doctest: +SKIP
    >>> [r["outcome"] for r in store.read_runs()]  # doctest: +SKIP
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def runs_path(self) -> Path:
        return self.root / RUNS_FILE

    @property
    def study_path(self) -> Path:
        return self.root / STUDY_FILE

    @property
    def split_path(self) -> Path:
        return self.root / SPLIT_FILE

    @property
    def storage_url(self) -> str:
        """The Optuna storage of this study: ``storage.txt`` when set, else the folder's SQLite.

        A URL recorded with a masked password cannot be opened as it is; the caller passes the
        real URL again (``--storage``), see ``cce_bench.study.storage.open_storage``.
        """
        override = self.root / STORAGE_FILE
        if override.is_file():
            return override.read_text(encoding="utf-8").strip()
        return f"sqlite:///{(self.root / OPTUNA_FILE).resolve()}"

    def optuna_study_name(self, backbone: str, arm: str, replicate: int = 0) -> str:
        """``<name>/<backbone>/<arm>``, where ``<name>`` is this folder's name.

        The folder's name is the study's ``name`` except after ``--fresh`` (``<name>-2``), which
        must not reuse the old study's trials when both live in one external storage. Tuning
        replicates after the first (``tune.replicates``) add ``/r<r>``.
        """
        name = f"{self.root.name}/{backbone}/{arm}"
        return f"{name}/r{replicate}" if replicate else name

    def optuna_study_names(self, spec: Any, backbone: str, arm: str) -> list[str]:
        """Every tuning replicate's study name of one arm, replicate 0 first."""
        return [self.optuna_study_name(backbone, arm, r) for r in range(spec.tune.replicates)]

    def prediction_path(self, backbone: str, arm: str, seed: int) -> Path:
        return self.root / PREDICTIONS_DIR / f"{backbone}__{arm}__seed{seed}.npz"

    # -- checks --------------------------------------------------------------------------------
    def exists(self) -> bool:
        """True when a study has already been started in this folder."""
        return self.study_path.is_file()

    def ensure_writable(self) -> None:
        """Create the folder and prove it takes files, before any work starts (a study that
        cannot write its first result should fail in a second, not after an hour of training)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as error:
            raise ResultsError(
                f"results folder {self.root} is not writable ({error.strerror or error}); "
                "pass --results-dir with a folder you can write to"
            ) from error

    # -- study and split -----------------------------------------------------------------------
    def write_study(self, study_text: str) -> None:
        atomic_write_bytes(self.study_path, study_text.encode("utf-8"))

    def study(self) -> StudySpec:
        """The study as run, typed: ``study.toml`` read against the schema, defaults filled in."""
        return read_stored_study(self.study_dict(), origin=str(self.study_path))

    def study_dict(self) -> dict[str, Any]:
        """The study as stored in ``study.toml`` (a plain dict, as ``StudySpec.to_dict()``)."""
        try:
            return tomllib.loads(self.study_path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise ResultsError(
                f"{self.study_path} is missing: {self.root} is not a study results folder; "
                "pass the folder `cce-bench run` created (<results-dir>/<name>)"
            ) from error
        except tomllib.TOMLDecodeError as error:
            raise ResultsError(
                f"{self.study_path} is not valid TOML ({error}); restore it or rerun with --fresh"
            ) from error

    def write_split_manifest(self, manifest: dict[str, Any]) -> None:
        payload = json.dumps(manifest, indent=1, sort_keys=True, default=_json_default)
        atomic_write_bytes(self.split_path, payload.encode("utf-8"))

    def split_manifest(self) -> dict[str, Any]:
        """The split manifest written when the study started (image ids per part)."""
        try:
            return json.loads(self.split_path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise ResultsError(
                f"{self.split_path} is missing; rerun the study to write it"
            ) from error

    def write_storage_url(self, redacted_url: str) -> None:
        """Record a non-default storage (password already masked) for status and dashboard."""
        atomic_write_bytes(self.root / STORAGE_FILE, (redacted_url + "\n").encode("utf-8"))

    # -- runs ----------------------------------------------------------------------------------
    def read_runs(self, *, repair: bool = False) -> list[dict[str, Any]]:
        """All run records in the order they were appended.

        A corrupt line raises ``CorruptRecordError`` naming the file and line. With
        ``repair=True`` a corrupt *last* line (what a driver killed mid-append leaves) is moved
        to ``runs.jsonl.corrupt`` and the valid records are kept; corruption anywhere else is
        never a crash artefact, so it still raises. Resuming a study repairs (``run_study``);
        readers such as ``status`` and ``report`` do not write, so their message says to resume.
        """
        if not self.runs_path.is_file():
            return []
        raw = self.runs_path.read_bytes()
        lines = raw.split(b"\n")
        last_number = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
        records: list[dict[str, Any]] = []
        offset = 0
        for number, line in enumerate(lines, start=1):
            is_last = number == last_number
            if line.strip():
                record = _parse_record(line)
                if record is None:
                    if repair and is_last:
                        self._set_aside(raw, offset)
                        return records
                    raise CorruptRecordError(
                        f"{self.runs_path} line {number} is not a complete JSON record; "
                        + (
                            "resume the study with `cce-bench run` (or tune/evaluate), which "
                            "sets the line aside in runs.jsonl.corrupt and redoes that run"
                            if is_last
                            else "restore the file from a backup or start over with --fresh"
                        )
                    )
                records.append(record)
            offset += len(line) + 1
        return records

    def _set_aside(self, raw: bytes, offset: int) -> None:
        corrupt = self.runs_path.with_name(RUNS_FILE + ".corrupt")
        with corrupt.open("ab") as handle:
            handle.write(raw[offset:].rstrip(b"\n") + b"\n")
        atomic_write_bytes(self.runs_path, raw[:offset])

    def append_run(
        self, record: dict[str, Any], predictions: dict[str, np.ndarray] | None = None
    ) -> dict[str, Any]:
        """Write a run's predictions (if any), then append its record; returns the record.

        ``predictions`` maps array names (``image_ids``, ``y_true``, ``proba`` and, for an
        external test set, ``external_*``) to arrays; the record's ``predictions`` field is set
        to the file's path relative to the results folder.
        """
        record = dict(record)
        if predictions is not None:
            path = self.prediction_path(*run_key(record))
            atomic_write_bytes(path, _npz_bytes(predictions))
            record["predictions"] = path.relative_to(self.root).as_posix()
        line = json.dumps(record, sort_keys=True, default=_json_default).encode("utf-8")
        self.root.mkdir(parents=True, exist_ok=True)
        with self.runs_path.open("ab") as handle:
            if handle.tell() > 0 and not _ends_with_newline(self.runs_path):
                handle.write(b"\n")
            handle.write(line + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return record

    def load_predictions(
        self, record: dict[str, Any], *, part: str = "test"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image_ids, y_true, proba)`` of a run on ``part`` ("test" or "external")."""
        if not record.get("predictions"):
            raise ResultsError(
                f"run {run_key(record)} in {self.runs_path} has no predictions "
                f"(outcome {record.get('outcome')!r})"
            )
        path = self.root / record["predictions"]
        prefix = "" if part == "test" else f"{part}_"
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return tuple(arrays[prefix + name] for name in ("image_ids", "y_true", "proba"))
        except (FileNotFoundError, KeyError, ValueError, OSError) as error:
            raise ResultsError(
                f"predictions {path} for run {run_key(record)} cannot be read ({error}); "
                "delete its record from runs.jsonl and rerun to redo the run"
            ) from error


def completed_keys(records: Iterable[dict[str, Any]]) -> set[tuple[str, str, int]]:
    """(backbone, arm, seed) of the runs that never need to run again."""
    return {run_key(r) for r in records if r.get("outcome") in FINAL_OUTCOMES}


def latest_records(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The record that counts per (backbone, arm, seed): its last one, in append order.

    A failed or interrupted run is retried on resume and a study whose tuning was extended
    re-evaluates its seeds, so one run can have several records; the latest supersedes the rest.
    """
    return {run_key(record): record for record in records}


def _parse_record(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    plain = {}
    for name, value in arrays.items():
        array = np.asarray(value)
        # Object arrays (string ids from pandas) would need pickle to load; store them as text.
        plain[name] = array.astype(str) if array.dtype == object else array
    np.savez_compressed(buffer, **plain)
    return buffer.getvalue()


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays, tuples and paths as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


# -- choosing and guarding the folder ------------------------------------------------------------
def resolve_results_folder(
    spec: StudySpec, results_dir: Path | str, *, fresh: bool = False
) -> tuple[ResultsStore, tuple[str, ...]]:
    """The folder this run uses: ``<results-dir>/<name>`` or, after ``--fresh``, ``<name>-k``.

    ``--fresh`` never deletes anything: it picks the next free ``<name>-k``. Without it, the
    newest existing folder of this study whose stored study equals ``spec`` (budgets aside) is
    resumed; when none matches, the run is refused with a one-line diff against the newest.
    """
    base = Path(results_dir)
    existing = [base / spec.name] if (base / spec.name / "study.toml").is_file() else []
    k = 2
    while (base / f"{spec.name}-{k}").exists():
        if (base / f"{spec.name}-{k}" / "study.toml").is_file():
            existing.append(base / f"{spec.name}-{k}")
        k += 1
    if fresh:
        folder = base / spec.name if not (base / spec.name).exists() else base / f"{spec.name}-{k}"
        return ResultsStore(folder), (f"--fresh: starting over in {folder}",)
    if not existing:
        return ResultsStore(base / spec.name), ()
    current = spec.to_dict()
    for folder in reversed(existing):
        if not diff_studies(_stored_study(folder), current):
            return ResultsStore(folder), ()
    changes = diff_studies(_stored_study(existing[-1]), current)
    raise ResultsError(
        f"{existing[-1]} holds results of a different study ({'; '.join(changes)}); only "
        f"{_may_change()} may change; pass --fresh to start over in a new folder"
    )


def _stored_study(folder: Path) -> dict[str, Any]:
    """A stored study with the schema's defaults filled in, as ``StudySpec.to_dict()`` gives.

    A folder started before a table existed (``[analysis]``) ran under that table's defaults;
    comparing the filled-in form keeps such a folder resumable with the same defaults.
    """
    return ResultsStore(folder).study().to_dict()


def _may_change() -> str:
    """The keys a started study may change, as a user writes them (``[resources]`` a table)."""
    keys = [key if "." in key else f"[{key}]" for key in (*BUDGET_KEYS, *PLACEMENT_KEYS)]
    return ", ".join(keys[:-1]) + " and " + keys[-1]


def check_writable(store: ResultsStore) -> None:
    """Refuse a results folder that cannot be written, without creating anything yet."""
    if store.root.exists():
        store.ensure_writable()
        return
    parent = store.root.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ResultsError(
            f"cannot create results folder {store.root}: {parent} is not a writable folder; "
            "pass --results-dir with a folder you can write to"
        )


@contextlib.contextmanager
def folder_lock(store: ResultsStore) -> Iterator[None]:
    """One driver per results folder: a second would mark the first's trials interrupted.

    ``flock`` is released by the kernel when the holder dies, even by SIGKILL, so a killed
    driver never leaves a stale lock behind.
    """
    store.root.mkdir(parents=True, exist_ok=True)
    with (store.root / LOCK_FILE).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ResultsError(
                f"another cce-bench is running on {store.root}; wait for it or stop it first"
            ) from None
        yield
