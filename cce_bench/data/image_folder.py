"""A labels CSV plus image files somewhere below a folder: how HAM10000 and ISIC 2018 ship.

This module finds the CSV, reads it strictly, indexes the image files by id (their file stem,
in any sub-folder, so Kaggle's ``HAM10000_images_part_1/`` + ``_part_2/`` and a single folder
both work), and matches the two. Each way this can go wrong has its own ``DataError``
subclass whose message names the file, the row or field, and the fix; an image file that no
row lists is only a warning, because subsets of HAM10000 are common and harmless.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cce_bench.errors import DataError

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
_SHOWN = 5


class DatasetNotFoundError(DataError):
    """The dataset folder or file does not exist."""


class MetadataFileError(DataError):
    """No labels CSV was found, or several could be it."""


class MissingColumnError(DataError):
    """The labels CSV lacks a required column."""


class MetadataValueError(DataError):
    """A row of the labels CSV has an empty, repeated or invalid value."""


class UnknownLabelError(MetadataValueError):
    """A diagnosis code is not one of the seven HAM10000 classes."""


class MissingImagesError(DataError):
    """Images listed in the labels CSV have no file below the folder.

    ``listed`` holds what the CSV alone describes (a ``LabeledImages`` without paths), so that
    ``data check`` can still report the counts of a metadata-only folder; ``found`` holds the
    files of the listed images that do exist, so that it counts them truly (1 of 200 missing
    is 199 found, not 0).
    """

    def __init__(self, message: str, listed=None, found: tuple[Path, ...] = ()) -> None:
        super().__init__(message)
        self.listed = listed
        self.found = found


class DuplicateImageError(DataError):
    """Two files below the folder have the same image id."""


def existing_folder(path: str | os.PathLike[str] | None, source: str) -> Path:
    """``path`` as a folder (a file's parent folder), or ``DatasetNotFoundError``."""
    if path is None:
        raise DatasetNotFoundError(f"source {source!r} needs a path; pass the dataset folder.")
    folder = Path(path).expanduser()
    if folder.is_file():
        return folder.parent
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"{folder}: no such folder; pass the folder that holds the {source} labels CSV "
            "and its images."
        )
    return folder


def find_labels_csv(
    folder: Path,
    explicit: str | os.PathLike[str] | None,
    looks_right: Callable[[list[str]], bool],
    what: str,
) -> Path:
    """The one CSV directly in ``folder`` whose header ``looks_right``, or the explicit one.

    Several candidates are an error rather than a guess: picking the wrong metadata file
    silently relabels a dataset.
    """
    if explicit is not None:
        csv = Path(explicit).expanduser()
        if not csv.is_file():
            raise DatasetNotFoundError(f"{csv}: no such file; check the --metadata path.")
        return csv
    candidates = sorted(p for p in folder.glob("*.csv") if looks_right(csv_header(p)))
    if not candidates:
        raise MetadataFileError(
            f"{folder}: no {what} CSV found directly in this folder; put it there or pass "
            "--metadata PATH."
        )
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise MetadataFileError(
            f"{folder}: several {what} CSVs ({names}); choose one with --metadata PATH."
        )
    return candidates[0]


def csv_header(path: Path) -> list[str]:
    """The column names on the first line of ``path`` (empty if unreadable)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            first = handle.readline()
    except OSError:
        return []
    return [name.strip().strip('"') for name in first.strip().split(",")]


def read_labels_csv(csv: Path, required: Sequence[str]):
    """The CSV as a pandas frame of strings, with every ``required`` column present and filled.

    Either line ending works (the Dataverse metadata uses CRLF). Row numbers in messages are
    file line numbers (the header is line 1), as an editor shows them.
    """
    import pandas as pd

    try:
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise MetadataValueError(f"{csv}: not a readable CSV ({error}); fix the file.") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise MissingColumnError(
            f"{csv}: required column(s) {missing} missing (found {list(frame.columns)}); "
            f"the file needs {list(required)}."
        )
    for column in required:
        values = frame[column].str.strip()
        frame[column] = values
        empty = np.flatnonzero(values.eq("").to_numpy())
        if empty.size:
            raise MetadataValueError(
                f"{csv}: column {column!r} is empty on {empty.size} row(s), lines "
                f"{line_numbers(empty)}; fill them in or delete those rows."
            )
    return frame


def line_numbers(rows: np.ndarray) -> str:
    """The first few data rows (0-based) as file line numbers, e.g. ``"2, 9, 14"``."""
    shown = ", ".join(str(int(row) + 2) for row in rows[:_SHOWN])
    return shown + (", ..." if len(rows) > _SHOWN else "")


def reject_repeated_ids(csv: Path, ids, column: str) -> None:
    """``MetadataValueError`` if an image id is on two rows of the CSV."""
    repeated = ids[ids.duplicated(keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        rows = np.flatnonzero((ids == first).to_numpy())
        raise MetadataValueError(
            f"{csv}: {column} {first!r} is listed on lines {line_numbers(rows)} "
            f"({repeated.nunique()} id(s) repeated); keep one row per image."
        )


def index_image_files(folder: Path) -> dict[str, Path]:
    """Image id (file stem) -> path for every image file below ``folder``.

    Hidden folders (``.cache``, a half-written ``.synthetic...``) are skipped. Two files with
    one id raise ``DuplicateImageError``: which one holds the labelled image is unknowable.
    Symbolic links to folders and files are followed, because users commonly link the two
    HAM10000 image folders beside a metadata file; a link that leads back to a folder already
    walked is skipped, so a link cycle cannot loop forever.
    """
    found: dict[str, Path] = {}
    walked: set[str] = set()
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in walked:
            subdirectories[:] = []
            continue
        walked.add(real)
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(files):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
                continue
            path = Path(directory, name)
            if stem in found:
                raise DuplicateImageError(
                    f"two files for image {stem}: {found[stem]} and {path}; delete one of them."
                )
            found[stem] = path
    return found


def match_image_files(
    csv: Path, folder: Path, image_ids: Sequence[str], listed=None
) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    """Paths of ``image_ids`` in order, plus warnings about unlisted files.

    Raises ``MissingImagesError`` (count and the first ids) when a listed image has no file.
    """
    files = index_image_files(folder)
    missing = [image_id for image_id in image_ids if image_id not in files]
    if missing:
        shown = ", ".join(missing[:_SHOWN]) + (", ..." if len(missing) > _SHOWN else "")
        if len(missing) == len(image_ids):
            fix = (
                "this folder holds no listed image: pass the image folder as PATH and this CSV "
                "as --metadata"
            )
        else:
            fix = "copy them below the folder, or delete their rows from the CSV"
        raise MissingImagesError(
            f"{csv}: {len(missing)} of {len(image_ids)} listed images have no file below "
            f"{folder} (first: {shown}); {fix}.",
            listed=listed,
            found=tuple(files[image_id] for image_id in image_ids if image_id in files),
        )
    unlisted = sorted(set(files) - set(image_ids))
    warnings = ()
    if unlisted:
        shown = ", ".join(unlisted[:_SHOWN]) + (", ..." if len(unlisted) > _SHOWN else "")
        warnings = (
            f"{len(unlisted)} image file(s) below {folder} are not listed in {csv.name} and are "
            f"ignored (first: {shown}).",
        )
    return tuple(files[image_id] for image_id in image_ids), warnings
