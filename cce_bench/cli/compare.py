"""``cce-bench compare A B``: two finished studies that differ in their protocol, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cce_bench.cli._console import console

app = typer.Typer()


@app.command(
    epilog="Example: cce-bench compare results/protocol-paper-split "
    "results/protocol-lesion-split --out compare.md"
)
def compare(
    a: Annotated[Path, typer.Argument(help="The first study's results folder (A).")],
    b: Annotated[Path, typer.Argument(help="The second study's results folder (B).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the page to this file instead of printing it."),
    ] = None,
    allow_diff: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-diff",
            help="A study field that may differ besides name and data.split, e.g. "
            "train.sampler (repeat for several).",
        ),
    ] = None,
) -> None:
    """Print a markdown page: each arm's level in A and B, each study's verdicts, and per
    metric the difference B - A with a Welch interval over seeds (no training)."""
    from cce_bench.report import compare_studies

    page = compare_studies(a, b, allow_diff=tuple(allow_diff or ()))
    if out is None:
        typer.echo(page, nl=False)
        return
    out.write_text(page, encoding="utf-8")
    console.print(f"[bold]comparison:[/bold] {out}")
