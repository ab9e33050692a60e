"""A local HTTP server for the download tests, and small files in each real dataset's layout.

``serving(routes)`` runs ``http.server`` on 127.0.0.1 in a thread. Each route is a path (with
its query, e.g. ``/api/access/datafile/9003?format=original``) and a ``Served`` body, which
honours ``Range: bytes=N-`` (206 with ``Content-Range``) and can misbehave: stop mid-file, hang
without answering, answer with an error status, or ignore the range. Every request is logged
with its ``Range`` header, so a test can see that a download resumed.

``ham10000_files()``, ``isic2018_test_files()`` and ``dermamnist_file()`` build the published
files in miniature, in their real layouts and names; ``catalogue_for`` derives a catalogue from
the shipped one in which only the checksums and sizes are those of the miniatures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from cce_bench.data import catalogue
from cce_bench.data.catalogue import Dataset, Dataverse

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
#: Four images per class: enough for a lesion split to give every part images.
PER_CLASS = 4
#: Each test waits at most this long for a hanging route to be released (the fixture releases
#: it at once when the test ends); a bound only so that no thread can outlive a broken test.
HANG_LIMIT_S = 60.0


@dataclass
class Served:
    """One route's answer. ``stop_at``: send no byte at or past this offset, then close the
    connection (the first ``stop_times`` requests only, or every one when None); ``hang``: take
    the request and never answer; ``status``: answer with this error instead."""

    body: bytes = b""
    stop_at: int | None = None
    stop_times: int | None = None
    hang: bool = False
    status: int = 200
    ignore_range: bool = False
    content_type: str = "application/octet-stream"
    stopped: int = 0


@dataclass
class FileServer:
    """The running server: ``url`` is ``http://127.0.0.1:PORT``; ``requests`` its log."""

    url: str = ""
    routes: dict[str, Served] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def ranges(self, path: str) -> list[str | None]:
        """The ``Range`` header of every request for ``path``, in order."""
        return [header for requested, header in self.requests if requested == path]


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: FileServer

    def do_GET(self) -> None:
        state = self.server_state
        state.requests.append((self.path, self.headers.get("Range")))
        route = state.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        if route.hang:
            state.release.wait(HANG_LIMIT_S)
            return
        if route.status != 200:
            self.send_error(route.status)
            return
        self._send(route)

    def _send(self, route: Served) -> None:
        body, start = route.body, 0
        requested = self.headers.get("Range")
        if requested and not route.ignore_range:
            start = int(requested.removeprefix("bytes=").partition("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        end = len(body)
        if route.stop_at is not None and (
            route.stop_times is None or route.stopped < route.stop_times
        ):
            route.stopped += 1
            end = max(start, min(end, route.stop_at))
        self.wfile.write(body[start:end])
        self.close_connection = True

    def log_message(self, format: str, *args) -> None:
        """Quiet: the log is ``FileServer.requests``."""


@contextlib.contextmanager
def serving(routes: dict[str, Served | bytes] | None = None) -> Iterator[FileServer]:
    """Serve ``routes`` on 127.0.0.1 (a free port) until the block ends."""
    state = FileServer()
    for path, route in (routes or {}).items():
        state.routes[path] = route if isinstance(route, Served) else Served(route)
    handler = type("Handler", (_Handler,), {"server_state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def mirror_routes(files: dict[str, bytes]) -> dict[str, Served | bytes]:
    """``/<file name>`` for each file, as ``CCE_BENCH_DOWNLOAD_BASE`` fetches them."""
    return {f"/{name}": body for name, body in files.items()}


# -- the published files, in miniature ---------------------------------------------------------
def jpeg(shade: int, size: int = 12) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.full((size, size, 3), (shade * 11) % 256, dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, body in entries.items():
            bundle.writestr(name, body)
    return buffer.getvalue()


def ham10000_files() -> dict[str, bytes]:
    """Part 1 as Dataverse ships it (JPEGs at the top), part 2 in a folder of its name (as
    Kaggle's), and the metadata CSV in Dataverse's variant (CRLF, integer age, ``dataset``)."""
    ids = [f"ISIC_{24306 + i:07d}" for i in range(PER_CLASS * len(CLASSES))]
    dx = [CLASSES[i % len(CLASSES)] for i in range(len(ids))]
    half = len(ids) // 2
    rows = ["lesion_id,image_id,dx,dx_type,age,sex,localization,dataset"]
    rows += [
        f"HAM_{i // 2:07d},{image_id},{d},histo,{40 + i},male,back,vidir_modern"
        for i, (image_id, d) in enumerate(zip(ids, dx, strict=True))
    ]
    return {
        "HAM10000_images_part_1.zip": zip_of(
            {f"{image_id}.jpg": jpeg(i) for i, image_id in enumerate(ids[:half])}
        ),
        "HAM10000_images_part_2.zip": zip_of(
            {
                f"HAM10000_images_part_2/{image_id}.jpg": jpeg(i)
                for i, image_id in enumerate(ids[half:])
            }
        ),
        "HAM10000_metadata.csv": ("\r\n".join(rows) + "\r\n").encode(),
    }


def isic2018_test_files() -> dict[str, bytes]:
    """The test images in their folder with the challenge's text files, and the one-hot CSV."""
    ids = [f"ISIC_{34524 + i:07d}" for i in range(2 * len(CLASSES))]
    columns = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
    rows = ["image," + ",".join(columns)]
    for i, image_id in enumerate(ids):
        hot = i % len(columns)
        rows.append(image_id + "," + ",".join("1.0" if j == hot else "0.0" for j in range(7)))
    images = {
        f"ISIC2018_Task3_Test_Input/{image_id}.jpg": jpeg(i) for i, image_id in enumerate(ids)
    }
    return {
        "ISIC2018_Task3_Test_Input.zip": zip_of(
            {**images, "ISIC2018_Task3_Test_Input/LICENSE.txt": b"CC BY-NC 4.0\n"}
        ),
        "ISIC2018_Task3_Test_GroundTruth.zip": zip_of(
            {
                "ISIC2018_Task3_Test_GroundTruth/ISIC2018_Task3_Test_GroundTruth.csv": (
                    "\n".join(rows) + "\n"
                ).encode(),
                "ISIC2018_Task3_Test_GroundTruth/ATTRIBUTION.txt": b"ISIC 2018\n",
            }
        ),
    }


def dermamnist_file(name: str = "dermamnist.npz", side: int = 8) -> dict[str, bytes]:
    """MedMNIST's six arrays at ``side`` px, every class in every part."""
    arrays = {}
    for part, count in (("train", 14), ("val", 7), ("test", 7)):
        arrays[f"{part}_images"] = np.zeros((count, side, side, 3), dtype=np.uint8)
        arrays[f"{part}_labels"] = (np.arange(count) % len(CLASSES)).reshape(-1, 1)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return {name: buffer.getvalue()}


def published_files(dataset_name: str) -> dict[str, bytes]:
    """The miniature files of one shipped dataset, by file name."""
    if dataset_name == "ham10000":
        return ham10000_files()
    if dataset_name == "isic2018-test":
        return isic2018_test_files()
    (file,) = catalogue.DATASETS[dataset_name].files
    return dermamnist_file(file.name)


def catalogue_for(
    files: dict[str, bytes], *, dataverse: str | None = None, **changes
) -> dict[str, Dataset]:
    """The shipped catalogue with each served file's MD5 and size in place of the published
    ones (where those are published), and ``changes`` applied to every file.

    ``dataverse`` moves the Dataverse server (file listing and pinned file URLs) to that URL.
    """
    table = {}
    for name, dataset in catalogue.DATASETS.items():
        remote = []
        for file in dataset.files:
            body = files.get(file.name)
            served = body is not None
            pinned = {
                "md5": hashlib.md5(body).hexdigest() if served and file.md5 else file.md5,
                "size": len(body) if served and file.size else file.size,
            }
            if dataverse and dataset.dataverse:
                pinned["url"] = file.url.replace(dataset.dataverse.server, dataverse)
            remote.append(dataclasses.replace(file, **pinned, **changes))
        record = dataset.dataverse
        if dataverse and record:
            record = Dataverse(dataverse, record.doi)
        table[name] = dataclasses.replace(dataset, files=tuple(remote), dataverse=record)
    return table
