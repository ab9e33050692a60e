"""``cce-bench plan STUDY``: runs, images and time per backbone and phase, before any run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cce_bench.cli._console import console, print_json

app = typer.Typer()


@app.command(
    epilog="Example: cce-bench plan studies/paper-ham10000.toml --throughput gpu_check.json "
    "--slots 16"
)
def plan(
    study: Annotated[Path, typer.Argument(help="Study file, e.g. studies/paper-ham10000.toml.")],
    throughput: Annotated[
        Path | None,
        typer.Option(
            "--throughput",
            help="A benchmarks/gpu_check.sh result (gpu_check.json): its images/s per backbone "
            "replace the probe on this machine.",
        ),
    ] = None,
    slots: Annotated[
        int | None,
        typer.Option(
            "--slots", min=1, help="Runs at once (default: resources.max_concurrent, else 1)."
        ),
    ] = None,
    images: Annotated[
        int | None,
        typer.Option("--images", min=1, help="Images in the dataset, for a source not known."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Print what the study will train: per backbone and phase, runs, images and hours."""
    from cce_bench.study._plan import plan_study, probe_rates, read_throughput

    spec = _study_without_data(study)
    if throughput is not None:
        rates, source = read_throughput(throughput), f"measured by gpu_check ({throughput})"
    else:
        rates, source = probe_rates(spec), "a short probe on this machine's CPU"
    wanted = spec.resources.max_concurrent
    slots = slots or (wanted if isinstance(wanted, int) else 1)
    result = plan_study(spec, rates, n_images=images, slots=slots, throughput_source=source)
    if json:
        print_json(
            {
                "rows": [row.__dict__ for row in result.rows],
                "run_hours": result.run_hours,
                "wall_hours": result.wall_hours,
                "slots": result.slots,
                "throughput": result.throughput_source,
            }
        )
        return
    render_plan(spec.name, result)


def _study_without_data(path: Path):
    """The study, checked as ``cce-bench run`` checks it, except that a plan needs no images:
    a study whose ``data.path`` is empty or elsewhere (the paper study's) is read as written."""
    from cce_bench.config import StudyFileError, load_study, read_stored_study
    from cce_bench.config._load import read_study_file

    try:
        return load_study(path)
    except StudyFileError as error:
        if error.key != "data.path":
            raise
        return read_stored_study(read_study_file(path), origin=str(path))


def _number(value: float) -> str:
    """``2,000`` for a GPU's rate, ``0.877`` for a CPU probe's."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.3g}"


def _span(span: tuple[float, float], fmt: str = "{:,.0f}") -> str:
    low, high = span
    return fmt.format(low) if low == high else f"{fmt.format(low)}-{fmt.format(high)}"


def render_plan(name: str, result) -> None:
    """One table row per backbone and phase, then the totals."""
    from rich.table import Table

    table = Table(title=f"plan of {name}", title_justify="left")
    for column in ("Backbone", "Phase", "px", "Seeds", "Runs", "Images", "img/s", "Run-h"):
        table.add_column(column, justify="left" if column in ("Backbone", "Phase") else "right")
    for row in result.rows:
        hours = row.run_hours
        table.add_row(
            row.backbone,
            row.phase,
            f"{row.image_size}",
            _span(row.seeds) if row.seeds else "",
            _span(row.runs),
            _span((row.images[0] / 1e6, row.images[1] / 1e6), "{:,.1f}M"),
            _number(row.images_per_s) if row.images_per_s else "?",
            _span(hours, "{:,.0f}" if hours[0] >= 100 else "{:,.1f}") if hours else "?",
        )
    console.print(table)
    wall = result.wall_hours
    if wall is not None:
        console.print(
            f"total: {_span(result.run_hours, '{:,.0f}')} run-hours; "
            f"{_span(wall, '{:,.1f}')} h of wall time on {result.slots} slot(s) "
            f"(throughput: {result.throughput_source}; pruned trials end sooner; the seed "
            "range is the anytime design's first look to its cap)",
            soft_wrap=True,
        )
