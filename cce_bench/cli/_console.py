"""What every command prints to, and the exit codes it ends with.

Exit codes: 0 done; 1 a bug (the traceback is kept, please report it); 2 bad input, refused
before any work starts; 3 a study ran but no trial and no evaluation run completed (nothing to
report, but no bug either: the first failure's cause is printed); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

EXIT_BAD_INPUT = 2
EXIT_NOTHING_COMPLETED = 3
EXIT_INTERRUPTED = 130

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def print_error(message: str) -> None:
    """One red line on stderr; the message is never parsed as markup."""
    one_line = " ".join(message.split())
    err_console.print(f"[bold red]error:[/bold red] {escape(one_line)}")
