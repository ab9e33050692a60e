"""Sources: every layout loads with labels in HAM10000 order, every bad input has a typed error."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cce_bench.data.array_sources import ArrayFormatError, LabelRangeError
from cce_bench.data.image_folder import (
    DatasetNotFoundError,
    DuplicateImageError,
    MetadataFileError,
    MetadataValueError,
    MissingColumnError,
    MissingImagesError,
    UnknownLabelError,
)
from cce_bench.data.labeled import HAM10000_CLASSES
from cce_bench.data.sources import (
    SourceOptionError,
    available_sources,
    detect_source,
    load_source,
)
from cce_bench.data.synthetic import write_synthetic_dataset
from cce_bench.errors import DataError, UnknownNameError

N = 14


@pytest.fixture
def ham(tmp_path):
    """A HAM10000-layout folder (original metadata variant) of N small JPEGs."""
    return write_synthetic_dataset(tmp_path / "ham", N, 16, seed=0)


def _metadata(folder) -> pd.DataFrame:
    return pd.read_csv(folder / "HAM10000_metadata.csv", dtype=str)


def _write_metadata(folder, frame: pd.DataFrame, name="HAM10000_metadata.csv", **kwargs):
    frame.to_csv(folder / name, index=False, **kwargs)


def test_available_sources_are_the_five_documented():
    assert available_sources() == ["ham10000", "isic2018", "dermamnist", "hmnist", "synthetic"]


def test_ham10000_labels_follow_the_metadata_in_alphabetical_class_order(ham):
    labeled = load_source("ham10000", ham)
    frame = _metadata(ham)
    assert list(labeled.image_ids) == list(frame["image_id"])
    assert list(np.asarray(HAM10000_CLASSES)[labeled.labels]) == list(frame["dx"])
    assert list(labeled.group_ids) == list(frame["lesion_id"])
    assert all(
        path.stem == image_id
        for path, image_id in zip(labeled.paths, labeled.image_ids, strict=True)
    )


def test_ham10000_reads_kaggle_two_part_layout(ham):
    part_2 = ham / "HAM10000_images_part_2"
    part_2.mkdir()
    for path in sorted((ham / "HAM10000_images_part_1").iterdir())[: N // 2]:
        path.rename(part_2 / path.name)
    labeled = load_source("ham10000", ham)
    assert len(labeled) == N
    assert {path.parent.name for path in labeled.paths} == {part_2.name, "HAM10000_images_part_1"}


def test_ham10000_reads_the_dataverse_metadata_variant(ham):
    frame = _metadata(ham)
    frame["age"] = frame["age"].astype(float).astype(int).astype(str)
    frame["dataset"] = "vidir_modern"
    _write_metadata(ham, frame, lineterminator="\r\n")
    assert b"\r\n" in (ham / "HAM10000_metadata.csv").read_bytes()
    labeled = load_source("ham10000", ham)
    assert list(labeled.image_ids) == list(frame["image_id"])


def test_metadata_option_points_at_a_csv_elsewhere(ham, tmp_path):
    elsewhere = tmp_path / "meta"
    elsewhere.mkdir()
    (ham / "HAM10000_metadata.csv").rename(elsewhere / "HAM10000_metadata.csv")
    labeled = load_source("ham10000", ham, metadata=elsewhere / "HAM10000_metadata.csv")
    assert len(labeled) == N


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        load_source("ham10000", tmp_path / "nowhere")


def test_folder_without_metadata_asks_for_the_metadata_option(ham):
    (ham / "HAM10000_metadata.csv").unlink()
    with pytest.raises(MetadataFileError, match="--metadata"):
        load_source("ham10000", ham)


def test_several_metadata_candidates_ask_for_the_metadata_option(ham):
    _write_metadata(ham, _metadata(ham), name="copy_metadata.csv")
    with pytest.raises(MetadataFileError, match=r"several.*--metadata"):
        load_source("ham10000", ham)


def test_missing_required_column_is_named(ham):
    _write_metadata(ham, _metadata(ham).drop(columns="dx"))
    with pytest.raises(MissingColumnError, match="'dx'"):
        load_source("ham10000", ham, metadata=ham / "HAM10000_metadata.csv")


def test_unknown_dx_code_is_listed_with_its_line(ham):
    frame = _metadata(ham)
    frame.loc[2, "dx"] = "melanoma"
    _write_metadata(ham, frame)
    with pytest.raises(UnknownLabelError, match=r"'melanoma'.*lines 4\b.*akiec, bcc"):
        load_source("ham10000", ham)


def test_image_id_on_two_rows_is_rejected(ham):
    frame = _metadata(ham)
    _write_metadata(ham, pd.concat([frame, frame.iloc[[0]]]))
    with pytest.raises(MetadataValueError, match=frame["image_id"][0]):
        load_source("ham10000", ham)


def test_listed_images_without_files_are_counted_with_the_first_five_ids(ham):
    files = sorted((ham / "HAM10000_images_part_1").iterdir())
    for path in files[:6]:
        path.unlink()
    with pytest.raises(MissingImagesError, match=r"6 of 14 .*\.\.\.") as error:
        load_source("ham10000", ham)
    assert all(path.stem in str(error.value) for path in files[:5])
    assert files[5].stem not in str(error.value)


def test_two_files_for_one_image_id_are_both_named(ham):
    first = sorted((ham / "HAM10000_images_part_1").iterdir())[0]
    (ham / "other").mkdir()
    (ham / "other" / first.name).write_bytes(first.read_bytes())
    with pytest.raises(DuplicateImageError, match=f"two files for image {first.stem}"):
        load_source("ham10000", ham)


def test_unlisted_image_is_a_warning_not_an_error(ham):
    Image.new("RGB", (16, 16)).save(ham / "HAM10000_images_part_1" / "ISIC_9999999.jpg")
    labeled = load_source("ham10000", ham)
    assert len(labeled) == N
    assert any("ISIC_9999999" in warning for warning in labeled.warnings)


def _isic(tmp_path, rows):
    folder = tmp_path / "isic"
    (folder / "ISIC2018_Task3_Training_Input").mkdir(parents=True)
    for image_id, _ in rows:
        Image.new("RGB", (8, 8)).save(folder / "ISIC2018_Task3_Training_Input" / f"{image_id}.jpg")
    columns = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    lines = ["image," + ",".join(columns)]
    for image_id, name in rows:
        lines.append(image_id + "," + ",".join("1.0" if c == name else "0.0" for c in columns))
    (folder / "ISIC2018_Task3_Training_GroundTruth.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_isic2018_one_hot_columns_map_to_our_class_order(tmp_path):
    rows = [("ISIC_0000001", "MEL"), ("ISIC_0000002", "NV"), ("ISIC_0000003", "AKIEC")]
    labeled = load_source("isic2018", _isic(tmp_path, rows))
    assert list(np.asarray(HAM10000_CLASSES)[labeled.labels]) == ["mel", "nv", "akiec"]
    assert list(labeled.group_ids) == list(labeled.image_ids)


def test_isic2018_lesion_groupings_beside_the_labels_group_images(tmp_path):
    folder = _isic(tmp_path, [("ISIC_0000001", "MEL"), ("ISIC_0000002", "MEL")])
    (folder / "ISIC2018_Task3_Training_LesionGroupings.csv").write_text(
        "image,lesion_id\nISIC_0000001,HAM_7\nISIC_0000002,HAM_7\n"
    )
    assert set(load_source("isic2018", folder).group_ids) == {"HAM_7"}


def test_isic2018_row_that_is_not_one_hot_is_rejected_with_its_line(tmp_path):
    folder = _isic(tmp_path, [("ISIC_0000001", "MEL"), ("ISIC_0000002", "NONE")])
    with pytest.raises(MetadataValueError, match=r"lines 3 .*one-hot"):
        load_source("isic2018", folder)


def _npz(tmp_path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {}
    for part, n in (("train", 7), ("val", 3), ("test", 4)):
        arrays[f"{part}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{part}_labels"] = (np.arange(n) % 7).reshape(n, 1)
    arrays.update(overrides)
    arrays = {key: value for key, value in arrays.items() if value is not None}
    np.savez(tmp_path / "dermamnist.npz", **arrays)
    return tmp_path / "dermamnist.npz"


def test_dermamnist_keeps_its_official_parts_and_label_order(tmp_path):
    labeled = load_source("dermamnist", _npz(tmp_path))
    assert labeled.images.shape == (14, 28, 28, 3)
    assert list(labeled.official_parts).count("val") == 3
    assert list(labeled.labels[:7]) == list(range(7))


def test_npz_without_the_expected_arrays_names_them(tmp_path):
    with pytest.raises(ArrayFormatError, match="val_labels"):
        load_source("dermamnist", _npz(tmp_path, val_labels=None))


def test_dermamnist_label_out_of_range_is_rejected(tmp_path):
    with pytest.raises(LabelRangeError, match=r"test_labels.*0\.\.6"):
        load_source("dermamnist", _npz(tmp_path, test_labels=np.array([[0], [1], [7], [2]])))


def _hmnist(tmp_path, labels, pixels=64, name="hmnist_8_8_L.csv"):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        rng.integers(0, 256, (len(labels), pixels)),
        columns=[f"pixel{i:04d}" for i in range(pixels)],
    )
    frame["label"] = labels
    frame.to_csv(tmp_path / name, index=False)
    return tmp_path / name


def test_hmnist_codes_are_remapped_to_our_class_order(tmp_path):
    labeled = load_source("hmnist", _hmnist(tmp_path, [0, 1, 2, 3, 4, 5, 6]))
    assert list(np.asarray(HAM10000_CLASSES)[labeled.labels]) == [
        "akiec", "bcc", "bkl", "df", "nv", "vasc", "mel",
    ]  # fmt: skip
    assert labeled.images.shape == (7, 8, 8, 3)


def test_hmnist_rgb_file_reads_three_channels(tmp_path):
    csv = _hmnist(tmp_path, [0, 4], pixels=8 * 8 * 3, name="hmnist_8_8_RGB.csv")
    assert load_source("hmnist", csv).images.shape == (2, 8, 8, 3)


def test_hmnist_wrong_pixel_count_is_rejected(tmp_path):
    with pytest.raises(ArrayFormatError, match="63 pixel columns, expected 64"):
        load_source("hmnist", _hmnist(tmp_path, [0, 1], pixels=63))


def test_hmnist_label_out_of_range_names_the_line(tmp_path):
    with pytest.raises(LabelRangeError, match="lines 3"):
        load_source("hmnist", _hmnist(tmp_path, [0, 9]))


def test_hmnist_joins_lesion_ids_by_row_from_metadata(tmp_path):
    csv = _hmnist(tmp_path, [4, 6])
    meta = tmp_path / "meta.csv"
    meta.write_text("lesion_id,image_id,dx\nHAM_1,ISIC_1,nv\nHAM_1,ISIC_2,mel\n")
    labeled = load_source("hmnist", csv, metadata=meta)
    assert list(labeled.image_ids) == ["ISIC_1", "ISIC_2"]
    assert list(labeled.group_ids) == ["HAM_1", "HAM_1"]


def test_hmnist_metadata_in_another_order_is_rejected(tmp_path):
    csv = _hmnist(tmp_path, [4, 6])
    meta = tmp_path / "meta.csv"
    meta.write_text("lesion_id,image_id,dx\nHAM_1,ISIC_2,mel\nHAM_1,ISIC_1,nv\n")
    with pytest.raises(ArrayFormatError, match="disagrees"):
        load_source("hmnist", csv, metadata=meta)


def test_detect_source_recognises_each_layout(ham, tmp_path):
    assert detect_source(ham) == "ham10000"
    assert detect_source(_isic(tmp_path, [("ISIC_1", "NV")])) == "isic2018"
    (tmp_path / "d").mkdir()
    assert detect_source(_npz(tmp_path / "d")) == "dermamnist"
    (tmp_path / "h").mkdir()
    assert detect_source(_hmnist(tmp_path / "h", [0]).parent) == "hmnist"


def test_detect_source_of_an_unrelated_folder_asks_for_source(tmp_path):
    with pytest.raises(DataError, match="--source"):
        detect_source(tmp_path)


def test_unknown_source_suggests_the_closest_name():
    with pytest.raises(UnknownNameError, match="ham10000"):
        load_source("ham1000")


def test_option_a_source_does_not_take_is_rejected(ham):
    with pytest.raises(SourceOptionError, match="n_images"):
        load_source("ham10000", ham, n_images=5)


def test_synthetic_source_generates_with_its_options():
    labeled = load_source("synthetic", n_images=9, image_size=8, seed=1, difficulty=0.2)
    assert labeled.images.shape == (9, 8, 8, 3)
