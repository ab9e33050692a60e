"""The front page: short, runnable as written, and with the install and citation it promises."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 160


def _fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_readme_fits_in_160_lines() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= MAX_README_LINES


def test_readme_python_snippet_runs_as_written(capsys) -> None:
    blocks = _fenced_blocks(README.read_text(encoding="utf-8"), "python")
    assert len(blocks) == 1, "the README's one Python snippet is the CCELoss example"
    assert "from cce_bench" in blocks[0]
    exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme_snippet"})
    assert capsys.readouterr().out.startswith("CCE loss ")


def test_readme_pip_path_uses_the_constraints_file() -> None:
    commands = "\n".join(_fenced_blocks(README.read_text(encoding="utf-8"), "bash"))
    assert re.search(r"pip install -c constraints\.txt ", commands)


def test_constraints_pin_the_tested_torch_pair() -> None:
    lines = (ROOT / "constraints.txt").read_text(encoding="utf-8").split()
    assert "torch==2.14.1" in lines
    assert "torchvision==0.29.1" in lines


def test_citation_file_has_cff_1_2_0_required_keys() -> None:
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0"
    assert citation["message"] and citation["title"]
    assert all("name" in a or "family-names" in a for a in citation["authors"])
    for reference in citation.get("references", []):
        assert {"type", "title", "authors"} <= reference.keys()


def test_citation_file_cites_the_paper() -> None:
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    titles = [reference["title"].lower() for reference in citation["references"]]
    assert "optimizing skin lesion classification with confusion-aware loss functions" in titles


def test_readme_names_the_citation_file_and_the_paper() -> None:
    text = README.read_text(encoding="utf-8")
    assert "(CITATION.cff)" in text
    assert "Confusion-Aware Loss Functions" in text
