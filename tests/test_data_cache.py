"""The decode-once cache: one .npy per source and size, mapped on reload, atomic, resize modes."""

import os

import numpy as np
import pytest
from PIL import Image

from cce_bench.data import cache
from cce_bench.data.cache import (
    UndecodableImageError,
    cache_file,
    default_cache_dir,
    load_images,
)
from cce_bench.data.prepare import prepare_data
from cce_bench.data.sources import load_source
from cce_bench.data.synthetic import generate_synthetic, write_synthetic_dataset


@pytest.fixture
def folder(tmp_path):
    return write_synthetic_dataset(tmp_path / "ham", 12, 24, seed=0)


@pytest.fixture
def labeled(folder):
    return load_source("ham10000", folder)


def test_first_load_writes_one_npy_and_returns_uint8_squares(labeled, tmp_path):
    images = load_images(labeled, size=16, cache_dir=tmp_path / "cache")
    assert images.shape == (12, 16, 16, 3)
    assert images.dtype == np.uint8
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".npy"]


def test_second_load_maps_the_file_without_decoding(labeled, tmp_path, monkeypatch):
    first = np.array(load_images(labeled, size=16, cache_dir=tmp_path))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache, "decode_image", no_decoding)
    again = load_images(labeled, size=16, cache_dir=tmp_path)
    assert isinstance(again, np.memmap)
    assert np.array_equal(first, again)


def test_parallel_decoding_gives_the_same_images_as_serial(labeled, tmp_path, monkeypatch):
    serial = np.array(load_images(labeled, size=16, cache_dir=tmp_path / "serial", workers=1))
    monkeypatch.setattr(cache, "_MIN_PARALLEL", 0)
    monkeypatch.setattr(cache, "_CHUNK", 4)
    parallel = load_images(labeled, size=16, cache_dir=tmp_path / "parallel", workers=2)
    assert np.array_equal(serial, parallel)


def test_progress_reports_done_and_total(labeled, tmp_path):
    calls = []
    load_images(labeled, size=16, cache_dir=tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (12, 12)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_size_mode_and_changed_file_each_get_a_new_key(labeled, tmp_path):
    key = cache_file(labeled, size=16, cache_dir=tmp_path)
    assert cache_file(labeled, size=16, cache_dir=tmp_path) == key
    assert cache_file(labeled, size=32, cache_dir=tmp_path) != key
    assert cache_file(labeled, size=16, resize_mode="pad", cache_dir=tmp_path) != key
    stat = os.stat(labeled.paths[0])
    os.utime(labeled.paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache_file(labeled, size=16, cache_dir=tmp_path) != key


def test_undecodable_jpeg_is_named_and_nothing_is_cached(labeled, tmp_path):
    labeled.paths[3].write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(UndecodableImageError, match=labeled.paths[3].name):
        load_images(labeled, size=16, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_cache_dir_defaults_to_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("CCE_BENCH_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert default_cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_cache_dir_follows_xdg_cache_home_when_the_variable_is_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("CCE_BENCH_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "cce-bench"


def _bands(tmp_path):
    """A 60x20 image of three 20 px bands, red | green | blue, as a one-image source."""
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)
    pixels[:, :20, 0] = pixels[:, 20:40, 1] = pixels[:, 40:, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "ISIC_0000001.png")
    (tmp_path / "HAM10000_metadata.csv").write_text(
        "lesion_id,image_id,dx\nHAM_1,ISIC_0000001,nv\n"
    )
    return load_source("ham10000", tmp_path)


def test_squash_keeps_the_whole_image(tmp_path):
    image = load_images(_bands(tmp_path), size=12, resize_mode="squash", cache_dir=tmp_path)[0]
    assert image[6, 1, 0] > 200 and image[6, 6, 1] > 200 and image[6, 10, 2] > 200


def test_center_crop_keeps_the_central_square(tmp_path):
    image = load_images(_bands(tmp_path), size=12, resize_mode="center_crop", cache_dir=tmp_path)
    assert np.all(image[0][:, :, 1] > 200)
    assert np.all(image[0][:, :, 0] < 50)


def test_pad_keeps_the_aspect_ratio_with_black_borders(tmp_path):
    image = load_images(_bands(tmp_path), size=12, resize_mode="pad", cache_dir=tmp_path)[0]
    assert image[0].max() == 0 and image[-1].max() == 0
    assert image[6, 1, 0] > 200 and image[6, 10, 2] > 200


def test_in_memory_images_are_resized_without_a_cache_file(tmp_path):
    labeled = generate_synthetic(5, 16, seed=0)
    images = load_images(labeled, size=8, cache_dir=tmp_path)
    assert images.shape == (5, 8, 8, 3)
    assert list(tmp_path.iterdir()) == []
    assert load_images(labeled, size=16) is labeled.images


def test_prepare_data_carries_the_parts_and_labels(labeled, tmp_path):
    parts = {"train": np.arange(8), "test": np.arange(8, 12)}
    prepared = prepare_data(labeled, parts, size=16, cache_dir=tmp_path)
    assert prepared.image_size == 16
    assert np.array_equal(prepared.indices(("train", "test")), np.arange(12))
    assert np.array_equal(prepared.labels, labeled.labels)
