"""The ``cce-bench`` application: the command modules' Typer apps under one root, and the
mapping from what a command raised to the exit code a shell sees."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from cce_bench import __version__
from cce_bench.cli import cache, compare, data, plan, report, study, train
from cce_bench.cli._console import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_MACHINE_FAILURE,
    configure_logging,
    console,
    err_console,
    print_error,
)
from cce_bench.errors import CceBenchError

app = typer.Typer(
    name="cce-bench",
    help="Tune, train and compare cross entropy (CE) against Confusion-aware Cross Entropy (CCE) "
    "for skin-lesion classification, with paired statistics over seeds.",
    epilog="Example: cce-bench run (the quickstart study, about 5 minutes on a laptop). Exit "
    "codes: 0 done, 1 a bug (traceback), 2 bad input, 3 no trial or run completed, "
    "4 the machines failed, 130 interrupted.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(study.app)
app.add_typer(train.app)
app.add_typer(report.app)
app.add_typer(compare.app)
app.add_typer(plan.app)
app.add_typer(data.app, name="data")
app.add_typer(cache.app, name="cache")


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"cce-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Log what the study is doing, and show the Ray workers' own output.",
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Hide progress lines; errors are still shown."),
    ] = False,
) -> None:
    """Tune, train and compare CE against CCE for skin-lesion classification."""
    if verbose and quiet:
        raise typer.BadParameter("--verbose and --quiet exclude each other", param_hint="--quiet")
    configure_logging(1 if verbose else -1 if quiet else 0)


def report_usage_error(error: Any) -> None:
    """Print a command-line usage error as one red line naming the command's --help.

    A group called without a command (``cce-bench``, ``cce-bench data``) has printed its help
    already (Typer's rich help prints as it formats); it gets no error line after it.
    """
    if type(error).__name__ == "NoArgsIsHelpError":
        help_text = error.format_message()
        if help_text.strip():  # plain click formats the help instead of printing it
            console.print(help_text, markup=False, highlight=False)
        return
    context = getattr(error, "ctx", None)
    command = context.command_path if context is not None else "cce-bench"
    message = " ".join(error.format_message().split())
    err_console.print(
        f"[bold red]error:[/bold red] {escape(message)} (see `{escape(command)} --help`)"
    )


def _click_exception_types() -> tuple[Any, type[typer.Exit], tuple[type[BaseException], ...]]:
    """(usage error base, exit, abort) classes of whichever click Typer runs on.

    Typer >= 0.29 vendors its own click whose exceptions are not subclasses of the ``click``
    package's; older Typer uses ``click`` itself. Either way ``typer.BadParameter`` is one of
    them, so the base is found among its ancestors, without importing a private module.
    """
    click_exception = next(
        base for base in typer.BadParameter.__mro__ if base.__name__ == "ClickException"
    )
    return click_exception, typer.Exit, (typer.Abort, KeyboardInterrupt)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and turn user errors into exit code 2."""
    click_exception, exit_type, abort_types = _click_exception_types()
    from cce_bench.train._machine import MachineFailure

    try:
        result = app(args=argv, standalone_mode=False)
    except MachineFailure as error:
        print_error(str(error))
        sys.exit(EXIT_MACHINE_FAILURE)
    except CceBenchError as error:
        print_error(str(error))
        sys.exit(EXIT_BAD_INPUT)
    except exit_type as exit_:
        sys.exit(exit_.exit_code)
    except click_exception as error:
        report_usage_error(error)
        sys.exit(EXIT_BAD_INPUT)
    except abort_types:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(result if isinstance(result, int) else 0)
