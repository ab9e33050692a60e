"""``cce-bench report --json``: the study's answer as typed values for scripts, nothing written.

The JSON is computed from the stored runs exactly as the report is (one
:func:`cce_bench.report._build.judge`), but it writes no file: a script may read a results
folder it cannot write, and asking twice costs one analysis each time. Every comparison of
``stats.csv`` is a row, in the report's families, with its numbers at full precision (the
metric's own scale, fractions for ratios), so a script never parses formatted text. The shape is
docs/report.schema.json, versioned by ``schema_version``.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cce_bench.report._build import REPORT_FILE, judge
from cce_bench.report._results import load_results

#: The version of the JSON's shape; a change that removes or renames a field increments it.
REPORT_SCHEMA_VERSION = 1

#: Columns only an anytime design's comparisons have; every row carries them (null otherwise),
#: so that one schema fits both designs.
ANYTIME_COLUMNS = ("fixed_n_verdict", "e_value", "cs_low", "cs_high", "verdict_seeds")


def json_value(value: Any) -> Any:
    """A plain JSON value: numpy scalars unwrapped, NaN and infinities as null."""
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    return value


def report_as_json(results_dir: Path | str) -> dict[str, Any]:
    """The plan, every comparison with its family, and the anytime design's looks.

    ``report`` is the path of ``report.md`` when one has been written, else null. Reads only.
    """
    results = load_results(results_dir)
    answer = judge(results)
    plan, spec = answer.plan, results.spec
    looks = {
        (item.backbone, item.arm): {
            "decided": item.decided,
            "verdict": item.verdict,
            "looks": [asdict(look) for look in item.path],
        }
        for item in answer.sequential or ()
    }
    rows = []
    for row in answer.comparisons.to_dict("records"):
        row = {**row, **{key: row.get(key) for key in ANYTIME_COLUMNS}}
        row = {str(key): json_value(value) for key, value in row.items()}
        for key in ("adjustment", "fixed_n_verdict"):
            row[key] = row[key] or None  # "" in stats.csv: not adjusted, not an anytime row
        if row["verdict_seeds"] is not None:
            row["verdict_seeds"] = int(row["verdict_seeds"])
        row["comparison"] = (
            f"{results.arm_labels[row['arm']]} vs {results.arm_labels[row['baseline']]}"
        )
        sequential = looks.get((row["backbone"], row["arm"]))
        is_sequential = sequential is not None and row["family"] == "confirmatory"
        row["anytime"] = json_value(sequential) if is_sequential else None
        rows.append(row)
    report = results.store.root / REPORT_FILE
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "study": spec.name,
        "results_dir": str(results.store.root),
        "report": str(report) if report.is_file() else None,
        "plan": {
            "design": spec.evaluate.stopping,
            "primary_metric": plan.primary_metric,
            "baseline": results.baseline,
            "compared": list(plan.compared),
            "backbones": list(plan.backbones),
            "alpha": plan.alpha,
            "family_size": plan.size,
            "margin": plan.margin,
            "interval_level": plan.level,
            "adjustment": "holm",
            "verdict_from": "anytime" if answer.sequential is not None else "fixed",
        },
        "seeds": json_value(list(results.seeds)),
        "comparisons": rows,
    }
