"""The study's answer as a file: ``report.md`` with figures and CSV exports, from stored runs.

``build_report(results_dir)`` reads only what the study wrote and never trains, so
``cce-bench report`` can rebuild it at any time; ``significance_table(results_dir)`` is the
table the CLI prints, and ``report_as_json`` the analysis as typed values, nothing written.
"""

from cce_bench.report._build import build_report, significance_as_dict, significance_table
from cce_bench.report._compare import StudiesDifferError, compare_studies
from cce_bench.report._json import REPORT_SCHEMA_VERSION, report_as_json

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "StudiesDifferError",
    "build_report",
    "compare_studies",
    "report_as_json",
    "significance_as_dict",
    "significance_table",
]
