"""The datasets ``cce-bench data download`` fetches: where each file lives and what it must be.

Every fact below is pinned from the public source named beside it, so that a download is checked
against what the publisher released rather than against whatever a server sends today. A file
with a published MD5 is refused when its bytes differ; a file without one (ISIC publishes none)
has the SHA-256 of its first download recorded in a lock file and is checked against it later.

``DATASETS`` is the one table; ``download.download_dataset`` takes another mapping of the same
shape, which is how the tests serve small files of the real layouts under the real names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cce_bench.errors import UnknownNameError, did_you_mean

MB = 1_000_000
GB = 1_000_000_000


@dataclass(frozen=True)
class RemoteFile:
    """One published file of a dataset.

    ``name`` is the file's name on disk and on a mirror (``<mirror>/<name>``); ``url`` is where
    its publisher serves it. ``md5`` and ``size`` are the published values, or None where none is
    published (then the server's announced length and the lock file check it). ``approx_size``
    sizes the free-space check and ``--list`` before anything is fetched. ``unpack_to`` is None
    for a file kept as it is, else the folder (``""``: the dataset folder) its zip unpacks into;
    ``max_unpacked`` is the most bytes that zip may unpack to: more is refused as a zip bomb.
    ``dataverse_label`` is the name Dataverse lists the file under, to find its current id.
    """

    name: str
    url: str
    approx_size: int
    md5: str | None = None
    size: int | None = None
    unpack_to: str | None = None
    max_unpacked: int | None = None
    dataverse_label: str | None = None


@dataclass(frozen=True)
class Dataverse:
    """A Dataverse installation and a dataset's DOI on it, to resolve file names to ids."""

    server: str
    doi: str


@dataclass(frozen=True)
class Dataset:
    """A downloadable dataset: its files, licence, origin, and how a study uses it.

    ``source`` is the ``cce_bench.data.sources`` name that reads the folder; ``data_file`` is
    what ``--data`` points at inside it (None: the folder itself); ``role`` says whether a study
    trains on it (``data``) or scores on it once (``external_test``). ``terms``, when set, are
    printed and must be accepted with ``--accept-terms`` before anything is fetched.
    """

    name: str
    description: str
    source: str
    files: tuple[RemoteFile, ...]
    licence: str
    origin: str
    study: str
    role: Literal["data", "external_test"] = "data"
    data_file: str | None = None
    terms: str | None = None
    dataverse: Dataverse | None = None
    #: The number of images the publisher released, when known: a download holding fewer
    #: (some copies of a set miss or corrupt one) is reported, since its results then differ.
    images: int | None = None

    @property
    def approx_size(self) -> int:
        return sum(file.approx_size for file in self.files)

    @property
    def size_is_pinned(self) -> bool:
        """Whether every file's size is published (else ``approx_size`` is an estimate)."""
        return all(file.size is not None for file in self.files)

    @property
    def needs_lock(self) -> bool:
        """Whether a file has no published checksum, so its first download's is recorded."""
        return any(file.md5 is None for file in self.files)


# -- HAM10000 ---------------------------------------------------------------------------------
# Harvard Dataverse, doi:10.7910/DVN/DBW86T (Tschandl, Rosendahl & Kittler, Sci. Data 5, 180161,
# 2018). File ids, byte counts and MD5s from the dataset's Dataverse file listing (version 4); an
# independent download record of that version has the same three ids and zip bytes and MD5s.
DATAVERSE_HARVARD = "https://dataverse.harvard.edu"
HAM10000_DOI = "doi:10.7910/DVN/DBW86T"
HAM10000_PAGE = f"{DATAVERSE_HARVARD}/dataset.xhtml?persistentId={HAM10000_DOI}"
_DATAFILE = f"{DATAVERSE_HARVARD}/api/access/datafile"
# A summary, not the terms' own wording: no machine the code was written on reaches Dataverse,
# so the text could not be copied. The page is authoritative, hence its address comes first.
HAM10000_TERMS = (
    "HAM10000 is published on Harvard Dataverse (doi:10.7910/DVN/DBW86T) under CC BY-NC 4.0 "
    "with custom dataset terms, which apply to everyone who downloads it. Read them in full on "
    f"the dataset page (Terms tab): {HAM10000_PAGE}\n"
    "In short: non-commercial use only, and any use must cite Tschandl P., Rosendahl C., "
    "Kittler H. The HAM10000 dataset, a large collection of multi-source dermatoscopic images "
    "of common pigmented skin lesions. Sci. Data 5, 180161 (2018), doi:10.1038/sdata.2018.161."
)
# The zips hold JPEGs, which do not compress: unpacked they are about as large as zipped, so
# twice the zip is a generous ceiling and anything beyond it is not the published archive.
HAM10000 = Dataset(
    name="ham10000",
    description="HAM10000: 10,015 dermoscopic images, 7 classes, lesion ids",
    source="ham10000",
    files=(
        RemoteFile(
            name="HAM10000_images_part_1.zip",
            url=f"{_DATAFILE}/3172585",
            approx_size=1_366_522_108,
            md5="4639bfa73ab251610530a97c898e6e46",
            size=1_366_522_108,
            unpack_to="HAM10000_images_part_1",
            max_unpacked=2 * 1_366_522_108,
            dataverse_label="HAM10000_images_part_1",
        ),
        RemoteFile(
            name="HAM10000_images_part_2.zip",
            url=f"{_DATAFILE}/3172584",
            approx_size=1_403_566_547,
            md5="da43d6cc50f6613013be07e8986b384b",
            size=1_403_566_547,
            unpack_to="HAM10000_images_part_2",
            max_unpacked=2 * 1_403_566_547,
            dataverse_label="HAM10000_images_part_2",
        ),
        # Dataverse ingested the uploaded CSV as a .tab table: without ?format=original it
        # serves a re-export with other bytes. The MD5 is the original's; no size is listed for
        # it (690,218 bytes in the download record above, used only to size the free-space check).
        RemoteFile(
            name="HAM10000_metadata.csv",
            url=f"{_DATAFILE}/4338392?format=original",
            approx_size=690_218,
            md5="8f85fb1aa29d80a2797247e434deb79d",
            dataverse_label="HAM10000_metadata",
        ),
    ),
    licence="CC BY-NC 4.0 + Dataverse terms",
    origin=f"Harvard Dataverse {HAM10000_DOI}",
    study="lesion-ham10000.toml",
    terms=HAM10000_TERMS,
    dataverse=Dataverse(server=DATAVERSE_HARVARD, doi=HAM10000_DOI),
)

# -- ISIC 2018 Task 3 test ----------------------------------------------------------------------
# challenge.isic-archive.com/data/#2018: the official test images (1,512 JPEGs) and their one-hot
# ground truth, CC BY-NC 4.0. The Training and Validation zips share the prefix. No size or
# checksum is published: the approximate sizes (1,512 JPEGs of ~250 KB; a 1,512-row CSV) only size
# the free-space check and the ceilings against zip bombs.
ISIC2018 = "https://isic-challenge-data.s3.amazonaws.com/2018"
ISIC2018_TEST = Dataset(
    name="isic2018-test",
    description="ISIC 2018 Task 3 official test set: 1,512 images, one-hot ground truth",
    source="isic2018",
    files=(
        RemoteFile(
            name="ISIC2018_Task3_Test_Input.zip",
            url=f"{ISIC2018}/ISIC2018_Task3_Test_Input.zip",
            approx_size=400 * MB,
            unpack_to="ISIC2018_Task3_Test_Input",
            max_unpacked=2 * GB,
        ),
        RemoteFile(
            name="ISIC2018_Task3_Test_GroundTruth.zip",
            url=f"{ISIC2018}/ISIC2018_Task3_Test_GroundTruth.zip",
            approx_size=50_000,
            unpack_to="",  # the ground-truth CSV goes directly in the folder, where it is read
            max_unpacked=64 * MB,
        ),
    ),
    licence="CC BY-NC 4.0",
    origin="ISIC 2018 challenge (isic-challenge-data.s3.amazonaws.com/2018)",
    study="lesion-ham10000.toml",
    role="external_test",
    images=1_512,
)


# -- DermaMNIST (MedMNIST+) ---------------------------------------------------------------------
# MedMNIST medmnist/info.py (v3), INFO["dermamnist"]: Zenodo record 10519652, url / url_64 /
# url_128 / url_224 and MD5 / MD5_64 / MD5_128 / MD5_224; licence "CC BY-NC 4.0" (from HAM10000).
# No size is published. The approximate sizes are 10,015 x S x S x 3 bytes of pixels as the
# .npz stores them (about 20 MB at 28 px and 1.0 GB at 224 px in reported downloads).
ZENODO_MEDMNIST = "https://zenodo.org/records/10519652/files"


def _dermamnist(suffix: str, md5: str, approx_size: int) -> Dataset:
    file_name = f"dermamnist{suffix.replace('-', '_')}.npz"
    pixels = suffix.lstrip("-") or "28"
    return Dataset(
        name=f"dermamnist{suffix}",
        description=f"DermaMNIST at {pixels} px: HAM10000 resized, MedMNIST's official split",
        source="dermamnist",
        files=(
            RemoteFile(
                name=file_name,
                url=f"{ZENODO_MEDMNIST}/{file_name}?download=1",
                approx_size=approx_size,
                md5=md5,
            ),
        ),
        licence="CC BY-NC 4.0",
        origin="MedMNIST+ on Zenodo, record 10519652",
        study="dermamnist.toml",
        data_file=file_name,
    )


DATASETS: dict[str, Dataset] = {
    dataset.name: dataset
    for dataset in (
        HAM10000,
        ISIC2018_TEST,
        _dermamnist("", "0744692d530f8e62ec473284d019b0c7", 20 * MB),
        _dermamnist("-64", "b70a2f5635c6199aeaa28c31d7202e1f", 100 * MB),
        _dermamnist("-128", "2defd784463fa5243564e855ed717de1", 350 * MB),
        _dermamnist("-224", "8974907d8e169bef5f5b96bc506ae45d", 1 * GB),
    )
}


def human_bytes(count: int) -> str:
    """``2_770_088_655`` -> ``"2.77 GB"``, in the decimal units publishers and disks use."""
    for unit, scale in (("GB", GB), ("MB", MB), ("kB", 1000)):
        if abs(count) >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


def find_dataset(name: str, datasets: dict[str, Dataset] | None = None) -> Dataset:
    """The dataset called ``name``, or ``UnknownNameError`` naming the closest one."""
    table = DATASETS if datasets is None else datasets
    if name not in table:
        raise UnknownNameError(
            f"unknown dataset {name!r}; choose one of {', '.join(table)} "
            f"(`cce-bench data download --list` shows them).{did_you_mean(name, table)}"
        )
    return table[name]
