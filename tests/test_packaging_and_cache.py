"""What a fresh clone relies on: declared imports, pinned tools, the tested torch pair, a type
check, and the image cache that `cce-bench cache` shows and empties."""

import ast
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cce_bench.cli import app

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Modules of the standard library, this package, and what a declared distribution provides
#: under another name.
PROVIDED_BY = {"PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml"}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


def _imported_top_level_modules() -> set[str]:
    found = set()
    for path in (ROOT / "cce_bench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"cce_bench", "__future__"}


def test_every_third_party_import_is_a_declared_dependency():
    declared = _requirement_names(PYPROJECT["project"]["dependencies"])
    imported = {PROVIDED_BY.get(name, name) for name in _imported_top_level_modules()}
    assert {name.lower().replace("_", "-") for name in imported} - declared == set()


def test_the_dev_tools_that_judge_formatting_and_types_are_pinned():
    dev = PYPROJECT["project"]["optional-dependencies"]["dev"]
    assert any(re.fullmatch(r"ruff==[\d.]+", r) for r in dev)
    assert any(re.fullmatch(r"mypy==[\d.]+", r) for r in dev)


def test_the_constraints_file_pins_the_tested_torch_pair_and_make_uses_it():
    lines = [
        line
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == ["torch==2.14.1", "torchvision==0.29.1"]
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.count("-c constraints.txt") == 2
    assert "torch==" not in makefile


def test_make_test_runs_the_type_checker_over_the_package():
    recipe = (ROOT / "Makefile").read_text().split("\ntest: setup\n")[1].split("\n\n")[0]
    assert "$(BIN)/mypy" in recipe
    assert PYPROJECT["tool"]["mypy"]["files"] == ["cce_bench"]


@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("mypy") is None, reason="mypy is not installed"
)
def test_the_package_type_checks():
    from mypy import api

    out, err, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "cce_bench")]
    )
    assert status == 0, out + err


def _fake_cache(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    ours = [folder / "ham10000-224px-squash-0123456789abcdef.npy",
            folder / "dermamnist-64px-pad-fedcba9876543210.npy.4242.tmp"]  # fmt: skip
    for path in ours:
        path.write_bytes(b"x" * 100)
    (folder / "notes.txt").write_text("not ours")
    return ours


def test_cache_info_lists_the_cache_files_of_the_folder_the_variable_names(tmp_path, monkeypatch):
    ours = _fake_cache(tmp_path / "cache")
    monkeypatch.setenv("CCE_BENCH_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["cache", "info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == {
        "folder": str(tmp_path / "cache"),
        "files": sorted(p.name for p in ours),
        "bytes": 200,
    }


def test_cache_clean_deletes_only_the_cache_files(tmp_path):
    ours = _fake_cache(tmp_path / "cache")
    result = CliRunner().invoke(app, ["cache", "clean", "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert not any(path.exists() for path in ours)
    assert (tmp_path / "cache" / "notes.txt").read_text() == "not ours"
