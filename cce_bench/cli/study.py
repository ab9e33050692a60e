"""`cce-bench run | tune | evaluate | status | dashboard`: a study from the command line.

Each command parses its flags, calls one library function (``cce_bench.study``) and renders
what it returns: a rich live table on a terminal, one plain line per event otherwise (CI logs,
``nohup``), so the same progress reads well in both places.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from cce_bench.cli._console import (
    EXIT_INTERRUPTED,
    EXIT_NOTHING_COMPLETED,
    console,
    err_console,
    print_error,
    print_json,
    verbosity,
)
from cce_bench.cli.report import render_report

if TYPE_CHECKING:
    from cce_bench.study import StudyOutcome, StudyProgress

app = typer.Typer()

StudyFile = Annotated[Path, typer.Argument(help="Study file (.toml).", show_default=False)]
ResultsFolder = Annotated[
    Path, typer.Argument(help="A study's results folder, <results-dir>/<name>.")
]
ResultsDir = Annotated[
    Path,
    typer.Option("--results-dir", envvar="CCE_BENCH_RESULTS", help="Where <name>/ folders go."),
]
DataPath = Annotated[
    Path | None, typer.Option("--data", help="Dataset path; overrides the study's data.path.")
]
# A storage URL may hold a database password: an environment variable keeps it out of `ps`
# and the shell's history. OPTUNA_STORAGE is the one Optuna's own CLI reads; ours comes first.
STORAGE_VARIABLES = ["CCE_BENCH_STORAGE", "OPTUNA_STORAGE"]
Storage = Annotated[
    str | None,
    typer.Option(
        "--storage",
        envvar=STORAGE_VARIABLES,
        help="Optuna storage URL (default: sqlite in the results folder).",
    ),
]
RecordedStorage = Annotated[
    str | None,
    typer.Option("--storage", envvar=STORAGE_VARIABLES, help="Storage URL, if not recorded."),
]
# RAY_ADDRESS is the variable `ray` itself reads, so a shell set up for Ray needs nothing more.
Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="RAY_ADDRESS",
        help="Join a running Ray cluster: `auto` or HOST:PORT (default: local).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of the table.")]
Fresh = Annotated[
    bool,
    typer.Option("--fresh", help="Start over in a new folder <name>-k; never deletes results."),
]
RESULTS = Path("results")


@app.command(
    epilog="Example: cce-bench run studies/quickstart.toml --results-dir results (exit code 3 "
    "when no trial or run completed)"
)
def run(
    study: Annotated[
        Path | None, typer.Argument(help="Study file (default: the quickstart).")
    ] = None,
    results_dir: ResultsDir = RESULTS,
    data: DataPath = None,
    storage: Storage = None,
    address: Address = None,
    fresh: Fresh = False,
) -> None:
    """Tune every arm, evaluate the tuned settings over paired seeds, and write the report."""
    from cce_bench.config import default_study_path

    study = study or default_study_path()
    outcome = _run_phases(study, ("tune", "evaluate"), results_dir, data, storage, address, fresh)
    render_report(outcome.results_dir)


@app.command(epilog="Example: cce-bench tune studies/quickstart.toml --storage sqlite:///tune.db")
def tune(
    study: StudyFile,
    results_dir: ResultsDir = RESULTS,
    data: DataPath = None,
    storage: Storage = None,
    address: Address = None,
    fresh: Fresh = False,
) -> None:
    """Run only the tuning phase: every arm's Optuna trials, resumable."""
    _run_phases(study, ("tune",), results_dir, data, storage, address, fresh)


@app.command(epilog="Example: cce-bench evaluate studies/quickstart.toml --address auto")
def evaluate(
    study: StudyFile,
    results_dir: ResultsDir = RESULTS,
    data: DataPath = None,
    storage: Storage = None,
    address: Address = None,
    fresh: Fresh = False,
) -> None:
    """Run only the evaluation phase: each arm's best trial over the paired seeds."""
    _run_phases(study, ("evaluate",), results_dir, data, storage, address, fresh)


@app.command(
    epilog="Example: cce-bench status results/quickstart (--json: the same numbers for scripts)"
)
def status(results_dir: ResultsFolder, storage: RecordedStorage = None, json: Json = False) -> None:
    """Show a study's trials and evaluation runs per arm, without running anything."""
    from cce_bench.study import study_status

    progress = study_status(results_dir, storage=storage)
    if json:
        print_json(progress.to_json_dict())
    else:
        console.print(progress_table(progress))


@app.command(epilog="Example: cce-bench dashboard results/quickstart --port 8080")
def dashboard(
    results_dir: ResultsFolder,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    storage: RecordedStorage = None,
    allow_edits: Annotated[
        bool,
        typer.Option(
            "--allow-edits",
            help="Let the dashboard delete, rename and annotate studies (default: read-only).",
        ),
    ] = False,
) -> None:
    """Serve optuna-dashboard on the study's storage (trials, learning curves) until Ctrl-C.

    Read-only unless --allow-edits: requests other than GET and HEAD are refused (403)."""
    from cce_bench.study import serve_dashboard

    url = f"http://{host}:{port}/"
    mode = "edits allowed" if allow_edits else "read-only"
    console.print(
        f"optuna-dashboard on {url} for {escape(str(results_dir))} ({mode})", soft_wrap=True
    )
    console.file.flush()
    try:
        serve_dashboard(results_dir, host=host, port=port, storage=storage, allow_edits=allow_edits)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


# -- running ---------------------------------------------------------------------------------
def _run_phases(
    study: Path,
    phases: tuple[str, ...],
    results_dir: Path,
    data: Path | None,
    storage: str | None,
    address: str | None,
    fresh: bool,
) -> StudyOutcome:
    from cce_bench.config import load_study

    # The whole file is checked before the engine (torch, Ray, Optuna, scipy: seconds) is
    # imported, so a typo is refused at once.
    spec = load_study(study, data_path=data)
    from cce_bench.study import run_study

    view = ProgressView()
    try:
        with view:
            outcome = run_study(
                spec,
                results_dir,
                phases=phases,
                storage=storage,
                address=address,
                fresh=fresh,
                on_event=view.update,
                worker_logs=verbosity.verbose,
            )
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted; rerun the same command to resume[/yellow]")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    for problem in outcome.problems:
        err_console.print(f"[yellow]warning:[/yellow] {escape(problem)}")
    console.print(f"results: {escape(str(outcome.results_dir))}")
    if outcome.failure is not None:
        print_error(
            f"no trial or evaluation run of {spec.name} completed; the first failure: "
            f"{outcome.failure}"
        )
        raise typer.Exit(EXIT_NOTHING_COMPLETED)
    return outcome


class ProgressView:
    """Live table on a terminal; otherwise one line per event, throttled to state changes;
    nothing with ``--quiet``."""

    def __init__(self) -> None:
        self.live: Live | None = None
        self.last: StudyProgress | None = None

    def __enter__(self) -> ProgressView:
        if console.is_terminal and not verbosity.quiet:
            self.live = Live(console=console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self, progress: StudyProgress) -> None:
        self.last = progress
        if self.live is not None:
            self.live.update(progress_table(progress))
        elif progress.event and not verbosity.quiet:
            console.print(escape(progress_line(progress)), soft_wrap=True, highlight=False)
            console.file.flush()  # a log file or pipe must show each line as it happens


def progress_line(progress: StudyProgress) -> str:
    """``[1m05s] finished ...: completed | trials 5/24 (1 pruned) | runs 0/30 | ETA 3m10s``."""
    from cce_bench.study import format_duration

    arms = progress.arms
    trials = sum(a.complete + a.pruned + a.failed for a in arms)
    pruned = sum(a.pruned for a in arms)
    budget = sum(a.n_trials for a in arms)
    runs = sum(a.eval_done for a in arms)
    total = sum(a.eval_total for a in arms)
    return (
        f"[{format_duration(progress.elapsed_s)}] {progress.event} | trials {trials}/{budget} "
        f"({pruned} pruned) | runs {runs}/{total} | ETA {format_duration(progress.eta_s)}"
    )


def progress_table(progress: StudyProgress) -> Table:
    """Per arm: trials done/budget, complete (ok), pruned, failed, running, best value, and
    evaluation runs done/total. Sized to fit 80 columns for the quickstart's arm names."""
    from cce_bench.metrics import metric_scale
    from cce_bench.study import format_duration

    scale, unit = metric_scale(progress.metric)
    title = f"{progress.name}: {progress.results_dir}"
    if progress.elapsed_s:
        elapsed, eta = format_duration(progress.elapsed_s), format_duration(progress.eta_s)
        title += f"  elapsed {elapsed}, ETA {eta}"
    table = Table(
        title=escape(title),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("backbone/arm", no_wrap=True)
    headers = ("trials", "ok", "pruned", "failed", "running", "best", "evals")
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True, min_width=len(header))
    for arm in progress.arms:
        best = "—" if arm.best_value is None else f"{arm.best_value * scale:.2f}"
        evals = f"{arm.eval_done}/{arm.eval_total}"
        if arm.eval_failed:
            evals += f" ({arm.eval_failed} failed)"
        if arm.problem:
            evals = "no complete trial"
        done = arm.complete + arm.pruned + arm.failed
        running = arm.running + arm.eval_running
        counts = (f"{done}/{arm.n_trials}", arm.complete, arm.pruned, arm.failed, running)
        table.add_row(escape(arm.label), *map(str, counts), best, evals)
    table.caption = escape(
        f"ok/pruned/failed: trials; best: validation {progress.metric}"
        + (f" ({unit})" if unit else "")
        + (f"; last: {progress.event}" if progress.event else "")
    )
    table.caption_justify = "left"
    return table
