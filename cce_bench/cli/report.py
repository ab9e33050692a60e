"""``cce-bench report RESULTS_DIR``: rebuild a study's report from its stored runs, no training."""

from __future__ import annotations

from pathlib import Path
from shlex import quote
from typing import Annotated

import typer
from rich.markup import escape

from cce_bench.cli._console import console, print_json

app = typer.Typer()

#: Columns shown per confirmatory comparison in a terminal (the interval's header names its
#: level, so it is found by its ending); report.md and stats.csv have them all.
TERMINAL_COLUMNS: tuple[str, ...] = (
    "Metric",
    "n",
    "Δ (pp)",
    "CI, seeds",
    "p (Bonferroni)",
    "Verdict",
)
#: What the "†" beside a seed count means, printed under the tables whenever one carries it.
UNDERPOWERED_NOTE = "† fewer than 5 paired seeds: underpowered, read the verdict with care"
NO_COMPARISON = (
    "no paired comparisons: the study has a single arm, so there is nothing to compare it with; "
    "list two or more losses in `losses.arms`"
)


def _verdict_style(verdict: str, comparison: str) -> str:
    """Green when the other arm ("CCE" in "CCE vs CE") wins, red when the baseline does."""
    if verdict == f"{comparison.split(' vs ')[0]} better":
        return "green"
    return "red" if verdict.endswith(" better") else "dim"


@app.command(
    epilog="Example: cce-bench report results/quickstart (--json: the comparisons for scripts)"
)
def report(
    results_dir: Annotated[
        Path,
        typer.Argument(
            help="A study's results folder, <results-dir>/<study name>, e.g. results/quickstart."
        ),
    ],
    json: Annotated[
        bool, typer.Option("--json", help="Print JSON for scripts instead of the tables.")
    ] = False,
) -> None:
    """Rebuild report.md, figures/ and the CSV exports from the stored runs (no training).

    With --json nothing is written: the analysis is printed as numbers for scripts."""
    if json:
        from cce_bench.report import report_as_json

        print_json(report_as_json(results_dir))
    else:
        render_report(results_dir)


def render_report(results_dir: Path) -> None:
    """Build the report and print its path and one narrow significance table per comparison.

    ``cce-bench report`` and ``cce-bench run`` both end here, so a study's answer reads the same
    whichever command produced it; ``TERMINAL_COLUMNS`` keeps each table within 80 columns.
    """
    from rich import box
    from rich.table import Table

    from cce_bench.report import build_report, significance_table

    path = build_report(results_dir)
    table = significance_table(results_dir)
    console.print(f"[bold]report:[/bold] {path}")
    console.print(f"every trial: cce-bench dashboard {escape(quote(str(results_dir)))}")
    if table.empty:  # the one case: a single arm compares nothing
        console.print(NO_COMPARISON)
        return
    console.print(
        "The confirmatory family (the report's Answer): paired over seeds, verdicts read off "
        "simultaneous (Bonferroni) intervals; exploratory comparisons are in report.md"
    )
    if table.attrs.get("stopping") == "anytime":
        console.print(
            "Verdicts are the anytime design's (e-values in report.md); the p-values and "
            "intervals read the same seeds as if their number had been fixed: not the verdict"
        )
    interval = next(column for column in table.columns if column.endswith("CI, seeds"))
    columns = [interval if column == "CI, seeds" else column for column in TERMINAL_COLUMNS]
    for (backbone, comparison), group in table.groupby(["Backbone", "Comparison"], sort=False):
        shown = Table(
            title=f"{backbone}: {comparison}",
            box=box.SIMPLE_HEAD,
            title_justify="left",
            pad_edge=False,
            collapse_padding=True,
        )
        for column in columns:
            shown.add_column(column, justify="left" if column == "Metric" else "right")
        for _, row in group.iterrows():
            style = _verdict_style(str(row["Verdict"]), comparison)
            shown.add_row(*(str(row[column]) for column in columns), style=style)
        console.print(shown)
    if table["n"].astype(str).str.contains("†").any():
        console.print(UNDERPOWERED_NOTE)
