"""``cce-bench data check | prepare | synth | download``: inspect, cache, synthesise or fetch data.

Each command parses its flags, calls one function of ``cce_bench.data`` and renders what it
returns with rich. Library imports stay inside the command bodies so ``cce-bench --help`` is
fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cce_bench.cli._choices import DatasetName, ResizeModeName, SourceName, completion
from cce_bench.cli._console import EXIT_BAD_INPUT, console, err_console, print_json
from cce_bench.cli._task_progress import task_progress
from cce_bench.data import SYNTHETIC_DIFFICULTY

if TYPE_CHECKING:
    from cce_bench.data.catalogue import Dataset
    from cce_bench.data.check import DatasetCheck
    from cce_bench.data.download import DownloadResult

app = typer.Typer(
    help="Inspect, cache, synthesise and download datasets.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

DatasetPath = Annotated[Path, typer.Argument(help="Dataset folder or file.")]
Source = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="ham10000, isic2018, dermamnist or hmnist (default: detected).",
        autocompletion=completion(SourceName),
    ),
]
Metadata = Annotated[
    Path | None,
    typer.Option("--metadata", help="Labels CSV to use instead of the one found in PATH."),
]


@app.command("check", epilog="Example: cce-bench data check ~/data/ham10000 (--json: for scripts)")
def check(
    path: DatasetPath,
    source: Source = None,
    metadata: Metadata = None,
    json: Annotated[
        bool, typer.Option("--json", help="Print JSON for scripts instead of the table.")
    ] = False,
) -> None:
    """Count images, lesions and classes, list image sizes and problems (exit 2 on problems)."""
    from cce_bench.data.check import check_dataset

    result = check_dataset(path, source=source, metadata=metadata)
    if json:
        print_json(result.to_json_dict())
        if not result.ok:
            raise typer.Exit(EXIT_BAD_INPUT)
        return
    console.print(f"[bold]{result.source}[/bold]: {escape(str(result.path))}", soft_wrap=True)
    console.print(_check_table(result))
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    for problem in result.problems:
        err_console.print(f"[bold red]problem:[/bold red] {escape(problem)}")
    if not result.ok:
        raise typer.Exit(EXIT_BAD_INPUT)


def _check_table(result: DatasetCheck) -> Table:
    table = Table(show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("images", f"{result.images:,}")
    if result.images_found != result.images:
        table.add_row("image files found", f"{result.images_found:,}", style="red")
    table.add_row("lesions", f"{result.lesions:,}")
    for name, count in sorted(result.class_counts.items(), key=lambda item: -item[1]):
        share = count / result.images if result.images else 0.0
        table.add_row(f"  {name}", f"{count:,} ({share:.1%})")
    sizes = ", ".join(f"{size}: {count:,}" for size, count in result.image_sizes.items())
    table.add_row("image sizes", sizes or "-")
    problems = len(result.problems)
    table.add_row("problems", str(problems), style="red" if problems else "green")
    table.add_row("warnings", str(len(result.warnings)), style="yellow" if result.warnings else "")
    return table


@app.command("prepare", epilog="Example: cce-bench data prepare ~/data/ham10000 --size 224")
def prepare(
    path: DatasetPath,
    size: Annotated[int, typer.Option("--size", min=8, help="Square side in pixels, e.g. 224.")],
    source: Source = None,
    metadata: Metadata = None,
    resize_mode: Annotated[
        ResizeModeName,
        typer.Option("--resize-mode", help="squash, center_crop or pad to a square."),
    ] = "squash",
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Default: $CCE_BENCH_CACHE_DIR, else $XDG_CACHE_HOME/cce-bench "
            "(~/.cache/cce-bench).",
        ),
    ] = None,
) -> None:
    """Decode and resize every image once into the cache that training memory-maps."""
    from cce_bench.data.prepare import prepare_cache

    with task_progress(in_bytes=False) as report:

        def advance(done: int, total: int) -> None:
            report("decoding", done, total)

        summary = prepare_cache(
            path,
            size=size,
            source=source,
            metadata=metadata,
            resize_mode=resize_mode,
            cache_dir=cache_dir,
            progress=advance,
        )
    what = f"{summary.images:,} {summary.source} images at {summary.size}px ({summary.resize_mode})"
    if summary.cache_file is None:
        console.print(f"[green]resized[/green] {what} in memory: this source needs no cache file")
        return
    verb = "reused" if summary.reused else "built"
    console.print(
        f"[green]{verb}[/green] {what}, {summary.megabytes:,.0f} MB: "
        f"{escape(str(summary.cache_file))}",
        soft_wrap=True,
    )
    if not summary.reused:
        console.print(f"{summary.seconds:.1f} s, {summary.images_per_s:,.0f} images/s")


@app.command("synth", epilog="Example: cce-bench data synth synthetic-ham --n 2000 --size 64")
def synth(
    out_dir: Annotated[
        Path, typer.Argument(help="New folder to write (must not exist or be empty).")
    ],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images.")] = 2000,
    size: Annotated[int, typer.Option("--size", min=8, help="Square side in pixels.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same images.")] = 0,
    difficulty: Annotated[
        float,
        typer.Option(
            "--difficulty", min=0.0, max=1.0, help="0: confusable pairs far apart; 1: close."
        ),
    ] = SYNTHETIC_DIFFICULTY,
) -> None:
    """Write a synthetic set in HAM10000's layout (metadata CSV + JPEG folder)."""
    from cce_bench.data.synthetic import write_synthetic_dataset

    folder = write_synthetic_dataset(out_dir, n, size, seed=seed, difficulty=difficulty)
    console.print(
        f"[green]wrote[/green] {n:,} synthetic images of {size}px to {escape(str(folder))}; "
        f"read it with source 'ham10000' (cce-bench data check {escape(str(folder))})"
    )


@app.command(
    "download", epilog="Example: cce-bench data download dermamnist-64 --to data/dermamnist-64"
)
def download(
    name: Annotated[
        str | None,
        typer.Argument(
            autocompletion=completion(DatasetName),
            help="ham10000, isic2018-test, dermamnist, dermamnist-64, dermamnist-128 or "
            "dermamnist-224.",
            show_default=False,
        ),
    ] = None,
    to: Annotated[
        Path | None, typer.Option("--to", help="Folder to create (default: data/NAME).")
    ] = None,
    accept_terms: Annotated[
        bool,
        typer.Option("--accept-terms", help="Accept the dataset's terms of use (printed first)."),
    ] = False,
    list_datasets: Annotated[
        bool,
        typer.Option("--list", help="List the datasets with their size, licence and source."),
    ] = False,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            envvar="CCE_BENCH_DOWNLOAD_BASE",
            help="Fetch every file from MIRROR/<file name> instead of from its publisher.",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=0.1, help="Seconds to wait for the server before a try is dropped."
        ),
    ] = 60.0,
) -> None:
    """Download a dataset, check its size and checksum, unpack it safely, then check the data."""
    from cce_bench.data.catalogue import DATASETS, find_dataset

    if list_datasets:
        _print_datasets(DATASETS.values())
        return
    if name is None:
        raise typer.BadParameter("pass a dataset NAME, or --list to see them", param_hint="NAME")
    from cce_bench.data.download import download_dataset

    terms = find_dataset(name).terms
    if terms:
        console.print(f"[bold]{escape(name)}: terms of use[/bold]")
        console.print(escape(terms), soft_wrap=True, highlight=False)
    with task_progress(in_bytes=True) as advance:
        result = download_dataset(
            name, to, accept_terms=accept_terms, mirror=mirror, timeout=timeout, progress=advance
        )
    _render_download(result)


def _print_datasets(datasets: Iterable[Dataset]) -> None:
    """One block per dataset: name, size, licence; what it is; where it comes from."""
    from cce_bench.data.catalogue import human_bytes

    for dataset in datasets:
        size = human_bytes(dataset.approx_size)
        size = size if dataset.size_is_pinned else f"about {size}"
        console.print(
            f"[bold]{dataset.name}[/bold]  {size}  licence: {escape(dataset.licence)}\n"
            f"  {escape(dataset.description)}\n  source: {escape(dataset.origin)}",
            soft_wrap=True,
            highlight=False,
        )


def _render_download(result: DownloadResult) -> None:
    what = "downloaded" if result.fetched else "already downloaded, nothing fetched:"
    console.print(
        f"[green]{what}[/green] {result.dataset.name} in {escape(str(result.folder))}",
        soft_wrap=True,
    )
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", soft_wrap=True)
    if result.lock_file is not None:
        console.print(
            f"SHA-256 of the first download (no checksum is published) recorded in "
            f"{escape(str(result.lock_file))}; later downloads must match it",
            soft_wrap=True,
        )
    check = result.check
    console.print(f"[bold]{check.source}[/bold]: {escape(str(check.path))}", soft_wrap=True)
    console.print(_check_table(check))
    for warning in check.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    for problem in check.problems:
        err_console.print(f"[bold red]problem:[/bold red] {escape(problem)}")
    if not check.ok:
        raise typer.Exit(EXIT_BAD_INPUT)
    console.print("[bold]next:[/bold]")
    for step in result.next_steps:
        console.print(escape(step), soft_wrap=True, highlight=False)
