"""What tuning found, read back from the Optuna storage: best settings, trial counts, histories.

One Optuna study per arm, named ``<name>/<backbone>/<arm>`` (docs/interfaces.md). The report
only reads: a SQLite file that does not exist is never opened (SQLAlchemy would create an empty
database in the results folder), and a storage that cannot be opened or a study that is not in
it becomes "no tuning data" with the reason, because evaluation records alone still make a
valid report (e.g. a study whose tuning ran elsewhere).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from cce_bench.study.storage import MASK, open_readonly_storage, sqlite_path

#: Parameters shown as columns in the tuning table; loss parameters follow in one column.
COMMON_PARAMS: tuple[str, ...] = ("lr", "aug_strength")


@dataclass(frozen=True)
class ArmTuning:
    """The tuning of one (backbone, arm): counts, best trial, and the history to plot."""

    backbone: str
    arm: str
    counts: dict[str, int] = field(default_factory=dict)
    best_value: float = math.nan
    best_params: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    history: pd.DataFrame | None = None
    problem: str = ""


def read_tuning(
    storage_url: str, study_names: Mapping[tuple[str, str], Sequence[str]]
) -> tuple[list[ArmTuning], str]:
    """Every arm's tuning, plus a study-wide problem ("" when the storage opened).

    ``study_names`` maps (backbone, arm), in report order, to the names its Optuna study may
    have, the first found is read (a results folder copied under another name keeps its
    studies' original names).
    Optuna's logging is silenced while the storage opens: that is not news for a report.
    """
    import optuna

    path = sqlite_path(storage_url)
    if path is not None and not path.is_file():
        return _without_data(study_names), "no tuning data (no Optuna storage in the folder)"
    if MASK in storage_url:
        return _without_data(study_names), "no tuning data (the storage's password is not stored)"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        # The reader every read path shares: a report never changes the storage it reads.
        storage = open_readonly_storage(storage_url)
    except Exception as error:  # any driver or URL error means the same to a report
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return _without_data(study_names), f"no tuning data (storage unreadable: {reason})"
    finally:
        optuna.logging.set_verbosity(verbosity)
    if storage is None:  # the file went between the check above and the opening
        return _without_data(study_names), "no tuning data (no Optuna storage in the folder)"
    stored = {summary.study_name for summary in storage.get_all_studies()}
    tunings = []
    for (backbone, arm), names in study_names.items():
        found = [name for name in names if name in stored]
        if found:
            study = optuna.load_study(study_name=found[0], storage=storage)
            tunings.append(_arm_tuning(study, backbone, arm))
        else:
            tunings.append(ArmTuning(backbone, arm, problem=f"no study {names[0]} in storage"))
    storage.engine.dispose()
    return tunings, ""


def _without_data(study_names: Mapping[tuple[str, str], Sequence[str]]) -> list[ArmTuning]:
    return [ArmTuning(b, a, problem="no tuning data") for b, a in study_names]


def _arm_tuning(study, backbone: str, arm: str) -> ArmTuning:
    """Counts per state, the best complete trial, and the history frame of one arm's study."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): 0 for state in (TrialState.COMPLETE, TrialState.PRUNED)}
    counts.update(fail=0, running=0)
    for trial in trials:
        key = trial.state.name.lower()
        if key in counts:
            counts[key] += 1
    maximise = study.direction == StudyDirection.MAXIMIZE
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = (max if maximise else min)(complete, key=lambda t: t.value) if complete else None
    return ArmTuning(
        backbone=backbone,
        arm=arm,
        counts=counts,
        best_value=float(best.value) if best else math.nan,
        best_params=dict(best.params) if best else {},
        wall_time_s=sum(float(t.user_attrs.get("wall_time_s", 0.0) or 0.0) for t in trials),
        history=_history(trials, maximise),
        problem="" if best else "no complete trial",
    )


def _history(trials, maximise: bool) -> pd.DataFrame:
    """Trial number, value, state and running best; a pruned trial sits at its last report."""
    from optuna.trial import TrialState

    rows, best = [], math.nan
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            value = float(trial.value)
            better = value > best if maximise else value < best
            best = value if math.isnan(best) or better else best
            rows.append((trial.number, value, "COMPLETE", best))
        elif trial.state == TrialState.PRUNED and trial.intermediate_values:
            last = trial.intermediate_values[max(trial.intermediate_values)]
            rows.append((trial.number, float(last), "PRUNED", math.nan))
    return pd.DataFrame(rows, columns=["number", "value", "state", "best_so_far"])


def tuning_table(
    tunings: Sequence[ArmTuning], arm_labels: dict[str, str], *, scale: float = 100.0
) -> pd.DataFrame:
    """Display table: per arm the best settings, trials by state and the best validation value.

    ``scale`` displays the validation metric as the other tables do (percent for ratios).
    """
    rows = []
    for tuning in tunings:
        params = tuning.best_params
        loss_params = {k: v for k, v in params.items() if k not in COMMON_PARAMS}
        rows.append(
            {
                "Backbone": tuning.backbone,
                "Arm": arm_labels[tuning.arm],
                "Complete": tuning.counts.get("complete", "—"),
                "Pruned": tuning.counts.get("pruned", "—"),
                "Failed": tuning.counts.get("fail", "—"),
                "Best validation": "—"
                if math.isnan(tuning.best_value)
                else f"{tuning.best_value * scale:.2f}",
                "lr": f"{params['lr']:.2e}" if "lr" in params else "—",
                "aug_strength": f"{params['aug_strength']:.2f}"
                if "aug_strength" in params
                else "—",
                "Loss parameters": ", ".join(
                    f"{k} = {v:.3f}" for k, v in sorted(loss_params.items())
                )
                or "—",
                "Note": tuning.problem,
            }
        )
    table = pd.DataFrame(rows)
    return table if table["Note"].any() else table.drop(columns="Note")
