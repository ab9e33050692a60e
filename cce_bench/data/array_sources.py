"""Sources whose pixels come in one file: DermaMNIST (``.npz``) and Kaggle's hmnist CSVs.

DermaMNIST (MedMNIST v2, Yang et al. 2023) holds HAM10000 resized to 28 px (64, 128 and 224 px
in MedMNIST+), with arrays ``{train,val,test}_{images,labels}`` and its own 7:1:2 split, kept
as ``official_parts``. Its labels are MedMNIST's INFO order 0 akiec, 1 bcc, 2 bkl, 3 df, 4 mel,
5 nv, 6 vasc ("actinic keratoses and intraepithelial carcinoma", ..., "vascular lesions"),
which is our alphabetical order, so they are used as they are. Checked on the counts: its train
split holds 228, 359, 769, 80, 779, 4693, 99 images, 0.7 times HAM10000's akiec..vasc counts,
and only label 4 = mel (1,113 x 0.7 = 779) and 5 = nv (6,705 x 0.7 = 4,693) fit.

hmnist (``hmnist_{8_8,28_28}_{L,RGB}.csv``, Kaggle "Skin Cancer MNIST: HAM10000") has columns
``pixel0000..``, ``label`` with codes 0 akiec, 1 bcc, 2 bkl, 3 df, 4 nv, 5 vasc, 6 mel: not
alphabetical, so they are remapped. Its rows are in the order of ``HAM10000_metadata.csv``
(verified on all 10,015 rows, see shared/data/SOURCES.md), so a metadata CSV given with
``metadata=`` (or the one found beside the hmnist file) lends each row its image and lesion id.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

import numpy as np

from cce_bench.data.ham10000 import HAM10000_COLUMNS, is_ham10000_metadata
from cce_bench.data.image_folder import (
    DatasetNotFoundError,
    MetadataFileError,
    csv_header,
    line_numbers,
    read_labels_csv,
)
from cce_bench.data.labeled import HAM10000_CLASSES, LabeledImages
from cce_bench.errors import DataError

DERMAMNIST_PARTS: tuple[str, ...] = ("train", "val", "test")
#: hmnist label code -> index in ``HAM10000_CLASSES`` (hmnist: 4 nv, 5 vasc, 6 mel).
HMNIST_TO_HAM10000: np.ndarray = np.array(
    [HAM10000_CLASSES.index(name) for name in ("akiec", "bcc", "bkl", "df", "nv", "vasc", "mel")]
)
_HMNIST_NAME = re.compile(r"hmnist_(\d+)_(\d+)_(L|RGB)", re.IGNORECASE)


_NO_LESION_IDS = (
    "{csv} has no lesion ids, so each row is its own group (a 'lesion' split is then a split "
    "by image); pass --metadata HAM10000_metadata.csv to join them by row."
)


class ArrayFormatError(DataError):
    """A pixel file lacks an expected array or column, or has the wrong shape."""


class LabelRangeError(DataError):
    """A label is outside the seven classes' codes 0..6."""


def load_dermamnist(path: str | os.PathLike[str] | None) -> LabeledImages:
    """DermaMNIST from its ``.npz`` (or a folder holding exactly one), official split kept."""
    npz = _single_file(path, "dermamnist", "*.npz")
    with np.load(npz) as arrays:
        expected = [f"{part}_{kind}" for part in DERMAMNIST_PARTS for kind in ("images", "labels")]
        missing = [name for name in expected if name not in arrays.files]
        if missing:
            raise ArrayFormatError(
                f"{npz}: arrays {missing} missing (found {arrays.files}); use a MedMNIST "
                "dermamnist .npz, which holds {train,val,test}_{images,labels}."
            )
        images, labels, parts = [], [], []
        for part in DERMAMNIST_PARTS:
            part_images = _rgb_images(npz, arrays[f"{part}_images"], f"{part}_images")
            part_labels = arrays[f"{part}_labels"].reshape(-1)
            if len(part_labels) != len(part_images):
                raise ArrayFormatError(
                    f"{npz}: {part}_labels has {len(part_labels)} entries for "
                    f"{len(part_images)} images; the file is corrupt, download it again."
                )
            _check_label_range(npz, part_labels, f"{part}_labels")
            images.append(part_images)
            labels.append(part_labels.astype(np.int64))
            parts.append(np.full(len(part_labels), part))
    ids = np.concatenate(
        [
            [f"dermamnist_{part}_{i}" for i in range(len(lab))]
            for part, lab in zip(DERMAMNIST_PARTS, labels, strict=True)
        ]
    )
    return LabeledImages(
        source="dermamnist",
        image_ids=ids,
        labels=np.concatenate(labels),
        # DermaMNIST keeps no lesion ids, so each image is its own group.
        group_ids=ids.copy(),
        images=np.concatenate(images),
        official_parts=np.concatenate(parts),
        root=npz.parent,
    )


def load_hmnist(
    path: str | os.PathLike[str] | None, *, metadata: str | os.PathLike[str] | None = None
) -> LabeledImages:
    """An hmnist CSV (or a folder holding exactly one), labels remapped to ours.

    Lesion ids come from ``metadata`` (a HAM10000 metadata CSV, joined by row position) or
    from a ``HAM10000_metadata.csv`` beside the file; without either, each row is its own group.
    """
    import pandas as pd

    csv = _single_file(path, "hmnist", "hmnist_*.csv")
    frame = pd.read_csv(csv)
    if "label" not in frame.columns:
        raise ArrayFormatError(f"{csv}: no 'label' column; an hmnist CSV ends with one.")
    pixels = frame.drop(columns="label")
    images = _hmnist_images(csv, pixels)
    codes = frame["label"].to_numpy()
    _check_label_range(csv, codes, "label")
    labels = HMNIST_TO_HAM10000[codes.astype(np.int64)]
    ids = np.array([f"hmnist_{row}" for row in range(len(frame))])
    labeled = LabeledImages(
        source="hmnist", image_ids=ids, labels=labels, group_ids=ids.copy(), images=images,
        root=csv.parent,
    )  # fmt: skip
    return _join_metadata(labeled, csv, metadata)


def _single_file(path: str | os.PathLike[str] | None, source: str, pattern: str) -> Path:
    if path is None:
        raise DatasetNotFoundError(f"source {source!r} needs a path; pass its file or folder.")
    target = Path(path).expanduser()
    if target.is_file():
        return target
    if not target.is_dir():
        raise DatasetNotFoundError(f"{target}: no such file or folder; check the path.")
    matches = sorted(target.glob(pattern))
    if len(matches) != 1:
        found = ", ".join(p.name for p in matches) or "none"
        raise MetadataFileError(
            f"{target}: expected exactly one {pattern} file for {source}, found {found}; "
            "pass the file itself as PATH."
        )
    return matches[0]


def _rgb_images(path: Path, images: np.ndarray, name: str) -> np.ndarray:
    """uint8 NHWC with 3 channels; greyscale ``[N, H, W]`` is repeated to RGB."""
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ArrayFormatError(
            f"{path}: {name} has shape {images.shape}; expected [N, S, S, 3] (or [N, S, S])."
        )
    return np.ascontiguousarray(images, dtype=np.uint8)


def _check_label_range(path: Path, labels: np.ndarray, name: str) -> None:
    numeric = np.asarray(labels, dtype=float)
    bad = np.flatnonzero(~np.isin(numeric, np.arange(len(HAM10000_CLASSES))))
    if bad.size:
        shown = sorted({str(v) for v in labels[bad][:5]})
        where = f"lines {line_numbers(bad)}" if path.suffix == ".csv" else f"indices {bad[:5]}"
        raise LabelRangeError(
            f"{path}: {name} has {bad.size} value(s) outside 0..6 ({', '.join(shown)}) at "
            f"{where}; labels must be class codes 0..6."
        )


def _hmnist_images(csv: Path, pixels) -> np.ndarray:
    """The pixel columns as uint8 ``[N, S, S, 3]``: ``S*S`` columns are grey, ``3*S*S`` RGB."""
    count = pixels.shape[1]
    side, channels = math.isqrt(count), 1
    if side * side != count:
        side, channels = math.isqrt(count // 3), 3
    named = _HMNIST_NAME.search(csv.name)
    expected = None
    if named:
        size = int(named.group(1))
        expected = size * size * (3 if named.group(3).upper() == "RGB" else 1)
    if side * side * channels != count or (expected is not None and count != expected):
        want = f"{expected}" if expected is not None else "S*S (greyscale) or 3*S*S (RGB)"
        raise ArrayFormatError(
            f"{csv}: {count} pixel columns, expected {want}; the file is truncated or not an "
            "hmnist CSV."
        )
    values = pixels.to_numpy(dtype=float)
    bad_rows = np.flatnonzero(~((values >= 0) & (values <= 255)).all(axis=1))
    if bad_rows.size:
        raise ArrayFormatError(
            f"{csv}: pixel values missing or outside 0..255 on lines {line_numbers(bad_rows)}; "
            "fix or delete those rows."
        )
    images = values.astype(np.uint8).reshape(len(values), side, side, channels)
    return np.ascontiguousarray(np.broadcast_to(images, (*images.shape[:3], 3)))


def _join_metadata(
    labeled: LabeledImages, csv: Path, metadata: str | os.PathLike[str] | None
) -> LabeledImages:
    """Image and lesion ids by row position from a HAM10000 metadata CSV, checked on labels.

    An explicit ``metadata`` that does not line up is an error; one merely found beside the
    hmnist file is skipped with a warning.
    """
    meta = _metadata_beside(csv) if metadata is None else Path(metadata).expanduser()
    if meta is None:
        return dataclasses.replace(labeled, warnings=(_NO_LESION_IDS.format(csv=csv.name),))
    if not meta.is_file():
        raise DatasetNotFoundError(f"{meta}: no such file; check the --metadata path.")
    frame = read_labels_csv(meta, HAM10000_COLUMNS)
    codes = frame["dx"].str.lower().to_numpy()
    expected = np.asarray(HAM10000_CLASSES)[labeled.labels]
    if len(frame) != len(labeled):
        problem = f"{meta} has {len(frame)} rows for {len(labeled)} in {csv}"
    elif not np.array_equal(codes, expected):
        disagree = np.flatnonzero(codes != expected)
        problem = (
            f"dx in {meta} disagrees with {csv.name}'s label on lines {line_numbers(disagree)}"
        )
    else:
        return dataclasses.replace(
            labeled,
            image_ids=frame["image_id"].to_numpy(dtype=str),
            group_ids=frame["lesion_id"].to_numpy(dtype=str),
        )
    if metadata is not None:
        raise ArrayFormatError(
            f"cannot join {meta} to {csv} by row: {problem}; pass the metadata CSV whose rows "
            "are in the hmnist file's order, or none."
        )
    warning = f"{meta.name} beside {csv.name} not joined: {problem}."
    return dataclasses.replace(labeled, warnings=(warning, _NO_LESION_IDS.format(csv=csv.name)))


def _metadata_beside(csv: Path) -> Path | None:
    """The one HAM10000 metadata CSV in the hmnist file's folder (Kaggle ships them together)."""
    beside = [p for p in sorted(csv.parent.glob("*.csv")) if is_ham10000_metadata(csv_header(p))]
    return beside[0] if len(beside) == 1 else None
