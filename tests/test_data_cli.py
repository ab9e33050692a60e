"""`cce-bench data check, prepare, synth`: a table on success, exit 2 and one line on bad input."""

import pandas as pd
import pytest

from cce_bench.cli import main


def _run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", *args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture
def synth_folder(tmp_path, capsys):
    code, out, _ = _run(capsys, "synth", str(tmp_path / "synth"), "--n", "20", "--size", "16")
    assert code == 0
    assert "wrote" in out
    return tmp_path / "synth"


def test_synth_then_check_reports_images_lesions_and_classes(synth_folder, capsys):
    code, out, _ = _run(capsys, "check", str(synth_folder))
    assert code == 0
    assert "ham10000" in out
    assert "images" in out and "20" in out
    assert "16x16: 20" in out
    for name in ("nv", "mel", "bkl"):
        assert name in out


def test_check_of_bad_metadata_exits_2_with_one_line(synth_folder, capsys):
    metadata = synth_folder / "HAM10000_metadata.csv"
    frame = pd.read_csv(metadata)
    frame.loc[0, "dx"] = "xyz"
    frame.to_csv(metadata, index=False)
    code, _, err = _run(capsys, "check", str(synth_folder))
    assert code == 2
    assert err.count("\n") == 1
    assert "'xyz'" in err


def test_check_of_a_metadata_only_folder_counts_labels_and_reports_the_problem(
    synth_folder, tmp_path, capsys
):
    only = tmp_path / "only-metadata"
    only.mkdir()
    (synth_folder / "HAM10000_metadata.csv").rename(only / "HAM10000_metadata.csv")
    code, out, err = _run(capsys, "check", str(only))
    assert code == 2
    assert "image files found" in out
    assert "--metadata" in err


def test_prepare_builds_the_cache_in_the_given_folder(synth_folder, tmp_path, capsys):
    cache = tmp_path / "cache"
    args = ("prepare", str(synth_folder), "--size", "8", "--cache-dir", str(cache))
    code, out, _ = _run(capsys, *args)
    assert code == 0
    assert "built" in out
    assert len(list(cache.glob("*.npy"))) == 1
    code, out, _ = _run(capsys, *args)
    assert "reused" in out


def test_prepare_with_an_unknown_resize_mode_exits_2(synth_folder, capsys):
    code, _, err = _run(capsys, "prepare", str(synth_folder), "--size", "8", "--resize-mode", "x")
    assert code == 2
    assert "squash" in err
