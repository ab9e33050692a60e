"""Command-line conventions: help without an empty error, progress on stderr that --quiet
silences and that a log file can read, OPTUNA_STORAGE, and names offered as choices."""

import importlib
import json
from pathlib import Path

import pytest

from cce_bench.cli import main
from cce_bench.cli._choices import (
    DatasetName,
    DeviceName,
    LossName,
    PolicyName,
    ResizeModeName,
    SourceName,
    SplitName,
    names,
)
from cce_bench.cli._task_progress import PlainLines

PACKAGE = Path(__file__).resolve().parents[1] / "cce_bench"


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


@pytest.mark.parametrize("argv", [[], ["data"]], ids=["cce-bench", "cce-bench data"])
def test_a_group_without_a_command_prints_its_help_and_no_empty_error(argv, capsys):
    _exit_code(argv)
    captured = capsys.readouterr()
    assert "Usage" in captured.out + captured.err
    assert "error:" not in captured.out + captured.err


def test_a_usage_error_still_names_its_cause(capsys):
    assert _exit_code(["train", "--split", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "'paper', 'lesion', 'official'" in err


@pytest.mark.parametrize(
    ("choice", "module", "registry"),
    [
        (LossName, "cce_bench.loss_registry", "_REGISTRY"),
        (SplitName, "cce_bench.data.splits", "SPLIT_KINDS"),
        (DeviceName, "cce_bench.train._spec", "DEVICES"),
        (SourceName, "cce_bench.data.sources", "SOURCES"),
        (DatasetName, "cce_bench.data.catalogue", "DATASETS"),
        (ResizeModeName, "cce_bench.data.cache", "RESIZE_MODES"),
        (PolicyName, "cce_bench.data.augment", "POLICIES"),
    ],
    ids=["loss", "split", "device", "source", "dataset", "resize", "policy"],
)
def test_each_choice_type_lists_its_registry(choice, module, registry):
    assert names(choice) == tuple(getattr(importlib.import_module(module), registry))


def test_storage_falls_back_to_optunas_variable_after_ours(tmp_path, monkeypatch):
    from test_cli_conventions import _progress

    import cce_bench.study

    seen = []
    monkeypatch.setattr(
        cce_bench.study,
        "study_status",
        lambda folder, *, storage=None: seen.append(storage) or _progress(),
    )
    monkeypatch.delenv("CCE_BENCH_STORAGE", raising=False)
    monkeypatch.setenv("OPTUNA_STORAGE", "sqlite:///optuna-env.db")
    assert _exit_code(["status", str(tmp_path), "--json"]) == 0
    monkeypatch.setenv("CCE_BENCH_STORAGE", "sqlite:///ours.db")
    assert _exit_code(["status", str(tmp_path), "--json"]) == 0
    assert seen == ["sqlite:///optuna-env.db", "sqlite:///ours.db"]


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    from cce_bench.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path / "synth", 30, 16, seed=0)


def _prepare(folder: Path, cache: Path, *root_flags: str) -> None:
    argv = [*root_flags, "data", "prepare", str(folder), "--size", "8", "--cache-dir", str(cache)]
    assert _exit_code(argv) == 0


def test_progress_goes_to_stderr_as_plain_lines_when_it_is_not_a_terminal(
    small_dataset, tmp_path, capsys
):
    _prepare(small_dataset, tmp_path / "cache")
    captured = capsys.readouterr()
    assert "decoding: 30 / 30 (100%) done" in captured.err
    assert "decoding" not in captured.out
    assert "\r" not in captured.err and "\x1b[" not in captured.err


def test_quiet_hides_the_progress(small_dataset, tmp_path, capsys):
    _prepare(small_dataset, tmp_path / "cache", "--quiet")
    assert "decoding" not in capsys.readouterr().err


def test_plain_progress_prints_the_start_and_the_end_of_a_task_and_throttles_between(capsys):
    advance = PlainLines(in_bytes=False, interval_s=3600.0)
    for done in range(0, 101, 10):
        advance("unpacking", done, 100)
    advance("unpacking", 100, 100)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["unpacking: 0 / 100 (0%)", "unpacking: 100 / 100 (100%) done"]


def test_the_cli_imports_no_private_typer_module():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "typer._click" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_status_json_is_still_plain_json(tmp_path, capsys):
    root = tmp_path / "tiny"
    root.mkdir()
    (root / "study.toml").write_text('name = "tiny"\n[data]\nsource = "synthetic"\n')
    assert _exit_code(["status", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema_version"] == 1


def _completions(path: list[str], option: str, incomplete: str) -> list[str]:
    """What shell completion offers for ``option`` of the command at ``path``."""
    import typer

    from cce_bench.cli import app

    command = typer.main.get_command(app)
    context = command.make_context("cce-bench", [*path], resilient_parsing=True)
    for name in path:
        command = command.get_command(context, name)
        context = command.make_context(name, [], parent=context, resilient_parsing=True)
    param = next(p for p in command.params if p.name == option)
    return [item.value for item in param.shell_complete(context, incomplete)]


@pytest.mark.parametrize(
    ("path", "option", "incomplete", "offered"),
    [
        (["train"], "loss", "cce", ["cce", "cce_tau"]),
        (["train"], "split", "", ["paper", "lesion", "official"]),
        (["train"], "device", "c", ["cpu", "cuda"]),
        (["data", "check"], "source", "h", ["ham10000", "hmnist"]),
        (["data", "download"], "name", "dermamnist-", ["dermamnist-64", "dermamnist-128",
                                                       "dermamnist-224"]),
    ],
)  # fmt: skip
def test_completion_lists_the_names_an_option_takes(path, option, incomplete, offered):
    assert _completions(path, option, incomplete) == offered
