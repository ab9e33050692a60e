"""timm's model names and input sizes, cached once per installed timm version.

Checking a study file's backbones needs only two facts per name: that timm knows it, and its
native and minimum input sizes. ``import timm`` costs about 4 s, most of it torch and torchvision,
so a study file with a typo would wait that long to be refused. The first check therefore writes
the facts of every timm name (``timm.list_models()`` and ``timm.list_pretrained()``, about 3,200
names, 150 kB) to a JSON file in the cache folder, named after timm's installed version as the
package metadata gives it (read without importing timm); every later check reads that file.
A new timm version gets a new file, so its added or renamed models are seen at once.

The file is a cache, never a source of truth: one that is unreadable, malformed or for another
version is rebuilt from timm, and a cache folder that cannot be written costs only the import.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

#: Bumped when the file's layout changes, so that an old file is rebuilt rather than misread.
CATALOGUE_FORMAT = 1


@dataclass(frozen=True)
class InputSizes:
    """A timm name's pretrained-config input sizes: native, minimum (None: unset), fixed."""

    native: int
    minimum: int | None
    fixed: bool


@dataclass(frozen=True)
class TimmCatalogue:
    """Every name timm can build, with the input sizes of those whose config gives them."""

    timm_version: str
    architectures: frozenset[str]
    sizes: dict[str, InputSizes | None]

    def input_sizes(self, name: str) -> InputSizes | None:
        """Sizes of ``name`` (an architecture or ``arch.tag``); None when timm's config has none."""
        return self.sizes.get(name)


def timm_version() -> str:
    """The installed timm's version, from its package metadata (no import of timm)."""
    return metadata.version("timm")


def catalogue_path(cache_dir: Path | None = None) -> Path:
    """The installed timm's catalogue file: ``<cache>/timm-catalogue-<version>.json``."""
    from cce_bench.data.cache import default_cache_dir

    folder = cache_dir if cache_dir is not None else default_cache_dir()
    return folder / f"timm-catalogue-{timm_version()}.json"


@functools.cache
def timm_catalogue() -> TimmCatalogue:
    """The catalogue of the installed timm: read from the cache, else built from timm and saved."""
    path = catalogue_path()
    version = timm_version()
    catalogue = _read(path, version)
    if catalogue is None:
        catalogue = build_catalogue()
        _write(path, catalogue)
    return catalogue


def build_catalogue() -> TimmCatalogue:
    """Ask timm itself (imports it): every model name and every pretrained tag's input sizes."""
    import timm
    from timm.models import get_pretrained_cfg

    architectures = frozenset(timm.list_models())
    sizes: dict[str, InputSizes | None] = {}
    for name in sorted(architectures | set(timm.list_pretrained())):
        cfg = get_pretrained_cfg(name)
        if cfg is None or not cfg.input_size:
            sizes[name] = None
            continue
        minimum = int(cfg.min_input_size[-1]) if cfg.min_input_size else None
        sizes[name] = InputSizes(int(cfg.input_size[-1]), minimum, bool(cfg.fixed_input_size))
    return TimmCatalogue(timm_version(), architectures, sizes)


def _read(path: Path, version: str) -> TimmCatalogue | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document["format"] != CATALOGUE_FORMAT or document["timm_version"] != version:
            return None
        sizes = {
            name: None if entry is None else InputSizes(int(entry[0]), entry[1], bool(entry[2]))
            for name, entry in document["sizes"].items()
        }
        return TimmCatalogue(version, frozenset(document["architectures"]), sizes)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # absent, torn or foreign: rebuilt from timm


def _write(path: Path, catalogue: TimmCatalogue) -> None:
    """Write atomically (a temporary file renamed over the target), so that two processes that
    build at once, such as Ray workers or parallel test workers, never read half a file."""
    document = {
        "format": CATALOGUE_FORMAT,
        "timm_version": catalogue.timm_version,
        "architectures": sorted(catalogue.architectures),
        "sizes": {
            name: None if entry is None else [entry.native, entry.minimum, entry.fixed]
            for name, entry in catalogue.sizes.items()
        },
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    except OSError:
        return  # a read-only cache folder costs the timm import on every check, nothing more
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, separators=(",", ":"))
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
