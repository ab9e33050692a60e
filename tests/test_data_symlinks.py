"""Symbolic links: every source reads a layout whose folders and files are links elsewhere.

Users keep one copy of a data set and link its parts beside a metadata file; a source that does
not follow the links reports every listed image as missing.
"""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cce_bench.cli import main
from cce_bench.data.image_folder import index_image_files
from cce_bench.data.sources import load_source
from cce_bench.data.synthetic import write_synthetic_dataset

N = 12


@pytest.fixture
def stored(tmp_path):
    """A HAM10000 layout with its images split over the two Kaggle folders, in a 'store'."""
    folder = write_synthetic_dataset(tmp_path / "store", N, 16, seed=0)
    part_2 = folder / "HAM10000_images_part_2"
    part_2.mkdir()
    for path in sorted((folder / "HAM10000_images_part_1").iterdir())[: N // 2]:
        path.rename(part_2 / path.name)
    return folder


def test_ham10000_follows_symlinked_image_folders(stored, tmp_path):
    linked = tmp_path / "linked"
    linked.mkdir()
    for name in ("HAM10000_images_part_1", "HAM10000_images_part_2"):
        (linked / name).symlink_to(stored / name, target_is_directory=True)
    (linked / "HAM10000_metadata.csv").symlink_to(stored / "HAM10000_metadata.csv")
    labeled = load_source("ham10000", linked)
    assert len(labeled) == N
    assert all(path.is_file() for path in labeled.paths)


def test_ham10000_follows_symlinked_image_files(stored, tmp_path):
    linked = tmp_path / "linked"
    (linked / "images").mkdir(parents=True)
    for part in ("HAM10000_images_part_1", "HAM10000_images_part_2"):
        for path in (stored / part).iterdir():
            (linked / "images" / path.name).symlink_to(path)
    (linked / "HAM10000_metadata.csv").symlink_to(stored / "HAM10000_metadata.csv")
    assert len(load_source("ham10000", linked)) == N


def test_a_link_cycle_is_walked_once(stored):
    (stored / "HAM10000_images_part_1" / "loop").symlink_to(stored, target_is_directory=True)
    files = index_image_files(stored)
    assert len(files) == N


def test_data_check_reads_a_symlinked_layout(stored, tmp_path, capsys):
    linked = tmp_path / "linked"
    linked.mkdir()
    for entry in stored.iterdir():
        (linked / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", str(linked)])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "have no file" not in out
    assert str(N) in out


def test_isic2018_follows_a_symlinked_input_folder(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    for image_id in ("ISIC_0000001", "ISIC_0000002"):
        Image.new("RGB", (8, 8)).save(store / f"{image_id}.jpg")
    folder = tmp_path / "isic"
    folder.mkdir()
    (folder / "ISIC2018_Task3_Training_Input").symlink_to(store, target_is_directory=True)
    columns = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    truth = store / "truth.csv"
    truth.write_text(
        "image," + ",".join(columns) + "\n"
        "ISIC_0000001,1.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
        "ISIC_0000002,0.0,1.0,0.0,0.0,0.0,0.0,0.0\n"
    )
    (folder / "ISIC2018_Task3_Training_GroundTruth.csv").symlink_to(truth)
    assert len(load_source("isic2018", folder)) == 2


def test_dermamnist_follows_a_symlinked_npz(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for part, n in (("train", 7), ("val", 3), ("test", 4)):
        arrays[f"{part}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{part}_labels"] = (np.arange(n) % 7).reshape(n, 1)
    np.savez(tmp_path / "real.npz", **arrays)
    folder = tmp_path / "linked"
    folder.mkdir()
    (folder / "dermamnist.npz").symlink_to(tmp_path / "real.npz")
    assert len(load_source("dermamnist", folder)) == 14


def test_hmnist_follows_a_symlinked_csv(tmp_path):
    frame = pd.DataFrame(
        np.random.default_rng(0).integers(0, 256, (3, 64)),
        columns=[f"pixel{i:04d}" for i in range(64)],
    )
    frame["label"] = [0, 4, 6]
    frame.to_csv(tmp_path / "real.csv", index=False)
    folder = tmp_path / "linked"
    folder.mkdir()
    (folder / "hmnist_8_8_L.csv").symlink_to(tmp_path / "real.csv")
    assert len(load_source("hmnist", folder)) == 3
