"""Each shipped study file opens with a short header; measurements live in docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "studies").glob("*.toml"))
MAX_HEADER_LINES = 8


def header(study: Path) -> list[str]:
    """The leading block of comment lines (inline comments on keys are not part of it)."""
    lines = []
    for line in study.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


@pytest.mark.parametrize("study", STUDIES, ids=lambda study: study.name)
def test_study_header_is_at_most_8_comment_lines(study: Path) -> None:
    assert 0 < len(header(study)) <= MAX_HEADER_LINES


@pytest.mark.parametrize("study", STUDIES, ids=lambda study: study.name)
def test_study_header_points_at_its_measurements(study: Path) -> None:
    assert "docs/benchmarks.md" in "\n".join(header(study))
