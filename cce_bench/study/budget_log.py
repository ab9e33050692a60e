"""The log of a study's budget changes: every change of ``tune.n_trials`` or ``evaluate.seeds``.

A study may change its budgets after it started (``config.BUDGET_KEYS``): that is how a user
extends it. But raising ``evaluate.seeds`` after a report was read tests the same test set
again: the decision to continue depended on the data, and a fixed-n test that ignores it is
optimistic (optional continuation: one extra look, at 5 and then 10 seeds, takes a 5% test to
about 8.5% under the null). A look cannot be undone, so each one is recorded, and the report
lists them under "Looks at the data".

``<results>/budget_changes.jsonl`` holds one JSON object per change, appended by the resume
that made it: ``at`` (UTC, ISO 8601), ``key``, ``from``, ``to`` and ``completed_runs`` (the
evaluation runs completed by then; 0 means no test result could have been read yet).
"""

from __future__ import annotations

import copy
import datetime
import json
import os
from pathlib import Path
from typing import Any

from cce_bench.config import BUDGET_KEYS
from cce_bench.config.schema import dumps_toml
from cce_bench.errors import ResultsError
from cce_bench.study.store import ResultsStore

BUDGET_LOG_FILE = "budget_changes.jsonl"


def budget_log_path(store: ResultsStore) -> Path:
    return store.root / BUDGET_LOG_FILE


def record_budget_changes(
    store: ResultsStore, study: dict[str, Any], *, completed_runs: int, at: str | None = None
) -> list[dict[str, Any]]:
    """Log each budget of ``study`` that differs from the stored study's, then store it.

    ``study`` is the ``StudySpec.to_dict()`` of the study being resumed. The stored
    ``study.toml`` takes its budgets once the log line is on disk, so the next resume compares
    against them and logs only a further change. Returns the new entries (usually none).
    """
    stored = store.study().to_dict()
    when = at or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    entries, updated = [], copy.deepcopy(store.study_dict())
    for key in BUDGET_KEYS:
        section, _, leaf = key.partition(".")
        # An optional budget left unset (``evaluate.max_seeds``) is absent from to_dict().
        before, after = stored[section].get(leaf), study[section].get(leaf)
        if before != after:
            entry = {"at": when, "key": key, "from": before, "to": after}
            entries.append({**entry, "completed_runs": completed_runs})
            if after is None:
                updated.get(section, {}).pop(leaf, None)
            else:
                updated.setdefault(section, {})[leaf] = after
    if entries:
        lines = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries)
        with budget_log_path(store).open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
        store.write_study(dumps_toml(updated))
    return entries


def budget_changes(store: ResultsStore) -> list[dict[str, Any]]:
    """Every logged budget change, oldest first ([] when the budgets never changed)."""
    path = budget_log_path(store)
    if not path.is_file():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ResultsError(
                f"{path} line {number} is not a JSON record; restore the file (it lists the "
                "budget changes a report must show)"
            ) from error
    return entries
