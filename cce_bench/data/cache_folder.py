"""What the image cache holds, and emptying it: ``cce-bench cache info | clean``.

The cache folder is :func:`cce_bench.data.cache.default_cache_dir` (``--cache-dir``, else
``$CCE_BENCH_CACHE_DIR``, else the platform's user cache folder). Only files this package
writes there are counted or removed, recognised by their names, so that pointing
``CCE_BENCH_CACHE_DIR`` at a folder holding other files can never delete those.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cce_bench.data.cache import default_cache_dir

#: ``<source>-<size>px-<mode>-<16 hex>.npy``, or its temporary ``.<pid>.tmp`` while it is built
#: (left behind by a decode that was killed).
CACHE_FILE = re.compile(r"^[a-z0-9_]+-\d+px-[a-z_]+-[0-9a-f]{16}\.npy(\.\d+\.tmp)?$")


@dataclass(frozen=True)
class CacheContents:
    """The cache folder, and the cache files in it with their total size."""

    folder: Path
    files: tuple[Path, ...]
    bytes: int

    def to_json_dict(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "files": [path.name for path in self.files],
            "bytes": self.bytes,
        }


def cache_contents(cache_dir: str | os.PathLike[str] | None = None) -> CacheContents:
    """The cache files in the cache folder (none when the folder does not exist)."""
    folder = default_cache_dir(cache_dir)
    files = tuple(
        sorted(p for p in folder.iterdir() if p.is_file() and CACHE_FILE.match(p.name))
        if folder.is_dir()
        else ()
    )
    return CacheContents(folder, files, sum(path.stat().st_size for path in files))


def clean_cache(cache_dir: str | os.PathLike[str] | None = None) -> CacheContents:
    """Delete the cache files (the next run decodes its images again); returns what went.

    The folder itself and any other file in it stay.
    """
    contents = cache_contents(cache_dir)
    for path in contents.files:
        path.unlink(missing_ok=True)
    return contents
