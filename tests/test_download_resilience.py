"""Downloads that survive a changed archive: pinned Dataverse ids first, verified files kept
across a later failure, errors that name their source and say when rerunning cannot help, and
the image count of a set that some copies miss an image of. Served by ``download_server``."""

from __future__ import annotations

import dataclasses
import json

import pytest
from download_server import (
    Served,
    catalogue_for,
    ham10000_files,
    isic2018_test_files,
    mirror_routes,
    serving,
)

from cce_bench.data import catalogue, download
from cce_bench.data.download import download_dataset

PART_1, PART_2 = "HAM10000_images_part_1.zip", "HAM10000_images_part_2.zip"
LISTING = "/api/datasets/:persistentId/versions/:latest/files?persistentId=doi:10.7910/DVN/DBW86T"


pytestmark = pytest.mark.usefixtures("loopback_only")


def _damaged(body: bytes) -> bytes:
    """Same length, other bytes: passes the size check, fails the MD5."""
    return body[:-1] + bytes([body[-1] ^ 1])


def _listing(ids: dict[str, int]) -> bytes:
    entries = [{"label": name, "dataFile": {"id": i, "filename": name}} for name, i in ids.items()]
    entries[-1]["dataFile"]["originalFileName"] = "HAM10000_metadata.csv"
    return json.dumps({"status": "OK", "data": entries}).encode()


def test_a_file_the_publisher_replaced_is_refused_as_such_and_rerunning_is_not_advised(tmp_path):
    files = ham10000_files()
    ids = {PART_1: 3172585, PART_2: 9002, "HAM10000_metadata.tab": 4338392}
    routes = {
        LISTING: Served(_listing(ids), content_type="application/json"),
        "/api/access/datafile/3172585": files[PART_1],
        "/api/access/datafile/9002": _damaged(files[PART_2]),  # the pinned 3172584 is gone
    }
    with serving(routes) as server:
        table = catalogue_for(files, dataverse=server.url)
        with pytest.raises(download.ChecksumMismatchError) as raised:
            download_dataset("ham10000", tmp_path / "ham", accept_terms=True, datasets=table)
    message = str(raised.value)
    assert f"{server.url}/api/access/datafile/9002" in message
    assert "the publisher replaced it" in message and "rerunning will not fix it" in message
    assert "run the same command again" not in message


def test_a_wrong_file_on_a_mirror_names_the_mirror_and_says_rerunning_will_not_fix_it(tmp_path):
    files = ham10000_files()
    table = catalogue_for(files)
    routes = mirror_routes({**files, PART_1: _damaged(files[PART_1])})
    with serving(routes) as server, pytest.raises(download.ChecksumMismatchError) as raised:
        download_dataset(
            "ham10000", tmp_path / "ham", accept_terms=True, mirror=server.url, datasets=table
        )
    message = str(raised.value)
    assert f"{server.url}/{PART_1}" in message and f"the mirror {server.url}" in message
    assert "rerunning will not fix it" in message


def test_a_later_failure_keeps_the_verified_files_and_the_next_command_reuses_them(tmp_path):
    files = ham10000_files()
    table = catalogue_for(files)
    target = tmp_path / "ham"
    with serving(mirror_routes({**files, PART_2: _damaged(files[PART_2])})) as server:
        with pytest.raises(download.ChecksumMismatchError, match=f"kept the verified {PART_1}"):
            download_dataset(
                "ham10000", target, accept_terms=True, mirror=server.url, datasets=table
            )
        server.routes[f"/{PART_2}"] = Served(files[PART_2])
        before = len(server.requests)
        result = download_dataset(
            "ham10000", target, accept_terms=True, mirror=server.url, datasets=table
        )
    fetched_again = [path for path, _ in server.requests[before:]]
    assert fetched_again == [f"/{PART_2}", "/HAM10000_metadata.csv"]
    assert result.check.ok and not (tmp_path / ".ham.download").exists()


def test_the_isic_test_set_is_reported_when_it_holds_fewer_images_than_released(tmp_path):
    files = isic2018_test_files()
    table = catalogue_for(files)
    with serving(mirror_routes(files)) as server:
        result = download_dataset("isic2018-test", tmp_path / "isic", mirror=server.url,
                                  datasets=table)  # fmt: skip
    assert catalogue.DATASETS["isic2018-test"].images == 1_512  # the miniature holds fewer
    (note,) = [note for note in result.notes if "1,512 images" in note]
    assert f"holds {result.check.images_found:,} readable ones" in note


def test_a_complete_isic_test_set_gets_no_image_count_note(tmp_path):
    files = isic2018_test_files()
    table = catalogue_for(files)
    with serving(mirror_routes(files)) as server:
        first = download_dataset("isic2018-test", tmp_path / "a", mirror=server.url,
                                 datasets=table)  # fmt: skip
        table["isic2018-test"] = dataclasses.replace(
            table["isic2018-test"], images=first.check.images_found
        )
        again = download_dataset("isic2018-test", tmp_path / "b", mirror=server.url,
                                 datasets=table)  # fmt: skip
    assert not any("images, but" in note for note in again.notes)
