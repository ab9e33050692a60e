"""One file over HTTP, resumed with Range requests; and a Dataverse file's current id by name.

``fetch_file`` appends to ``NAME.part`` from where an earlier try stopped (``Range: bytes=N-``),
starts over when a server ignores the range (200 instead of 206), and gives up only after
``STALLED_TRIES`` tries in a row that bring no new byte, leaving the part file for the next
command to resume. Errors that a retry cannot fix (404, 403, a wrong announced size) are raised
at once. Only ``urllib`` is used: nothing beyond the standard library is needed to get this right.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from cce_bench import __version__
from cce_bench.data.catalogue import Dataset, RemoteFile
from cce_bench.data.unpack import NO_SPACE, no_space_error
from cce_bench.errors import DownloadError

CHUNK = 1 << 20
#: Tries in a row that bring no new byte before a file is given up (and kept to resume).
STALLED_TRIES = 3
#: Pause after a try that brought nothing, times the number of such tries so far.
RETRY_PAUSE_S = 1.0
USER_AGENT = f"cce-bench/{__version__} (+python-urllib)"

Progress = Callable[[str, int, int | None], None]


class RemoteFileNotFoundError(DownloadError):
    """The server answered 404 (or 410): the file is not where the catalogue says."""


class ServerRefusedError(DownloadError):
    """The server answered with an error status that trying again will not change."""


class WrongSizeError(DownloadError):
    """The server announces a length other than the published file's."""


class TransientDownloadError(DownloadError):
    """The transfer stalled; what arrived is kept, and the same command resumes from it."""


class DownloadTimeoutError(TransientDownloadError):
    """The server did not answer within the timeout."""


class DownloadInterruptedError(TransientDownloadError):
    """The server stopped sending before the end of the file."""


class ServerUnreachableError(TransientDownloadError):
    """No connection to the server (refused, unknown host, network down) or a 5xx answer."""


class _Stalled(Exception):
    """One try ended early: ``kind`` is ``timeout``, ``dropped`` or ``unreachable``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(kind, detail)
        self.kind, self.detail = kind, detail


def fetch_file(
    url: str,
    path: Path,
    *,
    size: int | None,
    timeout: float,
    progress: Progress,
    if_missing: str,
) -> None:
    """Download ``url`` to ``path`` through ``path.part``, resuming what an earlier try left.

    ``size`` (the published length, if any) is compared with what the server announces before
    the body is read; ``if_missing`` is the fix a 404 message ends with.
    """
    part = path.with_name(path.name + ".part")
    stalled = 0
    while True:
        before = _size(part)
        try:
            _one_try(url, part, size=size, timeout=timeout, progress=progress, label=path.name)
            break
        except _Stalled as stall:
            stalled = 0 if _size(part) > before else stalled + 1
            if stalled >= STALLED_TRIES:
                raise _stalled_error(stall, url, part, timeout) from None
            time.sleep(RETRY_PAUSE_S * stalled)
        except urllib.error.HTTPError as error:
            raise _status_error(error, url, path.name, if_missing) from None
    os.replace(part, path)


def _one_try(
    url: str, part: Path, *, size: int | None, timeout: float, progress: Progress, label: str
) -> None:
    """One request: append the rest of the file to ``part``, or raise ``_Stalled``."""
    done = _size(part)
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={done}-"} if done else {})}
    try:
        request = urllib.request.Request(url, headers=headers)
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and done:
            if _content_range(error.headers.get("Content-Range", ""))[1] == done:
                return  # the part already holds the whole file
            part.unlink()
            raise _Stalled("dropped", "(the byte range was refused; starting over)") from None
        if error.code >= 500 or error.code == 429:
            raise _Stalled("unreachable", f"{error.code} {error.reason}") from None
        raise
    except urllib.error.URLError as error:
        kind = "timeout" if isinstance(error.reason, TimeoutError) else "unreachable"
        raise _Stalled(kind, str(error.reason)) from None
    except TimeoutError:
        raise _Stalled("timeout", "") from None
    except (OSError, http.client.HTTPException) as error:
        raise _Stalled("unreachable", str(error) or type(error).__name__) from None
    with response:
        start, total = _span(response, done, part)
        if size is not None and total is not None and total != size:
            raise WrongSizeError(
                f"{label}: {urlsplit(url).netloc} announces {total:,} bytes, but the published "
                f"file has {size:,}; it is not the published file: check the mirror, or report "
                "it if it is the publisher's (nothing was kept)"
            )
        _receive(response, part, start, total, progress, label)


def _span(response: http.client.HTTPResponse, done: int, part: Path) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's full length (None if not announced)."""
    if response.status == 206:
        start, total = _content_range(response.headers.get("Content-Range", ""))
        if start != done:
            part.unlink()
            raise _Stalled("dropped", "(the server sent another byte range; starting over)")
        return start, total
    length = response.headers.get("Content-Length", "")
    return 0, int(length) if length.isdigit() else None


def _receive(
    response: http.client.HTTPResponse,
    part: Path,
    start: int,
    total: int | None,
    progress: Progress,
    label: str,
) -> None:
    """Append the body to ``part`` (from scratch when ``start`` is 0), reporting progress."""
    done = start
    try:
        with open(part, "ab" if start else "wb") as out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except TimeoutError:
                    raise _Stalled("timeout", "") from None
                except (OSError, http.client.HTTPException) as error:
                    raise _Stalled("dropped", f"after {done:,} bytes ({error})") from None
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                progress(label, done, total)
    except OSError as error:
        if error.errno in NO_SPACE:
            raise no_space_error(part, error) from None
        raise
    if total is not None and done < total:
        raise _Stalled("dropped", f"after {done:,} of {total:,} bytes")


def _content_range(value: str) -> tuple[int, int | None]:
    """``bytes 100-999/1000`` -> (100, 1000); ``bytes */1000`` -> (0, 1000)."""
    span, _, total = value.removeprefix("bytes ").partition("/")
    start = span.partition("-")[0]
    return (
        int(start) if start.isdigit() else 0,
        int(total) if total.isdigit() else None,
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _status_error(
    error: urllib.error.HTTPError, url: str, label: str, if_missing: str
) -> DownloadError:
    answer = f"{label}: {url} answered {error.code} {error.reason}"
    if error.code in (404, 410):
        return RemoteFileNotFoundError(f"{answer}; {if_missing} (nothing was kept)")
    return ServerRefusedError(
        f"{answer}; the server refuses it: try again later, or set CCE_BENCH_DOWNLOAD_BASE to a "
        "mirror that serves the file (nothing was kept)"
    )


def _stalled_error(stall: _Stalled, url: str, part: Path, timeout: float) -> TransientDownloadError:
    """The message for a file given up after ``STALLED_TRIES`` tries that brought nothing."""
    host = urlsplit(url).netloc
    kept = _size(part)
    again = "run the same command again"
    if kept:
        again += f" to resume from the {kept:,} bytes kept in {part.parent.parent}"
    tries = f"{STALLED_TRIES} tries"
    label = part.name.removesuffix(".part")
    if stall.kind == "timeout":
        return DownloadTimeoutError(
            f"{label}: no answer from {host} within {timeout:g} s ({tries}); check the network "
            f"or pass a longer --timeout, then {again}"
        )
    if stall.kind == "dropped":
        return DownloadInterruptedError(
            f"{label}: {host} stopped sending {stall.detail} ({tries}); {again} (delete that "
            "folder to discard them)"
            if kept
            else f"{label}: {host} stopped sending {stall.detail} ({tries}); {again}"
        )
    return ServerUnreachableError(
        f"{label}: cannot reach {host} ({stall.detail}); check the network or "
        f"CCE_BENCH_DOWNLOAD_BASE, then {again}"
    )


def dataverse_url(dataset: Dataset, file: RemoteFile, timeout: float) -> str | None:
    """The URL of the file Dataverse lists now under ``file``'s name, or None.

    Asked only after the pinned id answered 404: ids change when a file is replaced in a new
    dataset version, names do not. The listing is
    ``/api/datasets/:persistentId/versions/:latest/files``; the pinned URL's query (such as
    ``format=original``) is kept. None when the dataset is not on Dataverse, the file has no
    label, the listing does not answer, or it does not hold the name.
    """
    record = dataset.dataverse
    if record is None or file.dataverse_label is None:
        return None
    listing = (
        f"{record.server}/api/datasets/:persistentId/versions/:latest/files"
        f"?persistentId={record.doi}"
    )
    request = urllib.request.Request(listing, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            found = _ids_by_name(json.load(response)["data"]).get(file.dataverse_label)
    except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException):
        return None
    if found is None:
        return None
    query = urlsplit(file.url).query
    return f"{record.server}/api/access/datafile/{found}" + (f"?{query}" if query else "")


def _ids_by_name(entries: list[dict]) -> dict[str, int]:
    """File name without extension -> id, from the label, the stored and the original name.

    A tabular file is listed as ``NAME.tab`` with its upload kept as ``originalFileName``, so
    the name without extension is what stays the same.
    """
    ids: dict[str, int] = {}
    for entry in entries:
        data_file = entry["dataFile"]
        names = (entry.get("label"), data_file.get("filename"), data_file.get("originalFileName"))
        for name in filter(None, names):
            ids.setdefault(Path(name).stem, int(data_file["id"]))
    return ids
