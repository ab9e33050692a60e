"""SQLite on a network filesystem is refused before a study writes to it."""

from __future__ import annotations

import pytest

import cce_bench.study._filesystem as filesystem
from cce_bench.errors import StorageError
from cce_bench.study.storage import open_study_storage
from cce_bench.study.store import ResultsStore


def pretend_mounts(monkeypatch, tmp_path, mounts: str) -> None:
    table = tmp_path / "mounts"
    table.write_text(mounts)
    monkeypatch.setattr(filesystem, "MOUNTS", table)


def test_a_path_takes_the_type_of_its_deepest_mount(monkeypatch, tmp_path):
    results = tmp_path / "results"
    pretend_mounts(
        monkeypatch, tmp_path, f"/dev/sda1 / ext4 rw 0 0\nserver:/x {results} nfs4 rw 0 0\n"
    )
    assert filesystem.network_filesystem(results / "study") == "nfs4"
    assert filesystem.network_filesystem(tmp_path) is None


def test_a_study_storage_on_nfs_is_refused_naming_the_fix(monkeypatch, tmp_path):
    results = tmp_path / "results"
    (results / "tiny").mkdir(parents=True)
    pretend_mounts(
        monkeypatch, tmp_path, f"/dev/sda1 / ext4 rw 0 0\nserver:/x {results} nfs4 rw 0 0\n"
    )
    with pytest.raises(
        StorageError, match=r"network filesystem \(nfs4\).*local disk.*postgresql://"
    ):
        open_study_storage(ResultsStore(results / "tiny"), None)
    assert not (results / "tiny" / "optuna.db").exists()


def test_a_study_storage_on_a_local_disk_opens(monkeypatch, tmp_path):
    (tmp_path / "tiny").mkdir()
    pretend_mounts(monkeypatch, tmp_path, "/dev/sda1 / ext4 rw 0 0\n")
    assert open_study_storage(ResultsStore(tmp_path / "tiny"), None) is not None
