"""Decode once, resize once: every image as uint8 NHWC in one ``.npy`` that later loads map.

A training run reads each image many times (epochs x seeds x trials), so decoding JPEGs per
read is what makes most HAM10000 pipelines slow. Here the first load decodes every file in
parallel processes (Pillow's ``Image.draft`` lets the JPEG decoder itself downscale by 2, 4 or
8, which is most of the saving at 224 px from 600x450), resizes it to a square, and writes the
batch to ``<cache dir>/<source>-<size>px-<mode>-<fingerprint>.npy``; every later load maps that
file (``np.load(mmap_mode="r")``) and decodes nothing.

The fingerprint covers the image ids in order and, per file, its path, size and mtime, plus
the size and resize mode, so a changed, added or removed file, or another order, gets a new
key. (The metadata file itself is not hashed: what it decides for the images, which ids and
in what order, is in the key already, and a corrected label needs no re-decoding.)

The file is written under a temporary name and renamed into place, so a killed build or a
file that fails to decode leaves no cache behind. Images already in memory (synthetic,
DermaMNIST, hmnist) are only resized, in memory: they were generated or read from one compact
array in well under a second, so a disk copy would cost more than it saves.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import platformdirs

from cce_bench.data.labeled import LabeledImages
from cce_bench.errors import DataError

#: How an image becomes a square: stretched, cut to its central square, or padded with black.
RESIZE_MODES: tuple[str, ...] = ("squash", "center_crop", "pad")
_MODE_ALIASES = {"crop": "center_crop"}
_CACHE_FORMAT = 1
_CHUNK = 64
# Below this many files a pool's start-up (about 0.3 s) costs more than it saves.
_MIN_PARALLEL = 256

Progress = Callable[[int, int], None]


class UndecodableImageError(DataError):
    """An image file exists but Pillow cannot decode it."""


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The argument, else ``$CCE_BENCH_CACHE_DIR``, else the platform's user cache folder.

    On Linux that is ``$XDG_CACHE_HOME/cce-bench`` (``~/.cache/cce-bench`` when unset), where
    users and cluster admins expect caches and point them at a scratch disk; macOS and Windows
    get their own conventions (``platformdirs.user_cache_dir``).
    """
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("CCE_BENCH_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("cce-bench", appauthor=False))


def resize_mode_name(resize_mode: str) -> str:
    """The canonical name of a resize mode (``crop`` is accepted for ``center_crop``)."""
    mode = _MODE_ALIASES.get(resize_mode, resize_mode)
    if mode not in RESIZE_MODES:
        raise DataError(
            f"resize mode {resize_mode!r} is not one of {list(RESIZE_MODES)}; pick one of them."
        )
    return mode


def cache_file(
    labeled: LabeledImages,
    *,
    size: int,
    resize_mode: str = "squash",
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path | None:
    """Where ``load_images`` keeps this collection at this size; None for in-memory sources."""
    if labeled.paths is None:
        return None
    mode = resize_mode_name(resize_mode)
    digest = _fingerprint(labeled, size, mode)
    return default_cache_dir(cache_dir) / f"{labeled.source}-{size}px-{mode}-{digest}.npy"


def load_images(
    labeled: LabeledImages,
    *,
    size: int,
    resize_mode: str = "squash",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Every image of ``labeled`` as uint8 ``[N, size, size, 3]``, decoded at most once.

    File-backed sources are decoded into the cache on first use (``progress(done, total)`` is
    called as chunks finish) and memory-mapped read-only afterwards. ``workers`` defaults to
    the CPU count. A file that cannot be decoded raises ``UndecodableImageError`` naming it.
    """
    mode = resize_mode_name(resize_mode)
    if size < 1:
        raise DataError(f"image size {size} must be a positive number of pixels.")
    if len(labeled) == 0:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    if labeled.paths is None:
        return _resize_in_memory(labeled.images, size, mode)
    target = cache_file(labeled, size=size, resize_mode=mode, cache_dir=cache_dir)
    cached = _open_cached(target, len(labeled), size)
    if cached is not None:
        if progress is not None:
            progress(len(labeled), len(labeled))
        return cached
    _build(target, labeled.paths, size, mode, progress, workers)
    return np.load(target, mmap_mode="r")


def decode_image(path: str | os.PathLike[str], size: int, resize_mode: str) -> np.ndarray:
    """One file -> uint8 ``[size, size, 3]`` RGB, or ``UndecodableImageError`` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            # Let libjpeg scale by 1/2, 1/4 or 1/8 while decoding, staying >= size on each side.
            image.draft("RGB", (size, size))
            return fit_square(image.convert("RGB"), size, resize_mode)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UndecodableImageError(
            f"{path}: cannot be decoded as an image ({error}); replace the file with a good "
            "copy, or delete it and its metadata row."
        ) from None


def fit_square(image, size: int, resize_mode: str) -> np.ndarray:
    """A Pillow image -> uint8 ``[size, size, 3]`` by ``squash``, ``center_crop`` or ``pad``.

    Bicubic resampling, which Pillow antialiases when shrinking (timm's default for eval).
    """
    from PIL import Image, ImageOps

    method = Image.Resampling.BICUBIC
    if resize_mode == "center_crop":
        image = ImageOps.fit(image, (size, size), method=method, centering=(0.5, 0.5))
    elif resize_mode == "pad":
        image = ImageOps.pad(image, (size, size), method=method, color=(0, 0, 0))
    elif image.size != (size, size):
        image = image.resize((size, size), method)
    return np.asarray(image, dtype=np.uint8)


def _fingerprint(labeled: LabeledImages, size: int, mode: str) -> str:
    digest = hashlib.sha256(f"v{_CACHE_FORMAT}|{size}|{mode}|{labeled.source}".encode())
    for image_id, path in zip(labeled.image_ids, labeled.paths or (), strict=True):
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise DataError(
                f"{path}: listed for image {image_id} but gone; restore it or reload the source."
            ) from None
        digest.update(f"{image_id}|{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _open_cached(target: Path, count: int, size: int) -> np.ndarray | None:
    """The mapped cache if it exists and has the expected shape, else None (rebuild it)."""
    if not target.is_file():
        return None
    try:
        images = np.load(target, mmap_mode="r")
    except (ValueError, OSError):
        return None
    return images if images.shape == (count, size, size, 3) and images.dtype == np.uint8 else None


def _build(
    target: Path,
    paths: Sequence[Path],
    size: int,
    mode: str,
    progress: Progress | None,
    workers: int | None,
) -> None:
    """Decode every file into ``target`` via a temporary file renamed into place at the end."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(
            temporary, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3)
        )
        for start, block in _decoded_chunks(paths, size, mode, workers):
            out[start : start + len(block)] = block
            if progress is not None:
                progress(start + len(block), len(paths))
        out.flush()
        del out
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _decoded_chunks(paths: Sequence[Path], size: int, mode: str, workers: int | None):
    """Yield ``(start, images)`` per chunk of ``_CHUNK`` files, from a process pool if worth it.

    The pool uses ``forkserver`` where available: forking a parent that already runs torch or
    Ray threads can deadlock, and ``spawn`` would re-import the caller's main module.
    """
    chunks = [
        (start, list(paths[start : start + _CHUNK])) for start in range(0, len(paths), _CHUNK)
    ]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(paths) < _MIN_PARALLEL:
        for start, chunk in chunks:
            yield start, _decode_chunk(chunk, size, mode)
        return
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [
            (start, pool.submit(_decode_chunk, chunk, size, mode)) for start, chunk in chunks
        ]
        try:
            for start, future in futures:
                yield start, future.result()
        finally:
            for _, future in futures:
                future.cancel()


def _decode_chunk(paths: list[Path], size: int, mode: str) -> np.ndarray:
    return np.stack([decode_image(path, size, mode) for path in paths])


def _resize_in_memory(images: np.ndarray | None, size: int, mode: str) -> np.ndarray:
    """Resize in-memory images with the same Pillow code as files (no copy if already right)."""
    from PIL import Image

    if images is None:
        raise DataError("labeled images carry neither paths nor images; reload the source.")
    if images.shape[1:] == (size, size, 3):
        return images
    return np.stack([fit_square(Image.fromarray(image), size, mode) for image in images])
