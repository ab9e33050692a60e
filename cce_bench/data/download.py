"""Download a dataset of the catalogue, verified and unpacked: ``download_dataset("ham10000")``.

While it works, the target's parent holds a hidden staging folder ``.<target>.download/``:
``files/`` (``NAME.part`` while arriving, ``NAME`` once complete), ``dataset/`` (the future
target, filled file by file) and ``placed/`` (a record per file already in ``dataset/``). Every
file's size and checksum are checked before anything is unpacked, and the target appears by one
rename of ``dataset/`` once everything is in place, with ``MARKER`` written last inside it: a
half-finished dataset never looks finished, and a finished one is recognised and not fetched
again. Files are fetched, checked and placed one at a time. A failure that more tries cannot
fix (a 404, a wrong checksum, an unsafe archive) removes the failed file and keeps the files
already verified and placed, which the next command reuses (a full disk removes everything);
a timeout or a dropped connection keeps the bytes received, so that the same command resumes
where it stopped. Dataverse files are fetched by their pinned ids; only an id that answers 404
is looked up by name, and what that finds must still match the pinned MD5.

Files without a published checksum (ISIC's) get the SHA-256 of their first download recorded in
``<dataset>.lock.json`` beside the target; every later download is checked against it.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cce_bench.data.catalogue import Dataset, RemoteFile, find_dataset, human_bytes
from cce_bench.data.check import DatasetCheck, check_dataset
from cce_bench.data.fetch import (
    RemoteFileNotFoundError,
    TransientDownloadError,
    dataverse_url,
    fetch_file,
)
from cce_bench.data.unpack import NO_SPACE, DiskFullError, no_space_error, unpack_zip
from cce_bench.errors import DownloadError

DEFAULT_TIMEOUT_S = 60.0
#: Written last into a finished dataset folder: what was downloaded, from where, its checksums.
MARKER = ".cce-bench-download.json"
CHUNK = 1 << 20

Progress = Callable[[str, int, int | None], None]


class TermsNotAcceptedError(DownloadError):
    """The dataset has terms of use and ``--accept-terms`` was not given."""


class TargetFolderError(DownloadError):
    """The target folder exists and holds something else, or cannot be created."""


class ChecksumMismatchError(DownloadError):
    """A downloaded file's size or MD5 differs from the published value."""


class LockMismatchError(ChecksumMismatchError):
    """A file without a published checksum differs from its first download (the lock file)."""


@dataclass(frozen=True)
class DownloadResult:
    """A downloaded dataset folder, its ``data check``, and the commands that use it next."""

    dataset: Dataset
    folder: Path
    fetched: bool
    check: DatasetCheck
    next_steps: tuple[str, ...]
    notes: tuple[str, ...] = ()
    lock_file: Path | None = None


def download_dataset(
    name: str,
    to: str | os.PathLike[str] | None = None,
    *,
    accept_terms: bool = False,
    mirror: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: Progress | None = None,
    datasets: dict[str, Dataset] | None = None,
) -> DownloadResult:
    """Download dataset ``name`` into ``to`` (default ``data/<name>``), verified and unpacked.

    ``mirror`` fetches every file from ``<mirror>/<file name>`` instead of its publisher;
    ``progress(task, done, total)`` is called as bytes arrive, are checked and are unpacked;
    ``datasets`` replaces the catalogue (the tests serve small files under the real names).
    A folder that already holds this dataset's finished download is checked, not fetched again.
    """
    dataset = find_dataset(name, datasets)
    if dataset.terms and not accept_terms:
        raise TermsNotAcceptedError(
            f"{dataset.name} has terms of use (printed above); read them, then pass "
            "--accept-terms to accept them and download"
        )
    folder = Path(to if to is not None else Path("data") / dataset.name).expanduser().absolute()
    lock = folder.parent / f"{dataset.name}.lock.json" if dataset.needs_lock else None
    notes: tuple[str, ...] = ()
    fetched = not is_finished_download(folder, dataset)
    if fetched:
        if folder.is_file() or (folder.is_dir() and any(folder.iterdir())):
            raise TargetFolderError(
                f"{folder}: exists and is not empty; choose a new --to or delete it."
            )
        job = _Job(dataset, folder, lock, mirror.rstrip("/") if mirror else None, timeout)
        notes = job.run(progress or _silent)
    data = folder / dataset.data_file if dataset.data_file else folder
    check = check_dataset(data, source=dataset.source)
    if dataset.images is not None and check.images_found != dataset.images:
        notes += (
            f"{dataset.name} was released with {dataset.images:,} images, but {folder} holds "
            f"{check.images_found:,} readable ones (some copies miss or corrupt one): results on "
            "it are not comparable with the full set's; fetch a complete copy to compare",
        )
    return DownloadResult(
        dataset=dataset,
        folder=folder,
        fetched=fetched,
        check=check,
        next_steps=next_steps(dataset, folder),
        notes=notes,
        lock_file=lock if lock is not None and lock.is_file() else None,
    )


def is_finished_download(folder: Path, dataset: Dataset) -> bool:
    """Whether ``folder`` holds a finished download of ``dataset`` (its marker is written last)."""
    try:
        return json.loads((folder / MARKER).read_text())["dataset"] == dataset.name
    except (OSError, ValueError, KeyError, TypeError):
        return False


def next_steps(dataset: Dataset, folder: Path) -> tuple[str, ...]:
    """The command (or the study edit and the command) that puts the downloaded folder to use."""
    study = shlex.quote(shipped_study(dataset.study))
    if dataset.role == "external_test":
        ham = folder.parent / "ham10000"
        ham_data = shlex.quote(str(ham)) if (ham / MARKER).is_file() else "HAM10000_FOLDER"
        return (
            f"copy {study} to my-study.toml and add under its [data]: "
            f"external_test = {json.dumps(str(folder))}",
            f"cce-bench run my-study.toml --data {ham_data}",
        )
    data = folder / dataset.data_file if dataset.data_file else folder
    return (f"cce-bench run {study} --data {shlex.quote(str(data))}",)


def shipped_study(file_name: str) -> str:
    """A shipped study's path as a user types it: ``studies/NAME`` in a checkout, else absolute.

    The order of ``config.default_study_path``: the working directory's ``studies/``, the copy
    inside an installed wheel, then the one beside the package in an editable install.
    """
    if (Path.cwd() / "studies" / file_name).is_file():
        return f"studies/{file_name}"
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "studies" / file_name, package.parent / "studies" / file_name):
        if candidate.is_file():
            return str(candidate)
    return f"studies/{file_name}"


def _silent(task: str, done: int, total: int | None) -> None:
    """The default progress callback."""


@dataclass
class _Job:
    """One download of ``dataset`` into ``folder`` through its staging folder."""

    dataset: Dataset
    folder: Path
    lock: Path | None
    mirror: str | None
    timeout: float
    notes: list[str] = field(default_factory=list)
    #: Files whose pinned Dataverse id answered 404 and were fetched by name instead.
    moved: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.staging = self.folder.parent / f".{self.folder.name}.download"
        self.files = self.staging / "files"
        self.unpacked = self.staging / "dataset"
        self.placed = self.staging / "placed"

    def run(self, progress: Progress) -> tuple[str, ...]:
        """Fetch, verify and place file by file, then publish.

        A failure keeps what a retry can use: after a timeout or a dropped connection, the
        bytes received; after any other failure, the files already verified and placed (a
        1.4 GB archive is not fetched again because the next file failed), never the failed one.
        Verified means matched a published checksum; a file without one is fetched again.
        """
        created = _make_folders(self.folder.parent)
        try:
            for folder in (self.files, self.unpacked, self.placed):
                folder.mkdir(parents=True, exist_ok=True)
            self._check_free_space()
            recorded = _read_lock(self.lock)
            digests = {
                file.name: self._verified_and_placed(file, recorded, progress)
                for file in self.dataset.files
            }
            self._publish(digests)
        except (TransientDownloadError, KeyboardInterrupt):
            self._discard(created, keep_received=True)
            raise
        except BaseException as error:
            if isinstance(error, OSError) and error.errno in NO_SPACE:
                self._discard(created, keep_received=False)
                raise no_space_error(Path(error.filename or self.staging), error) from None
            kept = self._keep_verified_only(created)
            if kept and isinstance(error, DownloadError):
                raise type(error)(_kept_message(str(error), kept, self.staging)) from None
            raise
        return tuple(self.notes)

    def _verified_and_placed(
        self, file: RemoteFile, recorded: dict[str, dict[str, Any]], progress: Progress
    ) -> dict[str, Any]:
        """The file's size and digests: from its record once placed, else fetched, checked
        against the published values (and the lock) and placed."""
        record = self.placed / f"{file.name}.json"
        if record.is_file():
            return dict(json.loads(record.read_text()))
        path = self.files / file.name
        url = f"{self.mirror}/{file.name}" if self.mirror else file.url
        if not path.is_file():
            url = self._fetch(file, url, path, progress)
        digest = {**_checked(file, path, progress, url=url, why=self._why(file, url)), "url": url}
        _check_lock(file, digest, recorded, self.lock)
        self._place(file, digest, progress)
        return digest

    def _fetch(self, file: RemoteFile, url: str, path: Path, progress: Progress) -> str:
        """Fetch ``url``; a Dataverse file whose pinned id answers 404 is looked up by name.

        The pinned id is the file that was checked; only when it is gone is the current file of
        the same name fetched (and then checked against the pinned MD5 all the same).
        """
        fetch = functools.partial(
            fetch_file, path=path, size=file.size, timeout=self.timeout, progress=progress
        )
        try:
            fetch(url, if_missing=self._if_missing(file))
            return url
        except RemoteFileNotFoundError:
            moved = None if self.mirror else dataverse_url(self.dataset, file, self.timeout)
            if moved is None or moved == url:
                raise
        self.notes.append(f"{file.name}: its pinned id {url} is gone; fetched {moved} instead")
        self.moved.add(file.name)
        fetch(moved, if_missing=self._if_missing(file))
        return moved

    def _why(self, file: RemoteFile, url: str) -> str:
        """What a checksum mismatch of ``file`` from ``url`` means, and whether a rerun helps."""
        if self.mirror:
            return (
                f"the mirror {self.mirror} serves another file under this name; rerunning will "
                f"not fix it: put the published {file.name} on the mirror, or unset "
                "CCE_BENCH_DOWNLOAD_BASE to fetch it from its publisher"
            )
        if file.name in self.moved:
            return (
                f"the publisher replaced it ({url} is the file now listed under this name); "
                "rerunning will not fix it: fetch the published file from a copy of the "
                f"original release ({self.dataset.origin}) and serve it as a mirror "
                "(CCE_BENCH_DOWNLOAD_BASE)"
            )
        return "the download is damaged or not the published file: run the same command again"

    def _if_missing(self, file: RemoteFile) -> str:
        if self.mirror:
            return (
                f"put {file.name} on the mirror, or unset CCE_BENCH_DOWNLOAD_BASE to fetch it "
                "from its publisher"
            )
        return (
            f"the publisher has moved it: fetch it by hand from {self.dataset.origin} into a "
            "folder served over HTTP and set CCE_BENCH_DOWNLOAD_BASE to that server"
        )

    def _keep_verified_only(self, created: list[Path]) -> list[str]:
        """After a failure that a retry cannot fix: keep the files already verified and placed,
        drop everything else (the failed file's bytes and any partial unpack); the names kept."""
        kept = sorted(path.name.removesuffix(".json") for path in self.placed.glob("*.json"))
        published = {file.name for file in self.dataset.files if file.md5 is not None}
        # Only files that matched a published checksum count as verified: a file without one
        # (ISIC's) was only taken on trust, and a retry fetches it again.
        if not kept or not set(kept) <= published:
            self._discard(created, keep_received=False)
            return []
        shutil.rmtree(self.files, ignore_errors=True)
        self.files.mkdir(parents=True, exist_ok=True)
        for file in self.dataset.files:
            if file.name not in kept and file.unpack_to:
                shutil.rmtree(self.unpacked / file.unpack_to, ignore_errors=True)
        return kept

    def _check_free_space(self) -> None:
        """Refuse at once when the disk cannot hold the downloads and what they unpack to."""
        needed = sum(
            file.approx_size * (1 if file.unpack_to is None else 2)
            for file in self.dataset.files
            if not (self.placed / f"{file.name}.json").is_file()
        ) - sum(path.stat().st_size for path in self.files.iterdir())
        free = shutil.disk_usage(self.staging).free
        if free < needed:
            raise DiskFullError(
                f"{self.folder.parent}: {human_bytes(free)} free, but {self.dataset.name} needs "
                f"about {human_bytes(needed)} more (downloads and what they unpack to); free some "
                "space, or pass --to a folder on a disk with more room (nothing was kept)"
            )

    def _place(self, file: RemoteFile, digest: dict[str, Any], progress: Progress) -> None:
        """Move a plain file into ``dataset/``, or unpack an archive there and delete it."""
        record = self.placed / f"{file.name}.json"
        if record.is_file():
            return
        source = self.files / file.name
        if file.unpack_to is None:
            os.replace(source, self.unpacked / file.name)
        else:
            limit = file.max_unpacked or 4 * source.stat().st_size
            target = self.unpacked / file.unpack_to
            unpack_zip(source, target, max_bytes=limit, progress=progress)
            source.unlink()
        _write_json(record, digest)

    def _publish(self, digests: dict[str, dict[str, Any]]) -> None:
        """Record the lock, write the marker, and make the target appear in one rename."""
        if self.lock is not None:
            recorded = _read_lock(self.lock)
            today = datetime.date.today().isoformat()
            for file in self.dataset.files:
                if file.md5 is None and file.name not in recorded:
                    recorded[file.name] = {**digests[file.name], "first_downloaded": today}
            _write_json(self.lock, {"dataset": self.dataset.name, "files": recorded})
        from cce_bench import __version__

        marker = {"dataset": self.dataset.name, "cce_bench": __version__, "files": digests}
        _write_json(self.unpacked / MARKER, marker)
        if self.folder.is_dir():
            self.folder.rmdir()  # empty: anything else was refused before the first byte
        os.replace(self.unpacked, self.folder)
        shutil.rmtree(self.staging)

    def _discard(self, created: list[Path], *, keep_received: bool) -> None:
        """Remove the staging folder (kept when it holds bytes a retry resumes from)."""
        received = any(self.files.glob("*")) or any(self.placed.glob("*"))
        if keep_received and received:
            return
        shutil.rmtree(self.staging, ignore_errors=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                break


def _checked(
    file: RemoteFile, path: Path, progress: Progress, *, url: str, why: str
) -> dict[str, Any]:
    """The file's size and digests, after comparing them with the published ones.

    A mismatch names where the file came from (``url``) and ``why``: what it means and
    whether running the command again can help.
    """
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        raise ChecksumMismatchError(
            f"{file.name}: {size:,} bytes from {url}, but the published file has "
            f"{file.size:,}; {why} (nothing was kept)"
        )
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    done = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
            done += len(chunk)
            progress(f"checking {file.name}", done, size)
    if file.md5 is not None and md5.hexdigest() != file.md5:
        raise ChecksumMismatchError(
            f"{file.name}: MD5 {md5.hexdigest()} differs from the published {file.md5} "
            f"(from {url}); {why} (nothing was kept)"
        )
    return {"bytes": size, "md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def _check_lock(
    file: RemoteFile,
    digest: dict[str, Any],
    recorded: dict[str, dict[str, Any]],
    lock: Path | None,
) -> None:
    """A file without a published checksum must match its first download's SHA-256."""
    first = recorded.get(file.name)
    if file.md5 is not None or first is None:
        return
    if first.get("sha256") != digest["sha256"]:
        raise LockMismatchError(
            f"{file.name}: SHA-256 {digest['sha256']} (from {digest['url']}) differs from "
            f"{first.get('sha256')}, recorded in {lock} at its first download "
            f"({first.get('first_downloaded', 'date unknown')}); the file on the server "
            "changed since, or this copy is damaged: try again later, or delete the lock "
            "file to accept the new file (nothing was kept)"
        )


def _kept_message(message: str, kept: list[str], staging: Path) -> str:
    """``message`` saying which verified files were kept for the next command to reuse."""
    note = (
        f"kept the verified {', '.join(kept)} in {staging}: the next command reuses "
        f"{'it' if len(kept) == 1 else 'them'}; delete that folder to discard"
    )
    if "(nothing was kept)" in message:
        return message.replace("(nothing was kept)", f"({note})")
    return f"{message.replace('nothing was kept', 'nothing of it was kept')} ({note})"


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TargetFolderError(
            f"{folder}: cannot create it ({error.strerror}); pass --to a folder you can write to"
        ) from None
    return list(reversed(missing))


def _read_lock(lock: Path | None) -> dict[str, dict[str, Any]]:
    if lock is None or not lock.is_file():
        return {}
    try:
        return dict(json.loads(lock.read_text())["files"])
    except (ValueError, KeyError, TypeError):
        raise DownloadError(
            f"{lock}: not a cce-bench lock file; restore it, or delete it to record the next "
            "download's checksums afresh"
        ) from None


def _write_json(path: Path, content: dict[str, Any]) -> None:
    """Write ``path`` whole or not at all (a temporary file, then a rename)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)
