"""The committed example reports are what their committed runs give: rebuilding changes nothing.

``docs/example-report`` (from scratch) and ``docs/example-report-pretrained`` (ImageNet weights
beside the same backbone from scratch) carry their stored runs (records, predictions, split,
study, Optuna storage) so that a reader can rebuild each report and check the test-set
bootstrap; this proves that the files there are the whole input and that the build is
deterministic.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from cce_bench.report import build_report, significance_as_dict, significance_table

DOCS = Path(__file__).resolve().parents[1] / "docs"
EXAMPLE = DOCS / "example-report"
PRETRAINED = DOCS / "example-report-pretrained"
#: Files whose every byte follows from the records (formatted numbers, copied values, means of
#: five seeds), and ``stats.csv``, whose full-precision test-set bootstrap sums thousands of
#: values: SIMD kernels of other CPUs may round those sums differently in the last bits, so it
#: is compared to float64 precision instead.
EXACT = ("report.md", "summary.csv", "runs.csv")
NUMERIC = "stats.csv"
BUILT = (*EXACT, NUMERIC)


@pytest.mark.parametrize("example", [EXAMPLE, PRETRAINED], ids=lambda path: path.name)
def test_rebuilding_an_example_report_from_its_stored_runs_gives_the_committed_files(
    tmp_path, example
):
    copy = tmp_path / example.name
    shutil.copytree(example, copy)
    for name in BUILT:
        (copy / name).unlink()
    build_report(copy)
    for name in EXACT:
        assert (copy / name).read_bytes() == (example / name).read_bytes(), name
    pd.testing.assert_frame_equal(
        pd.read_csv(copy / NUMERIC), pd.read_csv(example / NUMERIC), rtol=1e-9, atol=0.0
    )
    committed = sorted(p.name for p in (example / "figures").iterdir())
    assert sorted(p.name for p in (copy / "figures").iterdir()) == committed


def test_the_example_answers_under_its_plan_with_a_family_of_four():
    text = (EXAMPLE / "report.md").read_text()
    assert text.index("## Analysis plan") < text.index("## Answer") < text.index("## Study")
    answer = text.split("## Answer")[1].split("\n## ")[0]
    assert "4 comparisons, each verdict read off its simultaneous 98.75% paired t" in answer
    assert answer.count("- **resnet") == 4
    assert "98.75% CI" in answer and "with test-set sampling" in answer


def test_the_pretrained_example_names_each_initialisation_and_its_weights():
    study = (PRETRAINED / "report.md").read_text().split("## Study")[1].split("\n## ")[0]
    digest = "2b4a5f7e9a1870e2c41efd811c5b04f7e5843b32900a338e3f181204a324f9c6"
    assert "| `efficientnet_lite0@imagenet` | weights from `" in study
    assert f"SHA-256 `{digest}`" in study
    assert "| `efficientnet_lite0@scratch` | random initialisation |" in study
    assert study.count("(ImageNet's)") == 2


def test_the_pretrained_example_says_its_verdicts_are_the_anytime_designs():
    """Its fixed-n p-values reach 0.002 while its anytime verdicts are all "inconclusive": what
    a script reads must say which of the two the Verdict column is."""
    table = significance_table(PRETRAINED)
    data = significance_as_dict(PRETRAINED / "report.md", table)
    assert data["adjustment"].startswith("Bonferroni over the confirmatory family of 4")
    assert data["verdict"].startswith("anytime design") and "not the verdict" in data["verdict"]
    assert {row["Verdict"] for row in data["comparisons"]} == {"inconclusive"}
