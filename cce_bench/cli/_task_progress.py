"""Progress of long tasks (download, checksum, unpack, decode) on stderr, as a terminal wants it
or as a log file wants it, and nothing with ``--quiet``.

stdout carries a command's result (``> file`` keeps it clean); progress is about the wait, so it
goes to stderr. A rich bar redraws in place, which a CI log or ``nohup.out`` shows as one long
line or as nothing; when stderr is not a terminal the same progress is a plain line per task
when it starts, one at most every ``interval_s`` while it runs, and one when it ends.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from rich.markup import escape

from cce_bench.cli._console import err_console, verbosity

if TYPE_CHECKING:
    from rich.progress import TaskID

#: ``advance(task, done, total)``: how a library function reports one task's progress.
Advance = Callable[[str, int, "int | None"], None]

#: Seconds between plain progress lines of one task (a 1.4 GB download logs a line a minute at
#: most, enough to show it is alive without flooding a log).
PLAIN_INTERVAL_S = 60.0


def _amount(count: int, in_bytes: bool) -> str:
    if not in_bytes:
        return f"{count:,}"
    from cce_bench.data.catalogue import human_bytes

    return human_bytes(count)


class PlainLines:
    """``advance`` that prints ``task: done / total (pct)`` lines, throttled per task."""

    def __init__(self, *, in_bytes: bool, interval_s: float = PLAIN_INTERVAL_S) -> None:
        self.in_bytes = in_bytes
        self.interval_s = interval_s
        self.last: dict[str, float] = {}
        self.finished: set[str] = set()

    def __call__(self, task: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if task in self.finished:
            return
        started = task not in self.last
        if not (started or finished or now - self.last[task] >= self.interval_s):
            return
        self.last[task] = now
        line = f"{task}: {_amount(done, self.in_bytes)}"
        if total:
            line += f" / {_amount(total, self.in_bytes)} ({done / total:.0%})"
        if finished:
            self.finished.add(task)
            line += " done"
        err_console.print(escape(line), soft_wrap=True, highlight=False)


@contextlib.contextmanager
def task_progress(*, in_bytes: bool) -> Iterator[Advance]:
    """Yield ``advance(task, done, total)`` for a library function's ``progress`` argument.

    A rich bar per task on a terminal (bytes, rate and time left when ``in_bytes``), plain
    lines otherwise, nothing with ``--quiet``. The display starts with the first task, so a
    command refused before its first byte prints nothing but its error.
    """
    if verbosity.quiet:
        yield lambda task, done, total: None
        return
    if not err_console.is_terminal:
        yield PlainLines(in_bytes=in_bytes)
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    amounts = (DownloadColumn(), TransferSpeedColumn()) if in_bytes else (MofNCompleteColumn(),)
    columns = (TextColumn("{task.description}"), BarColumn(), *amounts, TimeRemainingColumn())
    bar = Progress(*columns, console=err_console)
    tasks: dict[str, TaskID] = {}

    def advance(task: str, done: int, total: int | None) -> None:
        if not tasks:
            bar.start()
        if task not in tasks:
            tasks[task] = bar.add_task(escape(task), total=total)
        bar.update(tasks[task], completed=done, total=total)

    try:
        yield advance
    finally:
        if tasks:
            bar.stop()
