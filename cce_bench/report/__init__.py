"""The study's answer as a file: ``report.md`` with figures and CSV exports, from stored runs.

``build_report(results_dir)`` reads only what the study wrote and never trains, so
``cce-bench report`` can rebuild it at any time; ``significance_table(results_dir)`` is the
table the CLI prints, and ``significance_as_dict`` the same table as JSON values.
"""

from cce_bench.report._build import build_report, significance_as_dict, significance_table
from cce_bench.report._compare import StudiesDifferError, compare_studies

__all__ = [
    "StudiesDifferError",
    "build_report",
    "compare_studies",
    "significance_as_dict",
    "significance_table",
]
