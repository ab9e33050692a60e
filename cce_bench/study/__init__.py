"""A whole study: tune every arm with Optuna, evaluate the tuned settings over paired seeds on
Ray, keep every result on disk, and resume anything.

``run_study`` is what ``cce-bench run``, ``tune`` and ``evaluate`` call; ``study_status`` and
``serve_dashboard`` read a results folder without running anything. The results folder
(:mod:`cce_bench.study.store`) and the Optuna storage (:mod:`cce_bench.study.storage`) are the
whole state of a study, and the report reads them too.
"""

from cce_bench.study._arms import Arm
from cce_bench.study._dashboard import DashboardError, serve_dashboard
from cce_bench.study._driver import (
    StudyOutcome,
    check_tuning_split,
    load_study_data,
    run_study,
)
from cce_bench.study._progress import ArmProgress, StudyProgress, format_duration, study_status
from cce_bench.study._seeds import comparison_path, released_seeds

__all__ = [
    "Arm",
    "ArmProgress",
    "DashboardError",
    "StudyOutcome",
    "StudyProgress",
    "check_tuning_split",
    "comparison_path",
    "format_duration",
    "load_study_data",
    "released_seeds",
    "run_study",
    "serve_dashboard",
    "study_status",
]
