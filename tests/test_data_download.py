"""`cce-bench data download`: every dataset from a local server, resumed, verified, unpacked safely.

The files come from ``download_server``: small files in each dataset's real layout and names,
served on 127.0.0.1 with Range support and on-demand misbehaviour. The catalogue the tests use
is the shipped one with only the checksums and sizes swapped for the miniatures' (the shipped
values are checked on their own). No test reaches a real host: ``loopback_only`` refuses any
other connection.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from download_server import (
    Served,
    catalogue_for,
    dermamnist_file,
    ham10000_files,
    isic2018_test_files,
    jpeg,
    mirror_routes,
    published_files,
    serving,
    zip_of,
)

from cce_bench.cli import main
from cce_bench.data import catalogue, download, fetch
from cce_bench.data.download import MARKER, download_dataset, shipped_study
from cce_bench.data.unpack import ArchiveTooLargeError, UnsafeArchiveError, unpack_zip
from cce_bench.errors import CceBenchError

REPO = Path(__file__).resolve().parents[1]
LISTING = "/api/datasets/:persistentId/versions/:latest/files?persistentId=doi:10.7910/DVN/DBW86T"
NPZ = "dermamnist.npz"


pytestmark = pytest.mark.usefixtures("loopback_only")


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """The command's exit code, stdout and stderr; --quiet keeps progress lines off stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--quiet", "data", "download", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _serve_as_published(monkeypatch, files: dict[str, bytes]) -> None:
    """The catalogue for these miniature files (the shipped one, other checksums)."""
    monkeypatch.setattr(catalogue, "DATASETS", catalogue_for(files))


def _download_ham10000(folder: Path, mirror: str) -> download.DownloadResult:
    return download_dataset("ham10000", folder, accept_terms=True, mirror=mirror)


def _entries(folder: Path) -> list[str]:
    """Everything below ``folder`` (hidden entries too), relative, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# -- the shipped table ------------------------------------------------------------------------
def test_the_shipped_table_pins_the_published_ids_sizes_and_checksums():
    ham = {file.name: file for file in catalogue.DATASETS["ham10000"].files}
    datafile = "https://dataverse.harvard.edu/api/access/datafile"
    assert ham["HAM10000_images_part_1.zip"].url == f"{datafile}/3172585"
    assert ham["HAM10000_images_part_1.zip"].size == 1_366_522_108
    assert ham["HAM10000_images_part_1.zip"].md5 == "4639bfa73ab251610530a97c898e6e46"
    assert ham["HAM10000_images_part_2.zip"].url == f"{datafile}/3172584"
    assert ham["HAM10000_images_part_2.zip"].size == 1_403_566_547
    assert ham["HAM10000_images_part_2.zip"].md5 == "da43d6cc50f6613013be07e8986b384b"
    assert ham["HAM10000_metadata.csv"].url == f"{datafile}/4338392?format=original"
    assert ham["HAM10000_metadata.csv"].md5 == "8f85fb1aa29d80a2797247e434deb79d"
    assert catalogue.DATASETS["ham10000"].dataverse.doi == "doi:10.7910/DVN/DBW86T"
    isic = catalogue.DATASETS["isic2018-test"]
    assert [file.url for file in isic.files] == [
        "https://isic-challenge-data.s3.amazonaws.com/2018/ISIC2018_Task3_Test_Input.zip",
        "https://isic-challenge-data.s3.amazonaws.com/2018/ISIC2018_Task3_Test_GroundTruth.zip",
    ]
    assert isic.needs_lock and all(file.md5 is None for file in isic.files)
    medmnist = {
        "dermamnist": ("dermamnist.npz", "0744692d530f8e62ec473284d019b0c7"),
        "dermamnist-64": ("dermamnist_64.npz", "b70a2f5635c6199aeaa28c31d7202e1f"),
        "dermamnist-128": ("dermamnist_128.npz", "2defd784463fa5243564e855ed717de1"),
        "dermamnist-224": ("dermamnist_224.npz", "8974907d8e169bef5f5b96bc506ae45d"),
    }
    for name, (file_name, md5) in medmnist.items():
        (file,) = catalogue.DATASETS[name].files
        assert file.url == f"https://zenodo.org/records/10519652/files/{file_name}?download=1"
        assert (file.name, file.md5) == (file_name, md5)


def test_every_archive_has_a_ceiling_and_mirror_names_are_the_published_file_names():
    for dataset in catalogue.DATASETS.values():
        for file in dataset.files:
            assert file.unpack_to is None or file.max_unpacked, file.name
            if dataset.dataverse is None:
                assert file.url.split("?")[0].rsplit("/", 1)[1] == file.name


def test_every_download_failure_is_a_cce_bench_error():
    from cce_bench.data import unpack

    for module in (download, fetch, unpack):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Exception)
                and value.__module__ == module.__name__
            ):
                assert issubclass(value, CceBenchError) or value.__name__.startswith("_"), value


def test_list_shows_each_dataset_with_its_size_licence_and_source(capsys):
    code, out, _ = _cli(capsys, "--list")
    assert code == 0
    for name in catalogue.DATASETS:
        assert name in out
    assert "CC BY-NC 4.0" in out
    assert "about 2.77 GB" in out  # the metadata's size is not published
    assert "DBW86T" in out and "10519652" in out


def test_an_unknown_dataset_name_suggests_the_closest(capsys):
    code, _, err = _cli(capsys, "ham1000")
    assert code == 2
    assert "unknown dataset 'ham1000'" in err and "Did you mean 'ham10000'?" in err


# -- success for every dataset --------------------------------------------------------------
@pytest.mark.parametrize("name", list(catalogue.DATASETS))
def test_each_dataset_comes_from_the_mirror_into_a_folder_that_data_check_accepts(
    name, tmp_path, monkeypatch, capsys
):
    files = published_files(name)
    _serve_as_published(monkeypatch, files)
    with serving(mirror_routes(files)) as server:
        monkeypatch.setenv("CCE_BENCH_DOWNLOAD_BASE", server.url)
        code, out, err = _cli(capsys, name, "--to", str(tmp_path / "data"), "--accept-terms")
    assert code == 0, err
    assert sorted(path for path, _ in server.requests) == sorted(f"/{f}" for f in files)
    assert "problems" in out and "next:" in out and "cce-bench run" in out
    assert (tmp_path / "data" / MARKER).is_file()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "data"]
    assert leftovers == (["isic2018-test.lock.json"] if name == "isic2018-test" else [])


def test_ham10000_unpacks_both_zip_shapes_into_the_part_folders(tmp_path, monkeypatch):
    files = ham10000_files()
    _serve_as_published(monkeypatch, files)
    with serving(mirror_routes(files)) as server:
        result = download_dataset(
            "ham10000", tmp_path / "ham", accept_terms=True, mirror=server.url
        )
    entries = _entries(tmp_path / "ham")
    assert "HAM10000_metadata.csv" in entries
    assert "HAM10000_images_part_1/ISIC_0024306.jpg" in entries  # zipped at the top
    assert "HAM10000_images_part_2/ISIC_0024320.jpg" in entries  # zipped in its folder
    assert result.check.ok and result.check.images == 28 and result.check.lesions == 14


def test_the_next_command_runs_the_shipped_study_on_the_folder(tmp_path, monkeypatch):
    files = {**ham10000_files(), **dermamnist_file("dermamnist_64.npz")}
    _serve_as_published(monkeypatch, files)
    with serving(mirror_routes(files)) as server:
        ham = _download_ham10000(tmp_path / "ham", server.url)
        derma = download_dataset("dermamnist-64", tmp_path / "d64", mirror=server.url)
    lesion, dermamnist = shipped_study("lesion-ham10000.toml"), shipped_study("dermamnist.toml")
    assert ham.next_steps == (f"cce-bench run {lesion} --data {tmp_path / 'ham'}",)
    npz = tmp_path / "d64" / "dermamnist_64.npz"
    assert derma.next_steps == (f"cce-bench run {dermamnist} --data {npz}",)


def test_the_lesion_study_starts_from_a_downloaded_folder(tmp_path, monkeypatch):
    """What `cce-bench run studies/lesion-ham10000.toml --data DIR` does before Ray starts:
    validate the study with that data path, then load, split and cache the data."""
    from cce_bench.config import load_study
    from cce_bench.data.pipeline import load_run_data

    files = ham10000_files()
    _serve_as_published(monkeypatch, files)
    with serving(mirror_routes(files)) as server:
        result = download_dataset(
            "ham10000", tmp_path / "ham", accept_terms=True, mirror=server.url
        )
    spec = load_study(REPO / "studies" / "lesion-ham10000.toml", data_path=result.folder)
    assert spec.data.path == result.folder
    data = spec.data
    _, prepared, _ = load_run_data(
        data.source,
        data.path,
        image_size=16,
        split=data.split,
        test_fraction=data.test_fraction,
        val_fraction=data.val_fraction,
        split_seed=data.split_seed,
        cache_dir=tmp_path / "cache",
    )
    assert all(len(prepared.parts[part]) for part in ("train", "val", "test"))


def test_progress_reports_bytes_with_their_total(tmp_path, monkeypatch):
    files = dermamnist_file()
    _serve_as_published(monkeypatch, files)
    seen = []
    with serving(mirror_routes(files)) as server:
        download_dataset(
            "dermamnist", tmp_path / "d", mirror=server.url, progress=lambda *a: seen.append(a)
        )
    assert (NPZ, len(files[NPZ]), len(files[NPZ])) in seen
    assert (f"checking {NPZ}", len(files[NPZ]), len(files[NPZ])) in seen


# -- Dataverse names ------------------------------------------------------------------------
def _listing(ids: dict[str, int]) -> bytes:
    """Dataverse's file list: the metadata listed as its ingested ``.tab``."""
    entries = [
        {"label": label, "dataFile": {"id": file_id, "filename": label}}
        for label, file_id in ids.items()
    ]
    entries[-1]["dataFile"]["originalFileName"] = "HAM10000_metadata.csv"
    return json.dumps({"status": "OK", "data": entries}).encode()


def test_dataverse_file_names_are_resolved_to_their_current_ids(tmp_path):
    files = ham10000_files()
    ids = {"HAM10000_images_part_1.zip": 9001, "HAM10000_images_part_2.zip": 9002}
    ids["HAM10000_metadata.tab"] = 9003
    routes = {
        LISTING: Served(_listing(ids), content_type="application/json"),
        "/api/access/datafile/9001": files["HAM10000_images_part_1.zip"],
        "/api/access/datafile/9002": files["HAM10000_images_part_2.zip"],
        "/api/access/datafile/9003?format=original": files["HAM10000_metadata.csv"],
        "/api/access/datafile/9003": b"lesion_id\timage_id\tdx\n",  # the re-exported .tab
    }
    with serving(routes) as server:
        table = catalogue_for(files, dataverse=server.url)
        result = download_dataset("ham10000", tmp_path / "ham", accept_terms=True, datasets=table)
    assert result.check.ok and len(result.notes) == 3  # one per file fetched by name
    assert "/api/access/datafile/9003?format=original" in [path for path, _ in server.requests]


def test_dataverse_files_are_fetched_by_their_pinned_ids_without_asking_the_file_list(tmp_path):
    files = ham10000_files()
    routes = {
        LISTING: Served(status=500),
        "/api/access/datafile/3172585": files["HAM10000_images_part_1.zip"],
        "/api/access/datafile/3172584": files["HAM10000_images_part_2.zip"],
        "/api/access/datafile/4338392?format=original": files["HAM10000_metadata.csv"],
    }
    with serving(routes) as server:
        table = catalogue_for(files, dataverse=server.url)
        result = download_dataset("ham10000", tmp_path / "ham", accept_terms=True, datasets=table)
    assert result.check.ok and result.notes == ()
    assert LISTING not in [path for path, _ in server.requests]


def test_the_terms_are_printed_and_nothing_is_fetched_until_they_are_accepted(
    tmp_path, monkeypatch, capsys
):
    files = ham10000_files()
    _serve_as_published(monkeypatch, files)
    with serving(mirror_routes(files)) as server:
        monkeypatch.setenv("CCE_BENCH_DOWNLOAD_BASE", server.url)
        code, out, err = _cli(capsys, "ham10000", "--to", str(tmp_path / "ham"))
    assert code == 2
    assert "Terms tab" in out and "CC BY-NC 4.0" in out
    assert err.count("\n") == 1 and "--accept-terms" in err
    assert server.requests == [] and _entries(tmp_path) == []


# -- interruption and resume ----------------------------------------------------------------
def test_a_download_stopped_mid_file_resumes_with_range_on_the_next_command(
    tmp_path, monkeypatch, capsys
):
    files = dermamnist_file()
    body = files[NPZ]
    half = len(body) // 2
    _serve_as_published(monkeypatch, files)
    target = tmp_path / "derma"
    with serving({f"/{NPZ}": Served(body, stop_at=half)}) as server:
        monkeypatch.setenv("CCE_BENCH_DOWNLOAD_BASE", server.url)
        code, _, err = _cli(capsys, "dermamnist", "--to", str(target))
        assert code == 2 and err.count("\n") == 1
        assert f"stopped sending after {half:,} of {len(body):,} bytes" in err
        assert "run the same command again to resume" in err
        assert not target.exists()  # nothing that looks like a dataset
        assert (tmp_path / ".derma.download" / "files" / f"{NPZ}.part").stat().st_size == half
        server.routes[f"/{NPZ}"] = Served(body)
        code, _, err = _cli(capsys, "dermamnist", "--to", str(target))
    assert code == 0, err
    assert server.ranges(f"/{NPZ}")[-1] == f"bytes={half}-"
    assert (target / NPZ).read_bytes() == body
    assert _entries(tmp_path) == ["derma", f"derma/{MARKER}", f"derma/{NPZ}"]


def test_a_connection_dropped_once_is_resumed_within_the_same_command(tmp_path, monkeypatch):
    files = dermamnist_file()
    body = files[NPZ]
    _serve_as_published(monkeypatch, files)
    with serving({f"/{NPZ}": Served(body, stop_at=100, stop_times=1)}) as server:
        download_dataset("dermamnist", tmp_path / "d", mirror=server.url)
    assert server.ranges(f"/{NPZ}") == [None, "bytes=100-"]
    assert (tmp_path / "d" / NPZ).read_bytes() == body


def test_a_server_that_ignores_the_range_sends_the_whole_file_again(tmp_path, monkeypatch):
    files = dermamnist_file()
    body = files[NPZ]
    _serve_as_published(monkeypatch, files)
    route = Served(body, stop_at=100, stop_times=1, ignore_range=True)
    with serving({f"/{NPZ}": route}) as server:
        download_dataset("dermamnist", tmp_path / "d", mirror=server.url)
    assert (tmp_path / "d" / NPZ).read_bytes() == body


def test_an_interrupted_unpack_never_looks_finished_and_the_next_command_completes(
    tmp_path, monkeypatch
):
    files = ham10000_files()
    _serve_as_published(monkeypatch, files)

    def interrupt(task: str, done: int, total: int | None) -> None:
        if task.startswith("unpacking HAM10000_images_part_2"):
            raise KeyboardInterrupt

    target = tmp_path / "ham"
    with serving(mirror_routes(files)) as server:
        with pytest.raises(KeyboardInterrupt):
            download_dataset(
                "ham10000", target, accept_terms=True, mirror=server.url, progress=interrupt
            )
        assert not target.exists()
        fetched = len(server.requests)
        result = download_dataset("ham10000", target, accept_terms=True, mirror=server.url)
    # Every byte received was kept: only the file not reached before the interrupt is fetched.
    assert [path for path, _ in server.requests[fetched:]] == ["/HAM10000_metadata.csv"]
    assert result.check.ok and not (tmp_path / ".ham.download").exists()


def test_a_part_file_already_whole_is_kept_when_the_server_refuses_the_range(tmp_path, monkeypatch):
    files = dermamnist_file()
    _serve_as_published(monkeypatch, files)
    part = tmp_path / ".d.download" / "files" / f"{NPZ}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(files[NPZ])  # interrupted after the last byte, before the rename
    with serving(mirror_routes(files)) as server:
        result = download_dataset("dermamnist", tmp_path / "d", mirror=server.url)
    assert server.ranges(f"/{NPZ}") == [f"bytes={len(files[NPZ])}-"]  # answered 416
    assert result.check.ok and _entries(tmp_path) == ["d", f"d/{MARKER}", f"d/{NPZ}"]


def test_an_empty_target_folder_is_filled(tmp_path, monkeypatch):
    files = dermamnist_file()
    _serve_as_published(monkeypatch, files)
    (tmp_path / "d").mkdir()
    with serving(mirror_routes(files)) as server:
        result = download_dataset("dermamnist", tmp_path / "d", mirror=server.url)
    assert result.fetched and (tmp_path / "d" / NPZ).read_bytes() == files[NPZ]


def test_a_finished_download_is_recognised_and_not_fetched_again(tmp_path, monkeypatch, capsys):
    files = dermamnist_file()
    _serve_as_published(monkeypatch, files)
    with serving(mirror_routes(files)) as server:
        monkeypatch.setenv("CCE_BENCH_DOWNLOAD_BASE", server.url)
        assert _cli(capsys, "dermamnist", "--to", str(tmp_path / "d"))[0] == 0
        code, out, _ = _cli(capsys, "dermamnist", "--to", str(tmp_path / "d"))
    assert code == 0 and "already downloaded" in out
    assert len(server.requests) == 1


# -- failures: one line, exit 2, nothing half-written ---------------------------------------
def test_a_wrong_checksum_exits_2_and_keeps_nothing(tmp_path, monkeypatch, capsys):
    files = dermamnist_file()
    _serve_as_published(monkeypatch, files)
    damaged = bytes([files[NPZ][0] ^ 1]) + files[NPZ][1:]
    with serving({f"/{NPZ}": damaged}) as server:
        monkeypatch.setenv("CCE_BENCH_DOWNLOAD_BASE", server.url)
        code, _, err = _cli(capsys, "dermamnist", "--to", str(tmp_path / "data" / "d"))
    assert code == 2 and err.count("\n") == 1
    assert f"MD5 {hashlib.md5(damaged).hexdigest()} differs from the published" in err
    assert _entries(tmp_path) == []


def test_a_size_other_than_the_published_one_is_refused_before_the_body(tmp_path, monkeypatch):
    files = ham10000_files()
    _serve_as_published(monkeypatch, files)
    routes = mirror_routes({**files, "HAM10000_images_part_1.zip": b"x" * 10})
    with serving(routes) as server, pytest.raises(fetch.WrongSizeError, match="announces 10 bytes"):
        _download_ham10000(tmp_path / "ham", server.url)
    assert _entries(tmp_path) == []


def test_a_404_exits_2_with_the_fix_and_keeps_only_the_files_already_verified(
    tmp_path, monkeypatch, capsys
):
    files = ham10000_files()
    _serve_as_published(monkeypatch, files)
    routes = mirror_routes({k: v for k, v in files.items() if k != "HAM10000_metadata.csv"})
    with serving(routes) as server:
        monkeypatch.setenv("CCE_BENCH_DOWNLOAD_BASE", server.url)
        code, _, err = _cli(capsys, "ham10000", "--to", str(tmp_path / "ham"), "--accept-terms")
    assert code == 2 and err.count("\n") == 1
    assert "HAM10000_metadata.csv" in err and "404" in err and "put HAM10000_metadata.csv on" in err
    assert "kept the verified HAM10000_images_part_1.zip, HAM10000_images_part_2.zip" in err
    assert not (tmp_path / "ham").exists()
    assert not any("metadata" in entry for entry in _entries(tmp_path))


def test_a_timeout_exits_2_with_the_fix_and_keeps_nothing(tmp_path, monkeypatch, capsys):
    files = dermamnist_file()
    _serve_as_published(monkeypatch, files)
    with serving({f"/{NPZ}": Served(hang=True)}) as server:
        monkeypatch.setenv("CCE_BENCH_DOWNLOAD_BASE", server.url)
        code, _, err = _cli(capsys, "dermamnist", "--to", str(tmp_path / "d"), "--timeout", "0.2")
    assert code == 2 and err.count("\n") == 1
    assert "no answer from 127.0.0.1" in err and "within 0.2 s (3 tries)" in err
    assert "--timeout" in err
    assert _entries(tmp_path) == []  # nothing arrived, so nothing is kept to resume


class _NoRoom:
    """A file whose every write fails as on a full disk."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def __enter__(self) -> _NoRoom:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_downloading_exits_2_and_keeps_nothing(tmp_path, monkeypatch, capsys):
    files = dermamnist_file()
    _serve_as_published(monkeypatch, files)
    no_room = lambda *args, **kwargs: _NoRoom(open(*args, **kwargs))  # noqa: E731, SIM115
    monkeypatch.setattr(fetch, "open", no_room, raising=False)
    with serving(mirror_routes(files)) as server:
        monkeypatch.setenv("CCE_BENCH_DOWNLOAD_BASE", server.url)
        code, _, err = _cli(capsys, "dermamnist", "--to", str(tmp_path / "data" / "d"))
    assert code == 2 and err.count("\n") == 1
    assert "no room left to write (No space left on device)" in err and "--to" in err
    assert _entries(tmp_path) == []


def test_a_full_disk_while_unpacking_exits_2_and_keeps_nothing(tmp_path, monkeypatch, capsys):
    files = isic2018_test_files()
    _serve_as_published(monkeypatch, files)
    fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: _NoRoom(fdopen(*a, **k)))
    with serving(mirror_routes(files)) as server:
        monkeypatch.setenv("CCE_BENCH_DOWNLOAD_BASE", server.url)
        code, _, err = _cli(capsys, "isic2018-test", "--to", str(tmp_path / "isic"))
    assert code == 2 and err.count("\n") == 1 and "no room left to write" in err
    assert _entries(tmp_path) == []


def test_too_little_free_space_is_refused_before_anything_is_fetched(tmp_path, monkeypatch, capsys):
    files = ham10000_files()
    _serve_as_published(monkeypatch, files)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10, 9, 1))
    with serving(mirror_routes(files)) as server:
        monkeypatch.setenv("CCE_BENCH_DOWNLOAD_BASE", server.url)
        code, _, err = _cli(capsys, "ham10000", "--to", str(tmp_path / "ham"), "--accept-terms")
    assert code == 2 and "1 bytes free, but ham10000 needs about 5.54 GB more" in err
    assert server.requests == [] and _entries(tmp_path) == []


def test_a_zip_with_parent_entries_is_refused_and_writes_nothing_outside(
    tmp_path, monkeypatch, capsys
):
    files = isic2018_test_files()
    files["ISIC2018_Task3_Test_Input.zip"] = zip_of(
        {"ISIC2018_Task3_Test_Input/ISIC_0034524.jpg": jpeg(1), "../../evil.txt": b"gotcha\n"}
    )
    _serve_as_published(monkeypatch, files)
    with serving(mirror_routes(files)) as server:
        monkeypatch.setenv("CCE_BENCH_DOWNLOAD_BASE", server.url)
        code, _, err = _cli(capsys, "isic2018-test", "--to", str(tmp_path / "a" / "isic"))
    assert code == 2 and err.count("\n") == 1
    assert "entry '../../evil.txt' would be written outside" in err
    assert _entries(tmp_path) == []


def test_a_zip_bomb_is_refused_by_its_unpacked_size(tmp_path, monkeypatch, capsys):
    files = isic2018_test_files()
    monkeypatch.setattr(catalogue, "DATASETS", catalogue_for(files, max_unpacked=1000))
    with serving(mirror_routes(files)) as server:
        monkeypatch.setenv("CCE_BENCH_DOWNLOAD_BASE", server.url)
        code, _, err = _cli(capsys, "isic2018-test", "--to", str(tmp_path / "isic"))
    assert code == 2 and "refused as a zip bomb" in err
    assert _entries(tmp_path) == []


def test_a_target_folder_holding_other_files_is_refused(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine\n")
    code, _, err = _cli(capsys, "dermamnist", "--to", str(tmp_path / "d"))
    assert code == 2 and "exists and is not empty; choose a new --to or delete it." in err
    assert _entries(tmp_path) == ["d", "d/notes.txt"]


def test_isic_records_the_first_sha256_and_refuses_a_changed_file_later(tmp_path, monkeypatch):
    files = isic2018_test_files()
    _serve_as_published(monkeypatch, files)
    with serving(mirror_routes(files)) as server:
        first = download_dataset("isic2018-test", tmp_path / "isic", mirror=server.url)
        lock = json.loads(first.lock_file.read_text())
        for name, body in files.items():
            assert lock["files"][name]["sha256"] == hashlib.sha256(body).hexdigest()
        csv = "ISIC2018_Task3_Test_GroundTruth/ISIC2018_Task3_Test_GroundTruth.csv"
        server.routes["/ISIC2018_Task3_Test_GroundTruth.zip"] = Served(zip_of({csv: b"image\n"}))
        with pytest.raises(download.LockMismatchError, match=r"recorded in .*test\.lock\.json"):
            download_dataset("isic2018-test", tmp_path / "again", mirror=server.url)
    # ISIC publishes no checksum: the file before it was not verified, so nothing is kept.
    assert not (tmp_path / "again").exists() and not (tmp_path / ".again.download").exists()


# -- unpacking, entry by entry ----------------------------------------------------------------
@pytest.mark.parametrize("entry", ["/etc/evil", "../evil", "a/../../evil", "..\\evil", "C:/evil"])
def test_unpack_refuses_paths_that_leave_the_target_before_writing(entry, tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_of({"good.txt": b"ok", entry: b"evil"}))
    with pytest.raises(UnsafeArchiveError, match="would be written outside"):
        unpack_zip(archive, tmp_path / "out", max_bytes=10_000)
    assert not (tmp_path / "out").exists()


def test_unpack_refuses_a_symbolic_link_entry(tmp_path):
    archive = tmp_path / "a.zip"
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="is a symbolic link"):
        unpack_zip(archive, tmp_path / "out", max_bytes=10_000)


def test_unpack_never_follows_a_symbolic_link_already_in_the_target(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.txt").symlink_to(outside)
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_of({"x.txt": b"overwritten\n"}))
    with pytest.raises(UnsafeArchiveError, match="never followed"):
        unpack_zip(archive, tmp_path / "out", max_bytes=10_000)
    assert outside.read_text() == "untouched\n"


def test_unpack_refuses_a_zip_bomb_by_its_declared_size(tmp_path):
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(zip_of({"zeros.bin": bytes(1_000_000)}))
    assert archive.stat().st_size < 10_000
    with pytest.raises(ArchiveTooLargeError, match="zip bomb"):
        unpack_zip(archive, tmp_path / "out", max_bytes=100_000)
    assert not (tmp_path / "out").exists()


def test_unpack_drops_a_single_top_folder_and_skips_macos_forks(tmp_path):
    archive = tmp_path / "x.zip"
    entries = {"x/a.jpg": b"a", "x/sub/b.jpg": b"b", "__MACOSX/x/._a.jpg": b"fork"}
    archive.write_bytes(zip_of(entries))
    unpack_zip(archive, tmp_path / "out", max_bytes=10_000)
    assert _entries(tmp_path / "out") == ["a.jpg", "sub", "sub/b.jpg"]
