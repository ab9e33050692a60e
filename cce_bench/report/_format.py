"""How the report writes numbers: differences, intervals, p-values, levels.

Conventions, stated once in the report: differences are in percentage points (pp) for ratio
metrics and in absolute units for AUC; p-values below 0.001 are shown in scientific notation
rather than rounded to zero; "—" marks a number that could not be computed.
"""

from __future__ import annotations

import math
from typing import Any

from cce_bench.report._tables import metric_scale


def fmt_p(p: float | None) -> str:
    """A p-value: 3 decimals, scientific below 0.001, "—" when it could not be computed."""
    if p is None or math.isnan(p):
        return "—"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def fmt_diff(value: float, metric: str, *, unit: bool = False) -> str:
    """A difference in pp (ratios) or absolute units (AUC), always signed; ``unit`` adds "pp"."""
    if math.isnan(value):
        return "—"
    scale = metric_scale(metric)[0]
    if scale == 1.0:
        return f"{value:+.3f}"
    return f"{value * scale:+.2f}" + (" pp" if unit else "")


def fmt_interval(low: float, high: float, metric: str) -> str:
    if math.isnan(low) or math.isnan(high):
        return "—"
    return f"[{fmt_diff(low, metric)}, {fmt_diff(high, metric)}]"


def fmt_effect(d_z: float) -> str:
    if math.isnan(d_z):
        return "—"
    return f"{d_z:+.2f}" if math.isfinite(d_z) else ("+inf" if d_z > 0 else "-inf")


def fmt_level(level: float) -> str:
    """A confidence level as a percentage with no trailing zeros: 95%, 98.75%."""
    return f"{level * 100:.4f}".rstrip("0").rstrip(".") + "%"


def fmt_count(value: Any) -> str:
    """A count that may be missing (None or NaN in a frame): "—" then."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return str(int(value))


def excludes_zero(low: float, high: float) -> bool:
    """True when an interval lies wholly on one side of 0."""
    return (low > 0.0 or high < 0.0) and not (math.isnan(low) or math.isnan(high))
