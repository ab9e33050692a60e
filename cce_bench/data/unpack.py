"""Unpack a downloaded zip without trusting it.

``zipfile.ZipFile.extractall`` (and ``torchvision``'s ``extract_archive`` on top of it) quietly
rewrites hostile names and has no ceiling on what it writes. Here every entry is checked before
a byte is written: no absolute path or drive, no ``..``, no symbolic link, and the declared
sizes must add up to no more than the dataset's ceiling, so a zip bomb is refused by size. The
writing then counts the bytes that really come out (a header can lie) and opens every file with
``O_NOFOLLOW`` below a folder resolved once, so nothing is written outside it.

Zips of one dataset come in two shapes (Dataverse's HAM10000 zips hold the JPEGs at the top,
Kaggle's and ISIC's one folder named like the zip): a single top folder is dropped, so both
unpack to the same place. macOS's ``__MACOSX/`` resource forks are skipped.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from cce_bench.errors import DownloadError

CHUNK = 1 << 20
#: errno values that mean "no room to write": a full disk, a quota, or a file-size limit.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SKIPPED_FOLDERS = frozenset({"__MACOSX"})
_SKIPPED_FILES = frozenset({".DS_Store"})

Progress = Callable[[str, int, int | None], None]


class UnsafeArchiveError(DownloadError):
    """A zip entry would land outside the target folder, or is a symbolic link."""


class ArchiveTooLargeError(UnsafeArchiveError):
    """A zip unpacks to more bytes than its dataset can hold (a zip bomb)."""


class CorruptArchiveError(DownloadError):
    """A downloaded zip cannot be read (truncated, or a CRC that does not match)."""


class DiskFullError(DownloadError):
    """There is no room left to write a download or what it unpacks to."""


def unpack_zip(
    archive: Path,
    target: Path,
    *,
    max_bytes: int,
    progress: Progress | None = None,
) -> int:
    """Unpack ``archive`` into ``target`` (created) after checking every entry; bytes written.

    Example: ``unpack_zip(Path("part_1.zip"), Path("ham/HAM10000_images_part_1"),
    max_bytes=2 * 1024**3)``. Raises ``UnsafeArchiveError`` (before writing anything) for a path
    that leaves ``target`` or a symbolic link, ``ArchiveTooLargeError`` past ``max_bytes``,
    ``CorruptArchiveError`` for an unreadable zip and ``DiskFullError`` when the disk fills.
    """
    try:
        with zipfile.ZipFile(archive) as bundle:
            entries = checked_entries(archive, bundle, max_bytes)
            total = sum(info.file_size for info, _ in entries if not info.is_dir())
            target.mkdir(parents=True, exist_ok=True)
            root = target.resolve()
            written = 0
            for info, relative in entries:
                written = _write_entry(bundle, info, root, relative, written, max_bytes)
                if progress is not None:
                    progress(f"unpacking {archive.name}", written, total)
            return written
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise CorruptArchiveError(
            f"{archive.name}: not a readable zip ({error}); the download is damaged: run the "
            "same command again to fetch it afresh"
        ) from None


def checked_entries(
    archive: Path, bundle: zipfile.ZipFile, max_bytes: int
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Each entry to write with its relative path; refuses the archive if one is unsafe."""
    entries: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    declared = 0
    for info in bundle.infolist():
        parts = _safe_parts(archive, info)
        if not parts or parts[0] in _SKIPPED_FOLDERS or parts[-1] in _SKIPPED_FILES:
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(
                f"{archive.name}: entry {info.filename!r} is a symbolic link, which could point "
                "anywhere; the archive was refused and nothing was kept: it is not the published "
                "file, so tell whoever serves it"
            )
        declared += 0 if info.is_dir() else info.file_size
        entries.append((info, PurePosixPath(*parts)))
    if declared > max_bytes:
        raise _too_large(archive, f"{declared:,} declared", max_bytes)
    return _without_single_top_folder(entries)


def _safe_parts(archive: Path, info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The entry's path parts, or ``UnsafeArchiveError`` if it is absolute or climbs with ``..``.

    Backslashes count as separators: a zip written on Windows may use them, and ``..\\x`` must
    not slip through as a harmless-looking name.
    """
    name = info.filename.replace("\\", "/")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    drive = len(name) > 1 and name[1] == ":"
    if name.startswith("/") or drive or ".." in parts:
        raise UnsafeArchiveError(
            f"{archive.name}: entry {info.filename!r} would be written outside the folder it "
            "unpacks into; the archive was refused and nothing was kept: it is not the published "
            "file, so tell whoever serves it"
        )
    return parts


def _without_single_top_folder(
    entries: list[tuple[zipfile.ZipInfo, PurePosixPath]],
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Drop a top folder that holds every entry, so ``x.zip`` with ``x/...`` and without unpack
    alike; the folder's own entry disappears with it."""
    tops = {path.parts[0] for _, path in entries}
    nested = all(len(path.parts) > 1 or info.is_dir() for info, path in entries)
    if len(tops) != 1 or not nested:
        return entries
    return [(info, PurePosixPath(*path.parts[1:])) for info, path in entries if len(path.parts) > 1]


def _write_entry(
    bundle: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    root: Path,
    relative: PurePosixPath,
    written: int,
    max_bytes: int,
) -> int:
    """Write one entry below ``root``; returns the running byte count."""
    destination = root.joinpath(*relative.parts)
    try:
        if info.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            return written
        destination.parent.mkdir(parents=True, exist_ok=True)
        # The parents were made here, never followed: check anyway, as the last line of defence.
        if not destination.parent.resolve().is_relative_to(root):
            raise UnsafeArchiveError(
                f"{relative}: its folder resolves outside {root}; refused and nothing was kept"
            )
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        with bundle.open(info) as source:
            handle = os.open(destination, flags, 0o666)
            with os.fdopen(handle, "wb") as out:
                while chunk := source.read(CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        name = Path(bundle.filename or "archive")
                        raise _too_large(name, f"{written:,} written", max_bytes)
                    out.write(chunk)
    except OSError as error:
        if error.errno in NO_SPACE:
            raise no_space_error(destination, error) from None
        if error.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link someone put there
            raise UnsafeArchiveError(
                f"{destination}: is a symbolic link, which is never followed; refused and "
                "nothing was kept"
            ) from None
        raise
    return written


def _too_large(archive: Path, size: str, max_bytes: int) -> ArchiveTooLargeError:
    return ArchiveTooLargeError(
        f"{archive.name}: unpacks to more than {max_bytes:,} bytes ({size}); refused as a zip "
        "bomb and nothing was kept: it is not the published file, so tell whoever serves it"
    )


def no_space_error(path: Path, error: OSError) -> DiskFullError:
    """The one message for a disk that filled up while writing ``path``."""
    return DiskFullError(
        f"{path}: no room left to write ({error.strerror}); free some space, or pass --to a "
        "folder on a disk with more room, then run the same command again (nothing was kept)"
    )
