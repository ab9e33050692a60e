"""What every command prints to, and the exit codes it ends with.

Exit codes: 0 done; 1 a bug (the traceback is kept, please report it); 2 bad input, refused
before any work starts; 3 a study ran but no trial and no evaluation run completed (nothing to
report, but no bug either: the first failure's cause is printed); 4 the machines failed (no
node or GPU left that runs the study's runs, e.g. CUDA not visible); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape

EXIT_BAD_INPUT = 2
EXIT_NOTHING_COMPLETED = 3
EXIT_MACHINE_FAILURE = 4
EXIT_INTERRUPTED = 130

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def print_error(message: str) -> None:
    """One red line on stderr; the message is never parsed as markup."""
    one_line = " ".join(message.split())
    err_console.print(f"[bold red]error:[/bold red] {escape(one_line)}")


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout, unstyled and unwrapped, for ``jq`` and scripts.

    NaN is written as null (``json.loads`` elsewhere refuses ``NaN``).
    """
    text = json.dumps(_without_nan(data), indent=2, ensure_ascii=False)
    console.file.write(text + "\n")
    console.file.flush()


def _without_nan(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    return value


@dataclass
class Verbosity:
    """The root options ``--verbose`` / ``--quiet``, set once per invocation by the root callback.

    ``level`` is -1 (quiet), 0 or 1 (verbose); the commands read it to decide whether to show
    progress lines and the Ray workers' output.
    """

    level: int = 0

    @property
    def quiet(self) -> bool:
        return self.level < 0

    @property
    def verbose(self) -> bool:
        return self.level > 0


verbosity = Verbosity()

#: The ``cce_bench`` logger's level per verbosity: quiet keeps errors, a normal run warnings,
#: verbose everything the library says about what it is doing.
_LOG_LEVELS = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.DEBUG}


def configure_logging(level: int) -> None:
    """Send the ``cce_bench`` loggers to stderr at the level ``--verbose`` / ``--quiet`` ask for.

    Only the package's own logger is configured (never the root logger), so an application
    that imports ``cce_bench`` as a library keeps its own logging set-up. Called again (tests
    run many invocations in one process), it replaces the handler it added before.
    """
    from rich.logging import RichHandler  # not needed by `--help`, which never gets here

    verbosity.level = level
    logger = logging.getLogger("cce_bench")
    for handler in [h for h in logger.handlers if getattr(h, "_cce_bench_cli", False)]:
        logger.removeHandler(handler)
    handler = RichHandler(console=err_console, show_time=False, show_path=False)
    handler._cce_bench_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(_LOG_LEVELS[level])
    logger.propagate = False
