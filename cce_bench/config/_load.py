"""Reading a study file, and a stored study read back, into a :class:`StudySpec`.

``load_study`` reads the TOML, walks it against the schema (:mod:`cce_bench.config.schema`,
read by :mod:`cce_bench.config._reader`: unknown keys, types, bounds), then runs the checks that
need a registry, the filesystem or several keys at once (:mod:`cce_bench.config._checks`). The
first problem raises a ``StudyFileError`` naming the file, the dotted key, what is wrong and the
fix. Nothing has been read, built or written yet, so a typo costs seconds, not a GPU-day.

A study a results folder keeps (``study.toml``, written from a loaded spec) is read back with
:func:`read_stored_study`: against the schema only, because its paths were checked when it
started and may have moved since (``data.path`` is a placement key).

Paths: a relative path inside a study file is relative to that file's folder, so a study means
the same wherever it is run from; ``--data`` (``data_path``) is relative to the current
directory, like any shell argument. Loaded paths are absolute, so the copy a study keeps in
``results/<name>/study.toml`` reads back to an equal spec.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from cce_bench.config._checks import check_study
from cce_bench.config._reader import StudyFileError, read_table
from cce_bench.config.schema import StudySpec
from cce_bench.errors import StudyConfigError

#: The study ``cce-bench run`` runs when given none.
QUICKSTART = "quickstart.toml"


def load_study(
    path: str | os.PathLike[str], *, data_path: str | os.PathLike[str] | None = None
) -> StudySpec:
    """Read and validate a study file; ``data_path`` (``--data``) overrides ``data.path``.

    Raises ``StudyFileError`` (a ``StudyConfigError``) for the first problem found.
    """
    path = Path(path)
    return study_from_dict(
        read_study_file(path), origin=str(path), base_dir=path.parent, data_path=data_path
    )


def study_from_dict(
    table: dict[str, Any],
    *,
    origin: str = "<study>",
    base_dir: Path | None = None,
    data_path: str | os.PathLike[str] | None = None,
) -> StudySpec:
    """Validate a parsed study (e.g. a stored ``study.toml``); ``origin`` names it in messages."""
    spec = read_table(StudySpec, table, origin)
    return check_study(spec, origin=origin, base_dir=base_dir or Path.cwd(), data_path=data_path)


def read_stored_study(table: dict[str, Any], *, origin: str) -> StudySpec:
    """A stored study (a results folder's ``study.toml``), typed: read against the schema only.

    Unset keys take the schema's defaults, so every reader of a results folder sees the same
    values the study ran with, and none restates a default of its own.
    """
    return read_table(StudySpec, table, origin)


def read_study_file(path: Path) -> dict[str, Any]:
    """The parsed TOML of a study file, or one ``StudyFileError`` saying why it cannot be read."""
    origin = str(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as error:
        raise StudyFileError(
            origin,
            None,
            f"study file not found; check the path (shipped studies: {_shipped_studies()})",
        ) from error
    except IsADirectoryError as error:
        raise StudyFileError(origin, None, "is a folder; pass a study .toml file") from error
    except OSError as error:
        raise StudyFileError(
            origin, None, f"cannot be read ({error.strerror or error}); check its permissions"
        ) from error
    except UnicodeDecodeError as error:
        raise StudyFileError(
            origin, None, f"is not UTF-8 text ({error.reason}); save it as UTF-8"
        ) from error
    except tomllib.TOMLDecodeError as error:
        raise StudyFileError(origin, None, _toml_error_detail(error)) from error


def _toml_error_detail(error: tomllib.TOMLDecodeError) -> str:
    """tomllib puts "(at line L, column C)" in its message (attributes only from Python 3.14)."""
    text = str(error)
    line, column = getattr(error, "lineno", None), getattr(error, "colno", None)
    found = re.search(r"\(at line (\d+), column (\d+)\)", text)
    if found and line is None:
        line, column = int(found.group(1)), int(found.group(2))
    reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", text)
    where = f"line {line}, column {column}" if line is not None else "the end of the file"
    return (
        f"invalid TOML at {where}: {reason}; fix the syntax there (strings need quotes, "
        "a table is written [name], a list [a, b])"
    )


def default_study_path() -> Path:
    """The quickstart study ``cce-bench run`` runs when given none.

    One source of truth: the repository's ``studies/`` folder. Looked up in order: ``studies/``
    under the current directory (a checkout, where a user may have edited it), then
    ``cce_bench/studies/`` inside an installed wheel (packaged from ``studies/`` by pyproject's
    package-data mapping), then the ``studies/`` beside the package in an editable install.
    """
    candidates = [folder / QUICKSTART for folder in _studies_folders()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise StudyConfigError(
        f"the quickstart study ({QUICKSTART}) is not in {', '.join(map(str, candidates))}; "
        "pass a study file, e.g. `cce-bench run path/to/study.toml`"
    )


def _studies_folders() -> tuple[Path, ...]:
    package_dir = Path(__file__).resolve().parents[1]
    return (Path.cwd() / "studies", package_dir / "studies", package_dir.parent / "studies")


def _shipped_studies() -> str:
    """The shipped study files, listed from the folder itself so the list cannot go stale."""
    for folder in _studies_folders():
        if (folder / QUICKSTART).is_file():
            files = sorted(folder.glob("*.toml"), key=lambda path: (path.name != QUICKSTART, path))
            return ", ".join(str(_shown(path)) for path in files)
    return "none found; reinstall cce-bench"


def _shown(path: Path) -> Path:
    """``path`` relative to the current folder when it lies below it (as a user would type it)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path
