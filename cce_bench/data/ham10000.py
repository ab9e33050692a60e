"""HAM10000 (metadata CSV + JPEGs) and ISIC 2018 Task 3 (one-hot ground truth + images).

HAM10000 ships as ``HAM10000_metadata.csv`` beside the JPEGs (Kaggle splits them into
``HAM10000_images_part_1/`` and ``_part_2/``). Two metadata variants are in circulation and
both are read: the original (7 columns ``lesion_id,image_id,dx,dx_type,age,sex,localization``,
float age, LF) and the Harvard Dataverse one (CRLF, integer age, an extra ``dataset`` column).
Only ``lesion_id``, ``image_id`` and ``dx`` are used.

ISIC 2018 Task 3's ground truth is ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` with one 1.0 per
row; its training images are HAM10000's, so its classes map onto ours by name. When the
challenge's ``..._LesionGroupings.csv`` (``image,lesion_id,...``) sits beside it, images are
grouped by lesion; otherwise each image is its own group.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from cce_bench.data.image_folder import (
    MetadataValueError,
    UnknownLabelError,
    csv_header,
    existing_folder,
    find_labels_csv,
    line_numbers,
    match_image_files,
    read_labels_csv,
    reject_repeated_ids,
)
from cce_bench.data.labeled import HAM10000_CLASSES, LabeledImages

HAM10000_COLUMNS: tuple[str, ...] = ("lesion_id", "image_id", "dx")
ISIC2018_COLUMNS: tuple[str, ...] = ("image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")


def is_ham10000_metadata(header: list[str]) -> bool:
    """Whether a CSV header is HAM10000 metadata (either variant)."""
    return set(HAM10000_COLUMNS) <= set(header)


def is_isic2018_ground_truth(header: list[str]) -> bool:
    """Whether a CSV header is ISIC 2018 Task 3 one-hot ground truth."""
    return set(ISIC2018_COLUMNS) <= set(header)


def load_ham10000(
    path: str | os.PathLike[str] | None, *, metadata: str | os.PathLike[str] | None = None
) -> LabeledImages:
    """HAM10000 from a folder (or its metadata CSV); ``metadata`` overrides the CSV it finds.

    Example: ``load_ham10000("data/ham10000")`` reads ``data/ham10000/HAM10000_metadata.csv``
    and the JPEGs anywhere below ``data/ham10000``.
    """
    folder = existing_folder(path, "ham10000")
    if metadata is None and path is not None and Path(path).is_file():
        metadata = path
    csv = find_labels_csv(folder, metadata, is_ham10000_metadata, "HAM10000 metadata")
    frame = read_labels_csv(csv, HAM10000_COLUMNS)
    reject_repeated_ids(csv, frame["image_id"], "image_id")
    labels = _class_indices(csv, frame["dx"].str.lower().to_numpy(), "dx")
    listed = LabeledImages(
        source="ham10000",
        image_ids=frame["image_id"].to_numpy(dtype=str),
        labels=labels,
        group_ids=frame["lesion_id"].to_numpy(dtype=str),
        root=folder,
    )
    paths, warnings = match_image_files(csv, folder, list(listed.image_ids), listed=listed)
    return _with_files(listed, paths, warnings)


def load_isic2018(
    path: str | os.PathLike[str] | None, *, metadata: str | os.PathLike[str] | None = None
) -> LabeledImages:
    """ISIC 2018 Task 3 ground truth and images, classes mapped to ``HAM10000_CLASSES``."""
    folder = existing_folder(path, "isic2018")
    if metadata is None and path is not None and Path(path).is_file():
        metadata = path
    csv = find_labels_csv(folder, metadata, is_isic2018_ground_truth, "ISIC 2018 ground-truth")
    frame = read_labels_csv(csv, ISIC2018_COLUMNS)
    reject_repeated_ids(csv, frame["image"], "image")
    labels = _one_hot_labels(csv, frame)
    image_ids = frame["image"].to_numpy(dtype=str)
    listed = LabeledImages(
        source="isic2018",
        image_ids=image_ids,
        labels=labels,
        group_ids=_isic_lesion_ids(folder, image_ids),
        root=folder,
    )
    paths, warnings = match_image_files(csv, folder, list(image_ids), listed=listed)
    return _with_files(listed, paths, warnings)


def _with_files(
    listed: LabeledImages, paths: tuple[Path, ...], warnings: tuple[str, ...]
) -> LabeledImages:
    return dataclasses.replace(listed, paths=paths, warnings=listed.warnings + warnings)


def _class_indices(csv: Path, codes: np.ndarray, column: str) -> np.ndarray:
    """Diagnosis codes -> indices into ``HAM10000_CLASSES``; unknown codes are listed."""
    known = np.isin(codes, HAM10000_CLASSES)
    if not known.all():
        bad_rows = np.flatnonzero(~known)
        unknown = sorted(set(codes[bad_rows]))
        raise UnknownLabelError(
            f"{csv}: unknown {column} code(s) {unknown} on lines {line_numbers(bad_rows)}; "
            f"allowed: {', '.join(HAM10000_CLASSES)}. Fix or delete those rows."
        )
    lookup = {name: index for index, name in enumerate(HAM10000_CLASSES)}
    return np.array([lookup[code] for code in codes], dtype=np.int64)


def _one_hot_labels(csv: Path, frame) -> np.ndarray:
    """The class of each one-hot row; a row that is not exactly one 1 (or not numeric) fails."""
    import pandas as pd

    columns = list(ISIC2018_COLUMNS[1:])
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    valid = np.isin(values, (0.0, 1.0)).all(axis=1) & (values.sum(axis=1) == 1)
    if not valid.all():
        bad_rows = np.flatnonzero(~valid)
        raise MetadataValueError(
            f"{csv}: lines {line_numbers(bad_rows)} are not one-hot over {columns} "
            f"({bad_rows.size} row(s)); each row needs exactly one 1 and six 0."
        )
    names = [columns[i].lower() for i in values.argmax(axis=1)]
    return np.array([HAM10000_CLASSES.index(name) for name in names], dtype=np.int64)


def _isic_lesion_ids(folder: Path, image_ids: np.ndarray) -> np.ndarray:
    """Lesion id per image from a lesion-groupings CSV beside the ground truth, else the id."""
    groupings = [
        p for p in sorted(folder.glob("*.csv")) if {"image", "lesion_id"} <= set(csv_header(p))
    ]
    if len(groupings) != 1:
        return image_ids.copy()
    frame = read_labels_csv(groupings[0], ("image", "lesion_id"))
    lesion_of = dict(zip(frame["image"], frame["lesion_id"], strict=True))
    return np.array([lesion_of.get(image_id, image_id) for image_id in image_ids])
