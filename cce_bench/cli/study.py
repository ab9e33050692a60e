"""`cce-bench run | tune | evaluate | status | dashboard`: a study from the command line.

Each command parses its flags, calls one library function (``cce_bench.study``) and renders
what it returns: a rich live table on a terminal, one plain line per event otherwise (CI logs,
``nohup``), so the same progress reads well in both places.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from cce_bench.cli.app import EXIT_INTERRUPTED, app, console, err_console
from cce_bench.estimate import format_duration

if TYPE_CHECKING:
    from cce_bench.study import StudyOutcome, StudyProgress

RESULTS_DIR = typer.Option(Path("results"), "--results-dir", help="Where <name>/ folders go.")
DATA = typer.Option(None, "--data", help="Dataset path; overrides the study's data.path.")
STORAGE = typer.Option(
    None, "--storage", help="Optuna storage URL (default: sqlite in the results folder)."
)
ADDRESS = typer.Option(
    None, "--address", help="Join a running Ray cluster: `auto` or HOST:PORT (default: local)."
)
FRESH = typer.Option(
    False, "--fresh", help="Start over in a new folder <name>-k; never deletes results."
)
STUDY_ARG = typer.Argument(..., help="Study file (.toml).", show_default=False)
#: A study that ran but in which no trial and no evaluation run completed: not a user input
#: error (exit 2, caught before work starts), but nothing to report either, so not success.
EXIT_NOTHING_COMPLETED = 1


@app.command()
def run(
    study: Path | None = typer.Argument(None, help="Study file (default: the quickstart)."),
    results_dir: Path = RESULTS_DIR,
    data: Path | None = DATA,
    storage: str | None = STORAGE,
    address: str | None = ADDRESS,
    fresh: bool = FRESH,
) -> None:
    """Tune every arm, evaluate the tuned settings over paired seeds, and write the report."""
    from cce_bench.config import default_study_path

    outcome = _run_phases(
        study or default_study_path(),
        ("tune", "evaluate"),
        results_dir,
        data,
        storage,
        address,
        fresh,
    )
    _render_report(outcome)


@app.command()
def tune(
    study: Path = STUDY_ARG,
    results_dir: Path = RESULTS_DIR,
    data: Path | None = DATA,
    storage: str | None = STORAGE,
    address: str | None = ADDRESS,
    fresh: bool = FRESH,
) -> None:
    """Run only the tuning phase: every arm's Optuna trials, resumable."""
    _run_phases(study, ("tune",), results_dir, data, storage, address, fresh)


@app.command()
def evaluate(
    study: Path = STUDY_ARG,
    results_dir: Path = RESULTS_DIR,
    data: Path | None = DATA,
    storage: str | None = STORAGE,
    address: str | None = ADDRESS,
    fresh: bool = FRESH,
) -> None:
    """Run only the evaluation phase: each arm's best trial over the paired seeds."""
    _run_phases(study, ("evaluate",), results_dir, data, storage, address, fresh)


@app.command()
def status(
    results_dir: Path = typer.Argument(..., help="A study's results folder, <results-dir>/<name>."),
    storage: str | None = typer.Option(None, "--storage", help="Storage URL, if not recorded."),
) -> None:
    """Show a study's trials and evaluation runs per arm, without running anything."""
    from cce_bench.study import study_status

    progress = study_status(results_dir, storage=storage)
    console.print(progress_table(progress))


@app.command()
def dashboard(
    results_dir: Path = typer.Argument(..., help="A study's results folder, <results-dir>/<name>."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8080, "--port", help="Port to listen on."),
    storage: str | None = typer.Option(None, "--storage", help="Storage URL, if not recorded."),
) -> None:
    """Serve optuna-dashboard on the study's storage (trials, learning curves) until Ctrl-C."""
    from cce_bench.study import serve_dashboard

    url = f"http://{host}:{port}/"
    console.print(f"optuna-dashboard on {url} for {escape(str(results_dir))}", soft_wrap=True)
    console.file.flush()
    try:
        serve_dashboard(results_dir, host=host, port=port, storage=storage)
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
    from cce_bench.study import run_study

    spec = load_study(study, data_path=data)
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
            )
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted; rerun the same command to resume[/yellow]")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    for problem in outcome.problems:
        err_console.print(f"[yellow]warning:[/yellow] {escape(problem)}")
    console.print(f"results: {escape(str(outcome.results_dir))}")
    if outcome.failure is not None:
        err_console.print(
            f"[bold red]error:[/bold red] no trial or evaluation run of {escape(spec.name)} "
            f"completed; the first failure: {escape(outcome.failure)}"
        )
        raise typer.Exit(EXIT_NOTHING_COMPLETED)
    return outcome


class ProgressView:
    """Live table on a terminal; otherwise one line per event, throttled to state changes."""

    def __init__(self) -> None:
        self.live: Live | None = None
        self.last: StudyProgress | None = None

    def __enter__(self) -> ProgressView:
        if console.is_terminal:
            self.live = Live(console=console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self, progress: StudyProgress) -> None:
        self.last = progress
        if self.live is not None:
            self.live.update(progress_table(progress))
        elif progress.event:
            console.print(escape(progress_line(progress)), soft_wrap=True, highlight=False)
            console.file.flush()  # a log file or pipe must show each line as it happens


def progress_line(progress: StudyProgress) -> str:
    """``[1m05s] finished ...: completed | trials 5/24 (1 pruned) | runs 0/30 | ETA 3m10s``."""
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
        best = "—" if arm.best_value is None else f"{arm.best_value:.4f}"
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
        + (f"; last: {progress.event}" if progress.event else "")
    )
    table.caption_justify = "left"
    return table


# -- the answer ------------------------------------------------------------------------------
def _render_report(outcome: StudyOutcome) -> None:
    """Build the report (issue 6) and print its path and significance tables, exactly as
    ``cce-bench report`` does (one renderer for both commands)."""
    from cce_bench.cli.report import render_report

    render_report(outcome.results_dir)
