"""Study files: the schema, reading a study file, and every check it passes before work starts.

``load_study(path)`` reads a study file and validates all of it (unknown keys, types, bounds,
names in registries, combinations of keys), so that a typo costs seconds, not a GPU-day; the
result is a frozen :class:`StudySpec`. The schema itself is :mod:`cce_bench.config.schema`.
"""

from cce_bench.config._load import (
    default_study_path,
    load_study,
    read_stored_study,
    study_from_dict,
)
from cce_bench.config._reader import StudyFileError
from cce_bench.config.schema import (
    BUDGET_KEYS,
    PLACEMENT_KEYS,
    AnalysisSpec,
    DataSpec,
    EvaluateSpec,
    LossesSpec,
    ModelsSpec,
    ResourcesSpec,
    SearchSpace,
    StudySpec,
    TrainSpec,
    TuneSpec,
    diff_studies,
)

__all__ = [
    "BUDGET_KEYS",
    "PLACEMENT_KEYS",
    "AnalysisSpec",
    "DataSpec",
    "EvaluateSpec",
    "LossesSpec",
    "ModelsSpec",
    "ResourcesSpec",
    "SearchSpace",
    "StudyFileError",
    "StudySpec",
    "TrainSpec",
    "TuneSpec",
    "default_study_path",
    "diff_studies",
    "load_study",
    "read_stored_study",
    "study_from_dict",
]
