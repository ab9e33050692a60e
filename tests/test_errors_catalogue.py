"""Every bad input in docs/errors.md, run through the CLI as a user would.

One row of docs/errors.md is one case here, keyed by the row's id. Each case builds its bad files
in a fresh folder, runs ``cce-bench`` there, and checks what the catalogue promises: exit code 2,
exactly one line on stderr that holds the documented message's key part, no traceback, and
nothing written to the results folder (or, for ``cce-bench data``, to the cache). A row without a
case, or a case without a row, fails.

Most cases run in this process, through the console script's own ``main`` inside Typer's
``CliRunner`` isolation (its stdin, stdout, stderr and environment), one after another on the
main thread: a CLI start in a subprocess costs 0.3 s to 6 s of imports, which here are paid once.
A handful run the installed ``cce-bench`` in a real subprocess, so that the exit code, stderr and
the absence of a traceback are also proven end to end (``IN_SUBPROCESS``), and so do the cases
that start Ray (15-20 s each, and a Ray left in this process would be joined by later tests) or
cap the file size with ``ulimit``; those run at once in a small thread pool (``WORKERS``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from download_server import Served, dermamnist_file, serving, zip_of
from typer.testing import CliRunner

from cce_bench.cli import main as cli_main

CATALOGUE = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
#: Four at once: a CLI start is mostly imports and Ray's start-up partly waiting; on the shared
#: 2-core machine the whole module took 121 s with three workers and 75-89 s with four.
WORKERS = 4
#: No bad input may hang the CLI: past this a case is killed and fails. It is a hang guard, not a
#: speed check, so it is generous for the slowest machine under load (four cases at once, some
#: starting Ray, on 2 busy AVX2 cores); that a refused command did no work is checked through
#: the files it wrote, not through how long it took.
DEFAULT_LIMIT_S = 300.0
#: ``folder_lock`` leaves its (empty) lock file in a study folder that already existed: deleting
#: a flock file after use lets two drivers lock two different inodes, so it stays by design.
LOCK_FILE = ".lock"
#: An NVIDIA driver is loaded (cheaper to ask than importing torch at collection time).
GPU_PRESENT = Path("/dev/nvidiactl").exists()

#: Cases run through the installed console script in a subprocess although they could run here:
#: one per kind of command (a study file, a flag, a download, a busy results folder).
IN_SUBPROCESS = frozenset(
    {"study-invalid-toml", "flag-unknown-option", "download-not-found", "results-in-use"}
)

Content = str | bytes | Callable[[Path], None]
Hold = Callable[[Path], contextlib.AbstractContextManager[dict[str, str]]]


@dataclass(frozen=True)
class Case:
    """One bad input: the files it needs, the command, the key part of its one-line message.

    ``argv`` may hold ``{name}`` fields filled from what ``hold`` yields (e.g. a busy port);
    ``hold`` keeps a resource (a lock, a listening socket) for as long as the command runs.
    ``output`` is the folder that must stay as it was; ``xfail`` names a known defect;
    ``starts_ray`` cases (15-20 s each) are started first, so the quick ones fill in around them;
    ``needs_no_gpu`` cases are bad input only where there is no GPU, and skipped elsewhere.
    ``env`` adds environment variables (``{name}`` fields filled as in ``argv``); ``max_file_kb``
    caps the size of any file the command writes (``ulimit -f``), which fills a "disk" at once.
    """

    argv: tuple[str, ...]
    expect: str
    files: dict[str, Content] = field(default_factory=dict)
    output: str = "results"
    hold: Hold | None = None
    limit_s: float = DEFAULT_LIMIT_S
    xfail: str | None = None
    starts_ray: bool = False
    needs_no_gpu: bool = False
    env: dict[str, str] = field(default_factory=dict)
    max_file_kb: int | None = None

    def in_subprocess(self, case_id: str) -> bool:
        """Ray's start and ``ulimit`` need a process of their own; the rest may run here."""
        return self.starts_ray or self.max_file_kb is not None or case_id in IN_SUBPROCESS


@dataclass(frozen=True)
class Outcome:
    """What one CLI run did, and what it changed in the case's ``output`` folder."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool
    written: list[str]


# -- the files the cases write ---------------------------------------------------------------
STUDY = """name = "tiny"

[data]
source = "synthetic"
n_images = 60
image_size = 32

[models]
backbones = ["resnet50"]

[losses]
arms = ["ce", "cce"]

[train]
epochs = 1

[tune]
n_trials = 1

[evaluate]
seeds = 1

[resources]
max_concurrent = 1
"""

HAM_HEADER = "lesion_id,image_id,dx,dx_type,age,sex,localization"
CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
IDS = tuple(f"ISIC_{i:07d}" for i in range(21))
DX = CLASSES * 3


def study(*edits: tuple[str, str], base: str = STUDY) -> str:
    """The base study with each ``(old, new)`` replaced; a typo in a case fails loudly."""
    for old, new in edits:
        assert old in base, f"{old!r} is not in the base study"
        base = base.replace(old, new, 1)
    return base


HAM_STUDY = study(('source = "synthetic"\nn_images = 60', 'source = "ham10000"\npath = "ham"'))


def stored_study(*edits: tuple[str, str], text: str = STUDY) -> Callable[[Path], None]:
    """``study.toml`` as ``cce-bench run`` stores it for the study ``text`` (the base study by
    default), then edited; read from the case folder, so its relative paths resolve as the
    command's will."""

    def write(path: Path) -> None:
        from cce_bench.config import load_study

        source = path.parents[2] / "source.toml"  # <case>/results/<name>/study.toml
        source.write_text(text)
        stored = load_study(source).to_toml()
        source.unlink()
        for old, new in edits:
            assert re.search(old, stored, flags=re.M), f"{old!r} is not in the stored study"
            stored = re.sub(old, new, stored, count=1, flags=re.M)
        path.write_text(stored)

    return write


def metadata(ids=IDS, dx=DX, header: str = HAM_HEADER) -> str:
    """A HAM10000 metadata CSV, one lesion per image."""
    rows = [header] + [
        f"HAM_{i[5:]},{i},{d},histo,50.0,male,back" for i, d in zip(ids, dx, strict=True)
    ]
    return "\n".join(rows) + "\n"


def jpegs(ids=IDS, suffix: str = ".jpg") -> Callable[[Path], None]:
    """A folder of tiny solid-colour images named by image id."""

    def write(folder: Path) -> None:
        from PIL import Image

        folder.mkdir(parents=True, exist_ok=True)
        for shade, image_id in enumerate(ids):
            pixels = np.full((16, 16, 3), 10 * shade, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{image_id}{suffix}")

    return write


def npz(**arrays: np.ndarray) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        np.savez(path, **arrays)

    return write


def dermamnist_arrays(train_labels: list[int]) -> dict[str, np.ndarray]:
    """MedMNIST's six arrays, 8 px, with the given training labels."""
    labels = {"train": train_labels, "val": list(range(7)), "test": list(range(7))}
    arrays = {}
    for part, values in labels.items():
        arrays[f"{part}_images"] = np.zeros((len(values), 8, 8, 3), dtype=np.uint8)
        arrays[f"{part}_labels"] = np.array(values).reshape(-1, 1)
    return arrays


def hmnist_csv(pixels: int, labels: list[int]) -> str:
    """Kaggle's hmnist layout: ``pixel0000..`` columns then ``label``."""
    header = ",".join([f"pixel{i:04d}" for i in range(pixels)] + ["label"])
    rows = [",".join(["0"] * pixels + [str(label)]) for label in labels]
    return "\n".join([header, *rows]) + "\n"


def torch_file(make: Callable[[], object]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import torch

        torch.save(make(), path)

    return write


def full_model() -> object:
    import torch

    return torch.nn.Linear(2, 2)


def timm_weights(model: str) -> Callable[[], object]:
    """The state dict of a randomly initialised timm ``model`` (a test model: a blink)."""

    def make() -> object:
        import timm

        return timm.create_model(model).state_dict()

    return make


#: ``[models]`` of the base study with a ``[models.pretrained]`` table after it.
PRETRAINED_TABLE = "[models.pretrained]\n{}\n\n[losses]"


@contextlib.contextmanager
def folder_locked(case_dir: Path) -> Iterator[dict[str, str]]:
    """Holds the study folder's lock, as a running ``cce-bench run`` does."""
    with (case_dir / "results" / "tiny" / LOCK_FILE).open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield {}


@contextlib.contextmanager
def port_taken(case_dir: Path) -> Iterator[dict[str, str]]:
    """A loopback port some other program already listens on."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield {"port": str(server.getsockname()[1])}


def optuna_db(path: Path) -> None:
    from cce_bench.study.storage import open_storage

    open_storage(f"sqlite:///{path}").remove_session()


RUN = ("run", "study.toml", "--results-dir", "results")
TRAIN = ("train", "--n-images", "60", "--epochs", "1", "--backbone", "resnet50",
         "--image-size", "32", "--threads", "1")  # fmt: skip
HAM = {"ham/HAM10000_metadata.csv": metadata(), "ham/images": jpegs()}
STARTED = {"results/tiny/study.toml": stored_study()}
#: The base study on a timm test model that starts from the weights file ``w.pt``.
WEIGHTS_STUDY = study(
    ('"resnet50"', '"test_resnet"'), ("[losses]", 'pretrained = "w.pt"\n\n[losses]')
)


def study_case(expect: str, *edits: tuple[str, str], **options) -> Case:
    """``cce-bench run study.toml`` on the base study with ``edits``."""
    return Case(RUN, expect, {"study.toml": study(*edits)}, **options)


def prepare_case(path: str, expect: str, files: dict[str, Content], *flags: str) -> Case:
    """``cce-bench data prepare PATH --size 32``: nothing may land in its cache folder."""
    argv = ("data", "prepare", path, "--size", "32", "--cache-dir", "cache", *flags)
    return Case(argv, expect, files, output="cache")


def ham(**files: Content) -> dict[str, Content]:
    """The good HAM10000 folder with some files replaced or added (keys relative to it)."""
    return {**HAM, **{f"ham/{name}": content for name, content in files.items()}}


def mirror(routes: Callable[[], dict[str, Served | bytes]]) -> Hold:
    """A local server for ``data download`` cases; ``{base}`` is its URL in ``env``."""

    @contextlib.contextmanager
    def hold(case_dir: Path) -> Iterator[dict[str, str]]:
        with serving(routes()) as server:
            yield {"base": server.url}

    return hold


def download_case(name: str, expect: str, routes, *flags: str, **options) -> Case:
    """``cce-bench data download NAME`` from a local mirror; ``data/`` must stay as it was.

    ``--quiet``: progress lines (on stderr when it is not a terminal) would precede the error.
    """
    options = {"output": "data", **options}
    return Case(
        ("--quiet", "data", "download", name, *flags),
        expect,
        hold=mirror(routes),
        env={"CCE_BENCH_DOWNLOAD_BASE": "{base}"},
        **options,
    )


def npz_served(**served) -> Callable[[], dict[str, Served | bytes]]:
    """``/dermamnist.npz``: a small MedMNIST file (not the published bytes), as ``Served``."""
    return lambda: {"/dermamnist.npz": Served(dermamnist_file()["dermamnist.npz"], **served)}


def isic_served(**replaced: Callable[[], bytes]) -> Callable[[], dict[str, Served | bytes]]:
    """The two ISIC 2018 test zips, some replaced (ISIC publishes no checksum to fail first).

    Each case fails before an image is decoded, so the image is a stand-in, and no worker
    thread needs PIL; the replacements are built when the case runs, not at collection.
    """
    truth = "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nISIC_0034524,1.0,0,0,0,0,0,0\n"

    def routes() -> dict[str, Served | bytes]:
        files = {
            ISIC_INPUT: zip_of({"ISIC2018_Task3_Test_Input/ISIC_0034524.jpg": b"stand-in"}),
            ISIC_TRUTH: zip_of({f"{ISIC_TRUTH[:-4]}/{ISIC_TRUTH[:-4]}.csv": truth.encode()}),
        }
        files |= {name: make() for name, make in replaced.items()}
        return {f"/{name}": body for name, body in files.items()}

    return routes


ISIC_INPUT, ISIC_TRUTH = "ISIC2018_Task3_Test_Input.zip", "ISIC2018_Task3_Test_GroundTruth.zip"
ISIC_LOCK = {"dataset": "isic2018-test", "files": {ISIC_TRUTH: {"sha256": "0" * 64}}}
CSV = "HAM10000_metadata.csv"
SPACE = "[tune.space]\n{}\n\n[evaluate]"
ANALYSIS = "[analysis]\n{}\n\n[evaluate]"
CASES: dict[str, Case] = {
    # -- study files -------------------------------------------------------------------------
    "study-missing": Case(
        ("run", "nosuch.toml", "--results-dir", "results"),
        "nosuch.toml: study file not found; check the path",
    ),
    "study-invalid-toml": study_case(
        "study.toml: invalid TOML at line 3, column 6", ("[data]", "[data")
    ),
    "study-unknown-key": study_case(
        "unknown key `train.epoch`; did you mean `train.epochs`?", ("epochs = 1", "epoch = 1")
    ),
    "study-key-in-wrong-table": study_case(
        "unknown key `tune.seeds`; did you mean `evaluate.seeds`?",
        ("n_trials = 1", "n_trials = 1\nseeds = 3"),
    ),
    "study-wrong-type": study_case(
        '`train.epochs` must be an integer, got "4" (a string)', ("epochs = 1", 'epochs = "4"')
    ),
    "study-zero-trials": study_case(
        "`tune.n_trials` must be >= 1, got 0; set it to 1 or more", ("n_trials = 1", "n_trials = 0")
    ),
    "study-negative-seeds": study_case(
        "`evaluate.seeds` must be >= 1, got -2", ("seeds = 1", "seeds = -2")
    ),
    "study-bad-range": study_case(
        "`tune.space.lr` must be a range [low, high] with low < high",
        ("[evaluate]", SPACE.format("lr = [0.01, 0.001]")),
    ),
    "study-unknown-backbone": study_case(
        "unknown backbone 'resnet51': not one of the paper's four (resnet50, efficientnet_b4, "
        "inception_v3, densenet121) nor a timm model name; did you mean resnet51q, resnet50",
        ('"resnet50"', '"resnet51"'),
    ),
    "study-image-size-below-minimum": study_case(
        "`data.image_size`: inception_v3 needs images of at least 75 px",
        ('"resnet50"', '"inception_v3"'),
        ("image_size = 32", "image_size = 64"),
    ),
    "study-unknown-loss": study_case(
        "`losses.arms` = 'cce_tua' is not one of ce, cce, cce_tau, focal, label_smoothing; "
        "did you mean 'cce_tau'?",
        ('"ce", "cce"', '"ce", "cce_tua"'),
    ),
    "study-baseline-not-an-arm": study_case(
        "`losses.baseline` = 'focal' is not one of `losses.arms` (ce, cce)",
        ("[train]", 'baseline = "focal"\n\n[train]'),
    ),
    "study-tau-without-tau-arm": study_case(
        "`tune.space.tau` is set, but no arm in `losses.arms` (ce, cce) takes tau (only cce_tau)",
        ("[evaluate]", SPACE.format("tau = [-1.0, 1.0]")),
    ),
    "study-unknown-source": study_case(
        "`data.source` = 'ham1000' is not one of", ('"synthetic"\nn_images = 60', '"ham1000"')
    ),
    "study-fractions-leave-no-training": study_case(
        "`data.test_fraction` + `data.val_fraction` = 1.1 leaves no training images",
        ("image_size = 32", "image_size = 32\ntest_fraction = 0.5\nval_fraction = 0.6"),
    ),
    "study-data-path-missing": study_case(
        "/nowhere does not exist; check the path",
        ('"synthetic"\nn_images = 60', '"ham10000"\npath = "nowhere"'),
    ),
    "study-pretrained-missing": study_case(
        "`models.pretrained` weights file", ("[losses]", 'pretrained = "weights.pt"\n\n[losses]')
    ),
    "study-pretrained-not-a-state-dict": Case(
        RUN,
        "is not a state dict that loads safely",
        {
            "study.toml": study(("[losses]", 'pretrained = "model.pt"\n\n[losses]')),
            "model.pt": torch_file(full_model),
        },
    ),
    "study-pretrained-one-file-for-two-backbones": study_case(
        "`models.pretrained` is one weights file for 2 backbones (resnet50, densenet121), but a "
        "file fits one architecture; use the table form",
        ('"resnet50"', '"resnet50", "densenet121"'),
        ("[losses]", 'pretrained = "w.pt"\n\n[losses]'),
    ),
    "study-pretrained-names-unknown-backbone": study_case(
        "`models.pretrained` names 'resnet05', which is not one of `models.backbones` "
        "(resnet50); did you mean 'resnet50', or add it to the backbones",
        ("[losses]", PRETRAINED_TABLE.format("resnet05 = true")),
    ),
    "study-pretrained-same-file-two-models": Case(
        RUN,
        "`models.pretrained` gives the same weights (",
        {
            "study.toml": study(
                ('"resnet50"', '"test_resnet", "test_resnet@scratch", "test_efficientnet"'),
                (
                    "[losses]",
                    PRETRAINED_TABLE.format('test_resnet = "w.pt"\ntest_efficientnet = "w.pt"'),
                ),
            ),
            "w.pt": torch_file(timm_weights("test_resnet")),
        },
    ),
    "study-pretrained-does-not-fit": Case(
        RUN,
        "does not fit backbone test_efficientnet: ",
        {
            "study.toml": study(
                ('"resnet50"', '"test_efficientnet"'),
                ("[losses]", 'pretrained = "w.pt"\n\n[losses]'),
            ),
            "w.pt": torch_file(timm_weights("test_resnet")),
        },
    ),
    "study-backbone-bad-variant-label": study_case(
        "`models.backbones`: backbone 'resnet50@': the label after '@' must be 1-40 letters",
        ('"resnet50"', '"resnet50@"'),
    ),
    "study-gpus-not-available": study_case(
        "`resources.gpus_per_run` = 1, but no node of the Ray cluster (1 node) has a GPU",
        ("max_concurrent = 1", "max_concurrent = 1\ngpus_per_run = 1"),
        starts_ray=True,
        needs_no_gpu=True,
    ),
    "study-cpus-beyond-largest-node": study_case(
        "`resources.cpus_per_run` = 4096, but the largest node of the Ray cluster (1 node) has",
        ("max_concurrent = 1", "max_concurrent = 1\ncpus_per_run = 4096"),
        starts_ray=True,
    ),
    "study-device-cuda-without-gpu": study_case(
        "`train.device` = 'cuda', but no node of the Ray cluster (1 node) has a GPU",
        ("epochs = 1", 'epochs = 1\ndevice = "cuda"'),
        ("max_concurrent = 1", "max_concurrent = 1\ngpus_per_run = 1"),
        starts_ray=True,
        needs_no_gpu=True,
    ),
    "study-device-cuda-without-gpus-per-run": study_case(
        "`train.device` = 'cuda', but `resources.gpus_per_run` = 0, and Ray hides the GPUs",
        ("epochs = 1", 'epochs = 1\ndevice = "cuda"'),
    ),
    "study-gpu-share-unknown-backbone": study_case(
        "`resources.gpus_per_run` names 'resnet5', which is not in `models.backbones`",
        ("max_concurrent = 1", "max_concurrent = 1\ngpus_per_run = {resnet5 = 1}"),
    ),
    "study-primary-metric-derived": study_case(
        "`analysis.primary_metric` = 'paper_accuracy' is a function of 'top1' in the same run",
        ("[evaluate]", ANALYSIS.format('primary_metric = "paper_accuracy"')),
    ),
    "study-primary-metric-unknown": study_case(
        "`analysis.primary_metric` = 'balanced_acc' is not one of",
        ("[evaluate]", ANALYSIS.format('primary_metric = "balanced_acc"')),
    ),
    "study-comparison-not-an-arm": study_case(
        "`analysis.comparisons` = 'cce_tau' is not one of the other arms in `losses.arms` (cce)",
        ("[evaluate]", ANALYSIS.format('comparisons = ["cce_tau"]')),
    ),
    "study-comparison-is-baseline": study_case(
        "`analysis.comparisons` lists the baseline 'ce'",
        ("[evaluate]", ANALYSIS.format('comparisons = ["ce", "cce"]')),
    ),
    "study-margin-out-of-range": study_case(
        "`analysis.margin` must be in (0.0, 1.0) (in metric units: metrics are ratios, so 0.01 "
        "is 1 pp), got 1.0",
        ("[evaluate]", ANALYSIS.format("margin = 1")),
    ),
    "study-max-seeds-without-anytime": study_case(
        "`evaluate.max_seeds` = 10 is set, but `evaluate.stopping` is 'fixed', which runs "
        'exactly `seeds`; set stopping = "anytime"',
        ("seeds = 1", "seeds = 1\nmax_seeds = 10"),
    ),
    "study-max-seeds-below-seeds": study_case(
        "`evaluate.max_seeds` = 2 is below `evaluate.seeds` = 3, the first look; set "
        "max_seeds >= 3",
        ("seeds = 1", 'seeds = 3\nstopping = "anytime"\nmax_seeds = 2'),
    ),
    "study-anytime-cannot-decide": study_case(
        "`evaluate.max_seeds` = 4 can never give a verdict: with 1 confirmatory comparisons at "
        "alpha 0.05, the anytime test's e-value must reach m/alpha = 20, and after 4 seeds it "
        "cannot exceed 11.2",
        ("seeds = 1", 'seeds = 3\nstopping = "anytime"\nmax_seeds = 4'),
    ),
    "study-sign-flip-too-few-seeds": study_case(
        '`evaluate.seeds` = 5 is too few for `analysis.test` = "sign_flip"',
        ("[evaluate]", ANALYSIS.format('test = "sign_flip"')),
        ("seeds = 1", "seeds = 5"),
    ),
    "study-sign-flip-with-anytime": study_case(
        '`analysis.test` = "sign_flip" is a fixed-design test, but `evaluate.stopping` is '
        '"anytime"',
        ("[evaluate]", ANALYSIS.format('test = "sign_flip"')),
        ("seeds = 1", 'seeds = 6\nstopping = "anytime"\nmax_seeds = 10'),
    ),
    "study-alpha-out-of-range": study_case(
        "`analysis.alpha` must be in (0.0, 0.5)", ("[evaluate]", ANALYSIS.format("alpha = 5"))
    ),
    # -- command-line flags ------------------------------------------------------------------
    "flag-unknown-option": Case(
        (*RUN, "--epoch", "3"),
        "No such option: --epoch (see `cce-bench run --help`)",
        {"study.toml": STUDY},
    ),
    "flag-below-minimum": Case(
        ("data", "prepare", "ham", "--size", "4", "--cache-dir", "cache"),
        "Invalid value for '--size'",
        HAM,
        output="cache",
    ),
    "flag-data-for-synthetic": Case(
        (*RUN, "--data", "ham"),
        "`data.path` (from --data) is set, but source 'synthetic' makes its images in memory",
        {"study.toml": STUDY, **HAM},
    ),
    "flag-unknown-source": prepare_case(
        "ham", "unknown data source 'ham1000'", HAM, "--source", "ham1000"
    ),
    "flag-train-zero-epochs": Case(
        ("train", "--epochs", "0", "--backbone", "resnet50"),
        "run setting epochs = 0 is invalid; it must be >= 1",
    ),
    "flag-train-image-size": Case(
        ("train", "--backbone", "inception_v3", "--image-size", "64"),
        "inception_v3 needs images of at least 75 px, got 64 px",
    ),
    "flag-train-unknown-loss": Case(
        (*TRAIN, "--loss", "cce_tua"),
        "unknown loss 'cce_tua'; known: ce, cce, cce_tau, focal, label_smoothing. Did you mean "
        "'cce_tau'?",
    ),
    # -- data folders and files --------------------------------------------------------------
    "data-folder-missing": prepare_case(
        "nowhere", "nowhere: no such file or folder; check the path.", {}
    ),
    "data-source-not-recognised": prepare_case(
        "ham",
        "ham: cannot tell which source this is",
        {"ham/notes.txt": "no labels here\n", "ham/images": jpegs()},
    ),
    "data-no-metadata": prepare_case(
        "ham",
        "ham: no HAM10000 metadata CSV found directly in this folder; put it there or pass "
        "--metadata PATH.",
        {"ham/images": jpegs()},
        "--source",
        "ham10000",
    ),
    "data-several-metadata": prepare_case(
        "ham",
        "ham: several HAM10000 metadata CSVs (HAM10000_metadata.csv, copy.csv); choose one with "
        "--metadata PATH.",
        ham(**{"copy.csv": metadata()}),
    ),
    "data-column-missing": prepare_case(
        "ham",
        "ham/HAM10000_metadata.csv: required column(s) ['dx'] missing",
        ham(**{CSV: metadata(header=HAM_HEADER.replace(",dx,", ",diag,"))}),
        *("--source", "ham10000", "--metadata", f"ham/{CSV}"),
    ),
    "data-unknown-dx": prepare_case(
        "ham",
        "ham/HAM10000_metadata.csv: unknown dx code(s) ['melanoma'] on lines 4; allowed: akiec, "
        "bcc, bkl, df, mel, nv, vasc.",
        ham(**{CSV: metadata(dx=(*DX[:2], "melanoma", *DX[3:]))}),
    ),
    "data-empty-value": prepare_case(
        "ham",
        "ham/HAM10000_metadata.csv: column 'dx' is empty on 1 row(s), lines 3",
        ham(**{CSV: metadata(dx=(*DX[:1], "", *DX[2:]))}),
    ),
    "data-repeated-id": prepare_case(
        "ham",
        "ham/HAM10000_metadata.csv: image_id 'ISIC_0000001' is listed on lines 3, 4",
        ham(**{CSV: metadata(ids=(*IDS[:2], IDS[1], *IDS[3:]))}),
    ),
    "data-images-missing": prepare_case(
        "ham",
        "ham/HAM10000_metadata.csv: 2 of 21 listed images have no file below ham (first: "
        "ISIC_0000019, ISIC_0000020)",
        ham(images=jpegs(IDS[:-2])),
    ),
    "data-duplicate-image": prepare_case(
        "ham",
        "two files for image ISIC_0000003: ham/images/ISIC_0000003.jpg and "
        "ham/more/ISIC_0000003.png; delete one of them.",
        ham(more=jpegs(IDS[3:4], ".png")),
    ),
    "data-undecodable-jpeg": prepare_case(
        "ham",
        "ham/images/ISIC_0000004.jpg: cannot be decoded as an image",
        ham(**{"images/ISIC_0000004.jpg": b"not a jpeg"}),
    ),
    "data-undecodable-jpeg-in-study": Case(
        RUN,
        "ham/images/ISIC_0000004.jpg: cannot be decoded as an image",
        {"study.toml": HAM_STUDY, **ham(**{"images/ISIC_0000004.jpg": b"not a jpeg"})},
    ),
    "data-npz-arrays-missing": prepare_case(
        "derma",
        "derma/dermamnist.npz: arrays ['train_images', 'train_labels', 'val_images', "
        "'val_labels', 'test_images', 'test_labels'] missing (found ['images', 'labels'])",
        {"derma/dermamnist.npz": npz(images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.zeros(4))},
    ),
    "data-npz-label-out-of-range": prepare_case(
        "derma",
        "derma/dermamnist.npz: train_labels has 1 value(s) outside 0..6 (9) at indices [6]",
        {"derma/dermamnist.npz": npz(**dermamnist_arrays([0, 1, 2, 3, 4, 5, 9]))},
    ),
    "data-csv-pixel-count": prepare_case(
        "hmnist",
        "hmnist/hmnist_8_8_L.csv: 63 pixel columns, expected 64",
        {"hmnist/hmnist_8_8_L.csv": hmnist_csv(63, [*range(7), *range(7)])},
    ),
    "data-csv-label-out-of-range": prepare_case(
        "hmnist",
        "hmnist/hmnist_8_8_L.csv: label has 1 value(s) outside 0..6 (7) at lines 5",
        {"hmnist/hmnist_8_8_L.csv": hmnist_csv(64, [0, 1, 2, 7, 4, 5, 6, *range(7)])},
    ),
    "data-synth-target-not-empty": Case(
        ("data", "synth", "ham", "--n", "10"),
        "ham: exists and is not an empty folder; choose a new OUT_DIR or delete it.",
        HAM,
        output="ham",
    ),
    # -- downloads (every file from a local mirror on 127.0.0.1) ------------------------------
    "download-unknown-name": Case(
        ("data", "download", "ham1000"),
        "unknown dataset 'ham1000'; choose one of ham10000, isic2018-test, dermamnist, "
        "dermamnist-64, dermamnist-128, dermamnist-224 (`cce-bench data download --list` shows "
        "them). Did you mean 'ham10000'?",
        output="data",
    ),
    "download-terms-not-accepted": Case(
        ("data", "download", "ham10000"),
        "ham10000 has terms of use (printed above); read them, then pass --accept-terms",
        output="data",
    ),
    "download-target-not-empty": Case(
        ("data", "download", "dermamnist", "--to", "derma"),
        "derma: exists and is not empty; choose a new --to or delete it.",
        {"derma/notes.txt": "mine\n"},
        output="derma",
    ),
    "download-not-found": download_case(
        "dermamnist",
        "dermamnist.npz answered 404 Not Found; put dermamnist.npz on the mirror, or unset "
        "CCE_BENCH_DOWNLOAD_BASE to fetch it from its publisher (nothing was kept)",
        dict,
    ),
    "download-checksum-mismatch": download_case(
        "dermamnist",
        "differs from the published 0744692d530f8e62ec473284d019b0c7 (from http://127.0.0.1:",
        npz_served(),
    ),
    "download-timeout": download_case(
        "dermamnist",
        "within 1 s (3 tries); check the network or pass a longer --timeout, then run the same "
        "command again",
        npz_served(hang=True),
        "--timeout",
        "1",
    ),
    "download-server-stopped": download_case(
        "dermamnist",
        "stopped sending after 1,000 of ",
        npz_served(stop_at=1000),
        output="data/dermamnist",  # the bytes received stay in data/.dermamnist.download
    ),
    "download-unreachable": Case(
        ("data", "download", "dermamnist"),
        "dermamnist.npz: cannot reach 127.0.0.1:1 (",
        env={"CCE_BENCH_DOWNLOAD_BASE": "http://127.0.0.1:1"},
        output="data",
    ),
    "download-disk-full": download_case(
        "dermamnist",
        "/data/.dermamnist.download/files/dermamnist.npz.part: no room left to write (",
        lambda: {"/dermamnist.npz": bytes(300_000)},
        max_file_kb=64,
    ),
    "download-unsafe-archive": download_case(
        "isic2018-test",
        "ISIC2018_Task3_Test_Input.zip: entry '../evil.txt' would be written outside",
        isic_served(**{ISIC_INPUT: lambda: zip_of({"../evil.txt": b"gotcha\n"})}),
    ),
    "download-zip-bomb": download_case(
        "isic2018-test",
        "ISIC2018_Task3_Test_GroundTruth.zip: unpacks to more than 64,000,000 bytes "
        "(65,000,000 declared); refused as a zip bomb and nothing was kept",
        isic_served(**{ISIC_TRUTH: lambda: zip_of({"zeros.csv": bytes(65_000_000)})}),
    ),
    "download-lock-mismatch": download_case(
        "isic2018-test",
        "data/isic2018-test.lock.json at its first download (date unknown); the file on the "
        "server changed since, or this copy is damaged",
        isic_served(),
        files={"data/isic2018-test.lock.json": json.dumps(ISIC_LOCK)},
    ),
    # -- storage URLs ------------------------------------------------------------------------
    "storage-malformed": Case(
        (*RUN, "--storage", "optuna.db"),
        "cannot open Optuna storage optuna.db: Could not parse SQLAlchemy URL",
        {"study.toml": STUDY},
    ),
    "storage-unreachable": Case(
        (*RUN, "--storage", "sqlite:///missing/optuna.db"),
        "cannot open Optuna storage sqlite:///missing/optuna.db: (sqlite3.OperationalError) "
        "unable to open database file",
        {"study.toml": STUDY},
    ),
    "storage-server-unreachable": Case(
        (*RUN, "--storage", "postgresql://user:s3cret@127.0.0.1:1/db"),
        "cannot open Optuna storage postgresql://user:***@127.0.0.1:1/db: ",
        {"study.toml": STUDY},
    ),
    "storage-differs-from-recorded": Case(
        (*RUN, "--storage", "sqlite:///other.db"),
        "was run with storage sqlite:///",
        {"study.toml": STUDY, **STARTED},
    ),
    "storage-password-not-recorded": Case(
        ("status", "results/tiny"),
        "storage postgresql://user:***@db.example:5432/optuna was recorded without its password; "
        "pass --storage with the full URL",
        {**STARTED, "results/tiny/storage.txt": "postgresql://user:***@db.example:5432/optuna\n"},
    ),
    # -- Ray cluster -------------------------------------------------------------------------
    "address-no-cluster": Case(
        (*RUN, "--address", "127.0.0.1:1"),
        "no Ray cluster answers at --address 127.0.0.1:1 (Connection refused)",
        {"study.toml": STUDY},
    ),
    "address-malformed": Case(
        (*RUN, "--address", "head-node"),
        "--address 'head-node' is not HOST:PORT or `auto`; pass e.g. 10.0.0.5:6379",
        {"study.toml": STUDY},
    ),
    # -- results folder ----------------------------------------------------------------------
    "results-not-writable": Case(
        ("run", "study.toml", "--results-dir", "results/inside-a-file"),
        "cannot create results folder results/inside-a-file/tiny: results is not a writable folder",
        {"study.toml": STUDY, "results": "a regular file, so no one (root included) can mkdir\n"},
    ),
    "results-study-changed": Case(
        RUN,
        "results/tiny holds results of a different study (train.epochs: 2 -> 1); only "
        "tune.n_trials, evaluate.seeds, evaluate.max_seeds, data.path and [resources] may "
        "change; pass --fresh",
        {
            "study.toml": STUDY,
            "results/tiny/study.toml": stored_study(("^epochs = 1$", "epochs = 2")),
        },
    ),
    "results-analysis-changed": Case(
        RUN,
        "results/tiny holds results of a different study (analysis.margin: 0.02 -> 0.01)",
        {
            "study.toml": STUDY,
            "results/tiny/study.toml": stored_study(("^margin = 0.01$", "margin = 0.02")),
        },
    ),
    "results-weights-changed": Case(
        RUN,
        "w.pt, the weights file of test_resnet, has SHA-256 ",
        {
            "study.toml": WEIGHTS_STUDY,
            "w.pt": torch_file(timm_weights("test_resnet")),
            "results/tiny/study.toml": stored_study(text=WEIGHTS_STUDY),
            "results/tiny/runs.jsonl": json.dumps(
                {
                    "phase": "evaluate",
                    "backbone": "test_resnet",
                    "arm": "ce",
                    "seed": 0,
                    "outcome": "completed",
                    "spec": {"pretrained_sha256": "0" * 64},
                }
            )
            + "\n",
        },
    ),
    "results-runs-corrupt": Case(
        RUN,
        "results/tiny/runs.jsonl line 2 is not a complete JSON record; restore the file from a "
        "backup or start over with --fresh",
        {
            "study.toml": STUDY,
            **STARTED,
            "results/tiny/runs.jsonl": '{"phase": "evaluate"}\n{"phase": "eval\n{"seed": 1}\n',
        },
    ),
    "results-in-use": Case(
        RUN,
        "another cce-bench is running on results/tiny",
        {"study.toml": STUDY, **STARTED},
        hold=folder_locked,
    ),
    "results-not-a-study": Case(
        ("report", "results"),
        "results/study.toml is missing: results is not a study results folder",
        {"results/notes.txt": "not a study\n"},
    ),
    "results-no-evaluation-yet": Case(
        ("report", "results/tiny"), "results/tiny/runs.jsonl holds no evaluation run yet", STARTED
    ),
    "results-dashboard-port-busy": Case(
        ("dashboard", "results/tiny", "--port", "{port}"),
        "optuna-dashboard cannot listen on 127.0.0.1:",
        {**STARTED, "results/tiny/optuna.db": optuna_db},
        hold=port_taken,
    ),
    # -- weights files -----------------------------------------------------------------------
    "weights-full-model": Case(
        (*TRAIN, "--weights", "model.pt"),
        "model.pt is not a state dict that loads safely (UnpicklingError): a pickled full model "
        "is refused (weights_only=True)",
        {"model.pt": torch_file(full_model)},
    ),
    "weights-file-missing": Case(
        (*TRAIN, "--weights", "nosuch.pt"),
        "Invalid value for '--weights': file 'nosuch.pt' does not exist",
    ),
}


# -- running a case --------------------------------------------------------------------------
def write_files(case_dir: Path, files: dict[str, Content]) -> None:
    for name, content in files.items():
        path = case_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content(path)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry below ``folder``: file bytes, or None for a folder."""
    if not folder.is_dir():
        return {}
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() if path.is_file() else None
        for path in sorted(folder.rglob("*"))
    }


def changes(before: dict[str, bytes | None], after: dict[str, bytes | None]) -> list[str]:
    """Entries created, changed or removed; a lock file in a folder that existed is allowed."""
    missing = object()
    changed = {key for key in after if after[key] != before.get(key, missing)}
    changed |= before.keys() - after.keys()

    def allowed(key: str) -> bool:
        parent = key.rpartition("/")[0]
        return key.rpartition("/")[2] == LOCK_FILE and parent in before

    return sorted(key for key in changed if not allowed(key))


def cli_command(argv: tuple[str, ...]) -> list[str]:
    """``cce-bench ARGS``: the installed console script, else its entry point."""
    script = Path(sys.executable).with_name("cce-bench")
    if script.is_file():
        return [str(script), *argv]
    return [sys.executable, "-c", "from cce_bench.cli import main; main()", *argv]


def run_cli(
    case_dir: Path,
    argv: list[str],
    limit_s: float,
    extra_env: dict[str, str] | None = None,
    max_file_kb: int | None = None,
) -> tuple[int | None, str, str, bool]:
    """Run in ``case_dir`` with a private cache; past ``limit_s`` its process group is stopped."""
    env = {
        **os.environ,
        "CCE_BENCH_CACHE_DIR": str(case_dir / "cache"),
        "HF_HUB_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        **(extra_env or {}),
    }
    command = cli_command(tuple(argv))
    if max_file_kb is not None:  # bash's ulimit counts 1024-byte blocks
        command = ["bash", "-c", 'ulimit -f "$0" && exec "$@"', str(max_file_kb), *command]
    process = subprocess.Popen(
        command,
        cwd=case_dir,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # one process group: Ray's processes included, if it hangs
    )
    try:
        stdout, stderr = process.communicate(timeout=limit_s)
        return process.returncode, stdout, stderr, False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)  # Ray's driver shuts its own processes down
        try:
            stdout, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        return None, stdout, stderr, True


def run_cli_in_process(
    case_dir: Path, argv: list[str], extra_env: dict[str, str]
) -> tuple[int | None, str, str, bool]:
    """The console script's ``main`` in this process, in ``case_dir`` with a private cache.

    A bug's traceback lands in the returned stderr (so the test's no-traceback check fails with
    it), and a Ray this case left running is shut down and reported the same way.
    """
    env = {"CCE_BENCH_CACHE_DIR": str(case_dir / "cache"), **extra_env}
    previous = Path.cwd()
    bug = ""
    with CliRunner().isolation(env=env) as (stdout, stderr, _output):
        os.chdir(case_dir)
        try:
            cli_main(list(argv))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        except Exception:
            code, bug = 1, traceback.format_exc()
        finally:
            os.chdir(previous)
            sys.stdout.flush()
            sys.stderr.flush()
        out, err = stdout.getvalue().decode(), stderr.getvalue().decode()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
        bug += "Traceback (most recent call last): the case left Ray running in the test process"
    return code, out, err + bug, False


def run_case(case: Case, case_dir: Path, *, in_subprocess: bool) -> Outcome:
    with contextlib.ExitStack() as stack:
        values = stack.enter_context(case.hold(case_dir)) if case.hold else {}
        before = snapshot(case_dir / case.output)
        argv = [part.format(**values) for part in case.argv]
        env = {key: value.format(**values) for key, value in case.env.items()}
        started = time.monotonic()
        if in_subprocess:
            code, stdout, stderr, timed_out = run_cli(
                case_dir, argv, case.limit_s, env, case.max_file_kb
            )
        else:
            code, stdout, stderr, timed_out = run_cli_in_process(case_dir, argv, env)
        seconds = time.monotonic() - started
    written = changes(before, snapshot(case_dir / case.output))
    return Outcome(code, stdout, stderr, seconds, timed_out, written)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> Iterator[dict[str, Future[Outcome]]]:
    """Start every selected subprocess case at once; each test then waits for its own, and
    runs an in-process case itself, while the subprocess cases go on in the pool."""
    futures: dict[str, Future[Outcome]] = {}
    with ThreadPoolExecutor(WORKERS) as pool:
        for case_id in _selected_case_ids(request):
            case = CASES[case_id]
            if not case.in_subprocess(case_id):
                continue
            case_dir = tmp_path_factory.mktemp(case_id)
            # On this thread: the file writers import torch and PIL, which must not race.
            write_files(case_dir, case.files)
            futures[case_id] = pool.submit(run_case, case, case_dir, in_subprocess=True)
        yield futures


def outcome_of(case_id: str, outcomes: dict[str, Future[Outcome]], tmp_path: Path) -> Outcome:
    """The subprocess case's result from the pool, or the in-process case run now."""
    if case_id in outcomes:
        return outcomes[case_id].result()
    case = CASES[case_id]
    write_files(tmp_path, case.files)
    return run_case(case, tmp_path, in_subprocess=False)


def _selected_case_ids(request) -> list[str]:
    """The cases this session runs (all, or those picked with -k), Ray's first."""
    ids = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if item.module is request.module and callspec and "case_id" in callspec.params:
            ids.append(callspec.params["case_id"])
    ids = [case_id for case_id in ids if not (CASES[case_id].needs_no_gpu and GPU_PRESENT)]
    return sorted(set(ids), key=lambda case_id: not CASES[case_id].starts_ray)


# -- the catalogue ---------------------------------------------------------------------------
def catalogue_rows() -> dict[str, dict[str, str]]:
    """docs/errors.md's rows by id: ``| `id` | input | ``message`` | fix |``."""
    rows = {}
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\|\s*`([a-z0-9-]+)`\s*\|(.+)\|\s*", line)
        if match:
            cells = [cell.strip() for cell in match.group(2).split(" | ")]
            assert len(cells) == 3, f"row {match.group(1)} needs input | message | fix: {line}"
            message = cells[1].removeprefix("``").removesuffix("``").strip()
            rows[match.group(1)] = {"input": cells[0], "message": message, "fix": cells[2]}
    return rows


def test_catalogue_lists_at_least_25_bad_inputs_each_with_a_fix():
    rows = catalogue_rows()
    assert len(rows) >= 25
    assert all(row["input"] and row["message"] and row["fix"] for row in rows.values())


def test_every_catalogue_row_has_a_case_and_every_case_a_row():
    rows = catalogue_rows()
    assert sorted(set(rows) - set(CASES)) == [], "rows without a test case"
    assert sorted(set(CASES) - set(rows)) == [], "test cases without a row in docs/errors.md"


def _params() -> list:
    """One parameter per case; a known defect is a strict xfail, so its fix is noticed."""

    def marks(case: Case) -> list:
        found = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        if case.needs_no_gpu:
            found.append(pytest.mark.skipif(GPU_PRESENT, reason="a GPU is present here"))
        return found

    return [pytest.param(case_id, id=case_id, marks=marks(case)) for case_id, case in CASES.items()]


@pytest.mark.parametrize("case_id", _params())
def test_bad_input_exits_2_with_its_documented_line_and_writes_nothing(case_id, outcomes, tmp_path):
    case = CASES[case_id]
    documented = catalogue_rows().get(case_id, {}).get("message", "")
    assert case.expect in documented, "docs/errors.md's message lacks the part the test checks"
    outcome = outcome_of(case_id, outcomes, tmp_path)
    assert not outcome.timed_out, f"still running after {case.limit_s:.0f} s"
    lines = outcome.stderr.rstrip("\n").split("\n")
    assert "Traceback (most recent call last)" not in outcome.stderr + outcome.stdout
    assert outcome.returncode == 2, outcome.stderr[-2000:]
    assert len(lines) == 1, f"stderr has {len(lines)} lines:\n{outcome.stderr}"
    assert case.expect in lines[0]
    assert outcome.written == [], f"{case.output}/ changed: {outcome.written}"
