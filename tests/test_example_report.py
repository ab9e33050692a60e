"""The committed example report is what its committed runs give: rebuilding it changes nothing.

``docs/example-report`` carries its stored runs (records, predictions, split, study, Optuna
storage) so that a reader can rebuild the report and check the test-set bootstrap; this proves
that the files there are the whole input and that the build is deterministic.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from cce_bench.report import build_report

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example-report"
#: Files whose every byte follows from the records (formatted numbers, copied values, means of
#: five seeds), and ``stats.csv``, whose full-precision test-set bootstrap sums thousands of
#: values: SIMD kernels of other CPUs may round those sums differently in the last bits, so it
#: is compared to float64 precision instead.
EXACT = ("report.md", "summary.csv", "runs.csv")
NUMERIC = "stats.csv"
BUILT = (*EXACT, NUMERIC)


def test_rebuilding_the_example_report_from_its_stored_runs_gives_the_committed_files(tmp_path):
    copy = tmp_path / EXAMPLE.name
    shutil.copytree(EXAMPLE, copy)
    for name in BUILT:
        (copy / name).unlink()
    build_report(copy)
    for name in EXACT:
        assert (copy / name).read_bytes() == (EXAMPLE / name).read_bytes(), name
    pd.testing.assert_frame_equal(
        pd.read_csv(copy / NUMERIC), pd.read_csv(EXAMPLE / NUMERIC), rtol=1e-9, atol=0.0
    )
    committed = sorted(p.name for p in (EXAMPLE / "figures").iterdir())
    assert sorted(p.name for p in (copy / "figures").iterdir()) == committed


def test_the_example_answers_under_its_plan_with_a_family_of_four():
    text = (EXAMPLE / "report.md").read_text()
    assert text.index("## Analysis plan") < text.index("## Answer") < text.index("## Study")
    answer = text.split("## Answer")[1].split("\n## ")[0]
    assert "4 comparisons, Holm at α = 0.05" in answer
    assert answer.count("- **resnet") == 4
    assert "98.75% CI" in answer and "with test-set sampling" in answer
