"""The results folder: atomic run records, corrupt-line detection, folder choice and guards."""

import json
import os

import numpy as np
import pytest

from cce_bench.errors import ResultsError
from cce_bench.study.store import (
    CorruptRecordError,
    ResultsStore,
    check_writable,
    folder_lock,
    latest_records,
)


def _record(seed: int, outcome: str = "completed", arm: str = "cce") -> dict:
    return {"phase": "evaluate", "backbone": "resnet18", "arm": arm, "seed": seed,
            "outcome": outcome, "metrics": {"top1": 0.5 + seed / 10}}  # fmt: skip


def _predictions(n: int = 4) -> dict:
    rng = np.random.default_rng(0)
    proba = rng.random((n, 7)).astype(np.float32)
    return {
        "image_ids": np.array([f"ISIC_{i:07d}" for i in range(n)], dtype=object),
        "y_true": np.arange(n) % 7,
        "proba": proba / proba.sum(1, keepdims=True),
    }


def test_append_run_writes_predictions_and_record_that_read_back(tmp_path):
    store = ResultsStore(tmp_path)
    predictions = _predictions()
    written = store.append_run(_record(0), predictions)
    assert written["predictions"] == "predictions/resnet18__cce__seed0.npz"
    assert store.read_runs() == [written]
    image_ids, y_true, proba = store.load_predictions(written)
    assert list(image_ids) == list(predictions["image_ids"])
    np.testing.assert_array_equal(y_true, predictions["y_true"])
    np.testing.assert_array_equal(proba, predictions["proba"])


def test_external_predictions_load_by_part(tmp_path):
    store = ResultsStore(tmp_path)
    external = {f"external_{k}": v[:2] for k, v in _predictions().items()}
    written = store.append_run(_record(0), {**_predictions(), **external})
    image_ids, _, proba = store.load_predictions(written, part="external")
    assert len(image_ids) == 2 and proba.shape == (2, 7)


def test_records_keep_append_order_one_json_object_per_line(tmp_path):
    store = ResultsStore(tmp_path)
    for seed in range(3):
        store.append_run(_record(seed))
    lines = store.runs_path.read_text().splitlines()
    assert [json.loads(line)["seed"] for line in lines] == [0, 1, 2]


def test_truncated_last_line_is_reported_with_file_and_line(tmp_path):
    store = ResultsStore(tmp_path)
    store.append_run(_record(0))
    with store.runs_path.open("ab") as handle:
        handle.write(b'{"phase": "evaluate", "backb')
    with pytest.raises(CorruptRecordError, match=r"runs\.jsonl line 2"):
        store.read_runs()


def test_repair_sets_a_truncated_last_line_aside_and_keeps_valid_records(tmp_path):
    store = ResultsStore(tmp_path)
    store.append_run(_record(0))
    with store.runs_path.open("ab") as handle:
        handle.write(b'{"phase": "evaluate", "backb')
    assert [r["seed"] for r in store.read_runs(repair=True)] == [0]
    assert b"backb" in (tmp_path / "runs.jsonl.corrupt").read_bytes()
    store.append_run(_record(1))
    assert [r["seed"] for r in store.read_runs()] == [0, 1]


def test_corrupt_line_before_the_last_is_never_repaired(tmp_path):
    store = ResultsStore(tmp_path)
    store.append_run(_record(0))
    with store.runs_path.open("ab") as handle:
        handle.write(b"not json\n")
    store.append_run(_record(1))
    with pytest.raises(CorruptRecordError, match="line 2"):
        store.read_runs(repair=True)


def test_the_latest_record_of_a_run_supersedes_its_earlier_attempts(tmp_path):
    store = ResultsStore(tmp_path)
    store.append_run(_record(0, outcome="failed"))
    store.append_run(_record(0, outcome="completed"))
    store.append_run(_record(1, outcome="failed"))
    latest = latest_records(store.read_runs())
    assert list(latest) == [("resnet18", "cce", 0), ("resnet18", "cce", 1)]
    assert [record["outcome"] for record in latest.values()] == ["completed", "failed"]


def test_default_storage_is_sqlite_in_the_folder(tmp_path):
    assert ResultsStore(tmp_path).storage_url == f"sqlite:///{tmp_path.resolve()}/optuna.db"


def test_recorded_storage_overrides_the_default(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_storage_url("postgresql://user:***@host/db")
    assert store.storage_url == "postgresql://user:***@host/db"


def test_optuna_study_name_follows_the_folder_name(tmp_path):
    store = ResultsStore(tmp_path / "quickstart-2")
    assert store.optuna_study_name("resnet18", "cce") == "quickstart-2/resnet18/cce"


def test_missing_study_file_names_the_folder(tmp_path):
    with pytest.raises(ResultsError, match=r"study\.toml is missing"):
        ResultsStore(tmp_path).study_dict()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_unwritable_results_folder_is_refused_before_any_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ResultsError, match="not a writable folder"):
            check_writable(ResultsStore(locked / "study"))
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_a_results_folder_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ResultsError, match="not a writable folder"):
        check_writable(ResultsStore(tmp_path / "file" / "study"))


def test_second_driver_on_one_folder_is_refused(tmp_path):
    store = ResultsStore(tmp_path)
    with (
        folder_lock(store),
        pytest.raises(ResultsError, match="another cce-bench is running"),
        folder_lock(store),
    ):
        pass


def test_atomic_writes_are_readable_by_others_under_a_permissive_umask(tmp_path):
    from cce_bench.study.store import atomic_write_bytes

    previous = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "split.json", b"{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "split.json").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]


# -- the analysis plan and the budgets of a started study ------------------------------------------
def _started(tmp_path, study: dict, name: str = "s"):
    """A results folder whose ``study.toml`` holds ``study`` (a dict), as a started study."""
    from cce_bench.config.schema import dumps_toml

    store = ResultsStore(tmp_path / name)
    store.root.mkdir()
    store.write_study(dumps_toml(study))
    return store


def _spec(**tables):
    from cce_bench.config import study_from_dict

    return study_from_dict({"name": "s", "data": {"source": "synthetic"}, **tables})


def test_a_folder_started_before_the_analysis_table_resumes_under_its_defaults(tmp_path):
    from cce_bench.study.store import resolve_results_folder

    old = _spec().to_dict()
    del old["analysis"]
    store = _started(tmp_path, old)
    assert resolve_results_folder(_spec(), tmp_path)[0].root == store.root


def test_changing_the_analysis_plan_after_runs_exist_is_refused_with_the_diff(tmp_path):
    from cce_bench.study.store import resolve_results_folder

    _started(tmp_path, _spec().to_dict())
    with pytest.raises(ResultsError, match=r"analysis\.margin: 0\.01 -> 0\.02"):
        resolve_results_folder(_spec(analysis={"margin": 0.02}), tmp_path)


def test_a_raised_budget_is_logged_with_when_from_what_and_to_what(tmp_path):
    from cce_bench.study.budget_log import budget_changes, record_budget_changes

    store = _started(tmp_path, _spec().to_dict())
    raised = _spec(evaluate={"seeds": 10}, tune={"n_trials": 4}).to_dict()
    entries = record_budget_changes(
        store, raised, completed_runs=30, at="2026-12-01T10:00:00+00:00"
    )
    assert entries == [
        {"at": "2026-12-01T10:00:00+00:00", "key": "evaluate.seeds", "from": 5, "to": 10,
         "completed_runs": 30},
    ]  # fmt: skip
    assert budget_changes(store) == entries
    assert store.study().evaluate.seeds == 10  # the next resume compares against the new budget
    assert record_budget_changes(store, raised, completed_runs=60) == []
    assert len(budget_changes(store)) == 1


def test_a_study_whose_budgets_never_changed_has_an_empty_log(tmp_path):
    from cce_bench.study.budget_log import budget_changes

    assert budget_changes(_started(tmp_path, _spec().to_dict())) == []
