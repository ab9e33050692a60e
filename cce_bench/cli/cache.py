"""``cce-bench cache info | clean``: the decoded-image cache that training memory-maps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cce_bench.cli._console import console, print_json

app = typer.Typer(
    help="Show or empty the decoded-image cache (folder: --cache-dir, else "
    "$CCE_BENCH_CACHE_DIR, else $XDG_CACHE_HOME/cce-bench, i.e. ~/.cache/cce-bench).",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        envvar="CCE_BENCH_CACHE_DIR",
        help="Cache folder (default: $XDG_CACHE_HOME/cce-bench).",
    ),
]


@app.command("info", epilog="Example: cce-bench cache info (--json: for scripts)")
def info(
    cache_dir: CacheDir = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show the cache folder, its cache files and their total size."""
    from cce_bench.data.cache_folder import cache_contents

    contents = cache_contents(cache_dir)
    if json:
        print_json(contents.to_json_dict())
        return
    console.print(
        f"{escape(str(contents.folder))}: {len(contents.files)} cache file(s), "
        f"{_size(contents.bytes)}",
        soft_wrap=True,
    )
    for path in contents.files:
        console.print(f"  {escape(path.name)}  {_size(path.stat().st_size)}", highlight=False)


@app.command("clean", epilog="Example: cce-bench cache clean")
def clean(cache_dir: CacheDir = None) -> None:
    """Delete the cache files; the next run decodes its images again. Other files stay."""
    from cce_bench.data.cache_folder import clean_cache

    removed = clean_cache(cache_dir)
    console.print(
        f"removed {len(removed.files)} cache file(s), {_size(removed.bytes)}, from "
        f"{escape(str(removed.folder))}",
        soft_wrap=True,
    )


def _size(count: int) -> str:
    from cce_bench.data.catalogue import human_bytes

    return human_bytes(count)
