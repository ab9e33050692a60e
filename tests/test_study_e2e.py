"""A whole study end to end: real Ray (local, 2 CPUs), real SQLite, real training on tiny data.

The session's shared study (``finished_study`` in conftest.py, one small study run through the
CLI once per test session) is checked for what it left behind; the other tests resume, extend,
prune, and kill a driver mid-study, each in a copy of it or a study of its own.
"""

import contextlib
import itertools
import json
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from studies_for_tests import ARMS, arm_trials, finished, kill_session, write_study

from cce_bench.config import load_study
from cce_bench.study import check_tuning_split, run_study, study_status
from cce_bench.study._executor import Executor
from cce_bench.study._tuning import counts_against_budget
from cce_bench.study.storage import open_storage
from cce_bench.study.store import ResultsStore, latest_records

pytestmark = pytest.mark.slow


def test_every_arm_tunes_its_budget_and_evaluates_every_seed(finished_study):
    _, root, _ = finished_study
    for trials in arm_trials(root).values():
        assert sum(counts_against_budget(t) for t in trials) == 2
    keys = Counter((r["arm"], r["seed"], r["outcome"]) for r in ResultsStore(root).read_runs())
    assert keys == {(arm, seed, "completed"): 1 for arm in ARMS for seed in (0, 1)}


def test_trials_carry_learning_curves_and_where_they_ran(finished_study):
    _, root, _ = finished_study
    for trial in itertools.chain(*arm_trials(root).values()):
        assert set(trial.intermediate_values) >= {1}
        assert {"backbone", "arm", "images_per_s", "wall_time_s", "node", "outcome"} <= set(
            trial.user_attrs
        )


def test_cce_tau_first_trial_is_the_papers_tau(finished_study):
    _, root, _ = finished_study
    assert arm_trials(root)["cce_tau"][0].params["tau"] == 0.0


def test_run_records_predictions_and_the_tuned_params(finished_study):
    _, root, _ = finished_study
    store = ResultsStore(root)
    best = {arm: max(t.value for t in trials if t.value is not None)
            for arm, trials in arm_trials(root).items()}  # fmt: skip
    for record in store.read_runs():
        image_ids, y_true, proba = store.load_predictions(record)
        assert len(image_ids) == len(y_true) == len(proba) > 0
        assert record["spec"]["train_parts"] == ["train", "val"]
        assert record["spec"]["eval_part"] == "test"
        assert record["spec"]["lr"] == record["params"]["lr"]
        assert best[record["arm"]] is not None


def test_tuning_never_read_the_test_split(finished_study):
    _, root, _ = finished_study
    manifest = json.loads((root / "split.json").read_text())
    assert manifest  # the manifest of which ids sit in test is kept beside the results
    assert check_tuning_split(root) == []


def test_results_folder_keeps_the_study_as_run(finished_study):
    study, root, _ = finished_study
    stored = load_study(root / "study.toml")
    assert stored.fingerprint() == load_study(study).fingerprint()


def test_run_prints_the_report_and_significance_table(finished_study):
    _, root, output = finished_study
    assert "report:" in output and (root / "report.md").is_file()
    assert "p (Bonferroni)" in output and "Verdict" in output  # the significance table


def test_run_prints_a_wall_time_estimate_before_its_first_trial(finished_study):
    _, _, output = finished_study
    lines = output.splitlines()
    estimate = next(i for i, line in enumerate(lines) if "estimate: about" in line)
    first_start = next(i for i, line in enumerate(lines) if "] started " in line)
    assert estimate < first_start
    assert "for 8 trials and runs" in lines[estimate]  # 2 arms x (2 trials + 2 seeds)
    assert "resnet10t" in lines[estimate] and "img/s at 32 px" in lines[estimate]


def test_status_counts_trials_and_runs_without_running_anything(finished_study):
    _, root, _ = finished_study
    progress = study_status(root)
    assert [
        (a.arm.loss, a.complete + a.pruned, a.eval_done, a.eval_total) for a in progress.arms
    ] == [
        ("ce", 2, 2, 2),
        ("cce_tau", 2, 2, 2),
    ]


def test_rerun_resumes_without_redoing_work(finished_study, tmp_path):
    study, shared, _ = finished_study
    root = tmp_path / "results" / "tiny"
    shutil.copytree(shared, root)  # the shared study stays as run for the other readers
    trials_before = {arm: finished(t) for arm, t in arm_trials(root).items()}
    records_before = ResultsStore(root).read_runs()
    run_study(load_study(study), root.parent)
    assert {arm: finished(t) for arm, t in arm_trials(root).items()} == trials_before
    assert ResultsStore(root).read_runs() == records_before


def test_raising_budgets_extends_the_study(finished_study, tmp_path):
    _, root, _ = finished_study
    copy = tmp_path / "results" / "tiny"
    shutil.copytree(root, copy)
    records_before = ResultsStore(copy).read_runs()
    run_study(load_study(write_study(tmp_path, n_trials=3, seeds=3)), copy.parent)
    for trials in arm_trials(copy).values():
        assert sum(counts_against_budget(t) for t in trials) == 3
    records = ResultsStore(copy).read_runs()
    assert records[: len(records_before)] == records_before
    added = {(r["arm"], r["seed"]) for r in records[len(records_before) :]}
    assert added == {("ce", 2), ("cce_tau", 2)}


def test_a_changed_study_is_refused_with_a_diff_and_the_fresh_hint(finished_study, tmp_path):
    _, root, _ = finished_study
    shutil.copytree(root, tmp_path / "results" / "tiny")
    changed = write_study(tmp_path)
    changed.write_text(changed.read_text().replace("epochs = 2", "epochs = 3"))
    with pytest.raises(Exception, match=r"train\.epochs: 2 -> 3.*--fresh"):
        run_study(load_study(changed), tmp_path / "results")


def fake_train_getting_worse(counter: Path):
    """Trial k reports 0.9 - 0.3 k every epoch: from the third trial on, below the median.

    Each call leaves one uniquely named file in ``counter`` (two runs in flight at once may see
    the same k, but never overwrite each other's file, so the count of trainings is exact)."""
    import numpy as np

    from cce_bench.train import RunResult

    def train(spec, data, reporter=None):
        k = len(list(counter.iterdir()))
        (counter / f"{k}-{uuid.uuid4().hex}").touch()
        outcome, value = "completed", 0.9 - 0.3 * k
        for epoch in range(1, spec.epochs + 1):
            if reporter is not None and reporter(epoch, {"balanced_accuracy": value}):
                outcome = "pruned"
                break
        return RunResult(
            outcome=outcome, metrics={"balanced_accuracy": value}, history=[],
            image_ids=np.array(["a"]), y_true=np.array([0]),
            proba=np.ones((1, 7), np.float32) / 7, wall_time_s=0.0, images_per_s=0.0,
            peak_memory_mb=0.0, device="cpu", versions={}, node="host",
        )  # fmt: skip

    return train


def test_the_median_pruner_stops_trials_below_the_median(ray_local, tmp_path):
    study = write_study(tmp_path, n_trials=4)
    study.write_text(
        study.read_text()
        .replace('arms = ["ce", "cce_tau"]', 'arms = ["ce"]')
        .replace("max_concurrent = 2", "max_concurrent = 1")
        .replace("epochs = 2", "epochs = 3")
    )
    (tmp_path / "counter").mkdir()
    train = fake_train_getting_worse(tmp_path / "counter")
    run_study(load_study(study), tmp_path / "results", phases=("tune",), train_fn=train)
    storage = open_storage(ResultsStore(tmp_path / "results" / "tiny").storage_url)
    trials = optuna.load_study(study_name="tiny/resnet10t/ce", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED] * 2
    assert [len(t.intermediate_values) for t in trials] == [3, 3, 2, 2]


def test_images_go_to_the_object_store_once_per_image_size(ray_local, tmp_path, monkeypatch):
    puts = []
    original = Executor.put
    monkeypatch.setattr(Executor, "put", lambda self, data: puts.append(1) or original(self, data))
    (tmp_path / "counter").mkdir()
    train = fake_train_getting_worse(tmp_path / "counter")
    run_study(load_study(write_study(tmp_path)), tmp_path / "results", train_fn=train)
    assert len(list((tmp_path / "counter").iterdir())) == 8  # 4 trials + 4 evaluation runs
    assert len(puts) == 1


def _complete_trials(db: Path) -> int:
    if not db.is_file():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
        try:
            return con.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
        except sqlite3.OperationalError:  # tables not created yet
            return 0


#: How long the killed-driver test waits for its first finished trial: a hang guard, not a speed
#: check. The driver's own Ray start and first import of torch take seconds on an idle machine
#: and minutes on a slow one whose cores are busy, and the test only needs that trial to exist.
HANG_GUARD_S = 600


def test_driver_killed_mid_study_resumes_without_losing_or_duplicating(ray_local, tmp_path):
    study = write_study(tmp_path)
    root = tmp_path / "results" / "tiny"
    command = [sys.executable, "-c", "from cce_bench.cli import main; main()", "run", str(study),
               "--results-dir", str(tmp_path / "results")]  # fmt: skip
    driver = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while _complete_trials(root / "optuna.db") == 0 and time.monotonic() < deadline:
            assert driver.poll() is None, "the driver ended before any trial finished"
            time.sleep(0.2)
    finally:
        kill_session(driver.pid)
        driver.wait()
    assert _complete_trials(root / "optuna.db") >= 1
    before = {arm: finished(trials) for arm, trials in arm_trials(root).items()}
    run_study(load_study(study), tmp_path / "results")
    after = arm_trials(root)
    for arm, trials in after.items():
        assert set(before[arm]) <= set(finished(trials))  # nothing finished was lost
        assert sum(counts_against_budget(t) for t in trials) == 2  # nor done twice
    keys = Counter(
        (r["arm"], r["seed"]) for r in latest_records(ResultsStore(root).read_runs()).values()
    )
    assert keys == {(arm, seed): 1 for arm in ARMS for seed in (0, 1)}
    assert len(ResultsStore(root).read_runs()) == 4


def fake_train_sleeping(marker_dir: Path, sleep_s: float):
    """Sleeps, then leaves a marker: a marker proves the run was not cancelled."""
    import numpy as np

    from cce_bench.train import RunResult

    def train(spec, data, reporter=None):
        time.sleep(sleep_s)
        (marker_dir / f"{spec.loss}-{spec.lr}").touch()
        return RunResult(
            outcome="completed", metrics={"balanced_accuracy": 0.5}, history=[],
            image_ids=np.array(["a"]), y_true=np.array([0]),
            proba=np.ones((1, 7), np.float32) / 7, wall_time_s=0.0, images_per_s=0.0,
            peak_memory_mb=0.0, device="cpu", versions={}, node="host",
        )  # fmt: skip

    return train


def test_ctrl_c_cancels_runs_marks_trials_interrupted_and_records_nothing(ray_local, tmp_path):
    (tmp_path / "markers").mkdir()
    events = []

    def press_ctrl_c_at_second_start(progress):
        events.append(progress.event)
        if sum(event.startswith("started") for event in events) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(
            load_study(write_study(tmp_path)),
            tmp_path / "results",
            on_event=press_ctrl_c_at_second_start,
            train_fn=fake_train_sleeping(tmp_path / "markers", sleep_s=2.0),
        )
    root = tmp_path / "results" / "tiny"
    trials = list(itertools.chain(*arm_trials(root).values()))
    assert len(trials) == 2
    assert all(t.state == TrialState.FAIL and t.user_attrs["interrupted"] for t in trials)
    assert ResultsStore(root).read_runs() == []
    time.sleep(3.0)
    assert list((tmp_path / "markers").iterdir()) == []  # the running task was cancelled


def write_isic2018_test_set(folder: Path, n_images: int = 14) -> Path:
    """A tiny ISIC 2018 Task 3 test set: one-hot ground-truth CSV plus JPEGs."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    columns = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
    rows = ["image," + ",".join(columns)]
    rng = np.random.default_rng(0)
    for i in range(n_images):
        image_id = f"ISIC_{i:07d}"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
            folder / f"{image_id}.jpg"
        )
        rows.append(image_id + "," + ",".join("1.0" if c == i % 7 else "0.0" for c in range(7)))
    (folder / "ISIC2018_Task3_Test_GroundTruth.csv").write_text("\n".join(rows) + "\n")
    return folder


def fake_train_predicting_its_parts(calls: Path):
    """Predicts uniform probabilities for exactly the images of ``spec.eval_part`` and of each
    of ``spec.extra_eval_parts``; leaves one file per call in ``calls`` (one per training)."""
    import numpy as np

    from cce_bench.train import RunResult

    def scored(data, part):
        index = data.indices(part)
        proba = np.full((len(index), 7), 1 / 7, np.float32)
        return {"image_ids": data.image_ids[index], "y_true": data.labels[index], "proba": proba}

    def train(spec, data, reporter=None):
        (calls / uuid.uuid4().hex).touch()  # unique: runs in flight at once never collide
        evaluated = scored(data, spec.eval_part)
        return RunResult(
            outcome="completed", metrics={"balanced_accuracy": 0.5, "part": spec.eval_part},
            history=[], wall_time_s=0.0, images_per_s=0.0, peak_memory_mb=0.0, device="cpu",
            versions={}, node="host", **evaluated,
            extra_metrics={part: {"part": part} for part in spec.extra_eval_parts},
            extra_predictions={part: scored(data, part) for part in spec.extra_eval_parts},
        )  # fmt: skip

    return train


def test_an_external_test_set_is_scored_and_stored_beside_test(ray_local, tmp_path):
    external = write_isic2018_test_set(tmp_path / "isic2018")
    study = write_study(tmp_path, n_trials=1, seeds=1)
    study.write_text(
        study.read_text().replace("[models]", f'external_test = "{external}"\n[models]')
    )
    (tmp_path / "calls").mkdir()
    train = fake_train_predicting_its_parts(tmp_path / "calls")
    run_study(load_study(study), tmp_path / "results", train_fn=train)
    store = ResultsStore(tmp_path / "results" / "tiny")
    record = store.read_runs()[0]
    assert record["metrics"]["part"] == "test" and record["external_metrics"]["part"] == "external"
    image_ids, _, _ = store.load_predictions(record, part="external")
    assert sorted(image_ids) == [f"ISIC_{i:07d}" for i in range(14)]
    test_ids, _, _ = store.load_predictions(record)
    assert set(test_ids).isdisjoint(image_ids)


def test_an_external_test_set_costs_no_second_training(ray_local, tmp_path):
    external = write_isic2018_test_set(tmp_path / "isic2018")
    study = write_study(tmp_path, n_trials=1, seeds=1)
    study.write_text(
        study.read_text().replace("[models]", f'external_test = "{external}"\n[models]')
    )
    (tmp_path / "calls").mkdir()
    train = fake_train_predicting_its_parts(tmp_path / "calls")
    run_study(load_study(study), tmp_path / "results", train_fn=train)
    assert len(list((tmp_path / "calls").iterdir())) == 4  # 2 arms x (1 trial + 1 seed)


def fake_train_diverging_for(loss: str):
    """Completes every run, except those of ``loss``, which diverge at step 3."""
    import numpy as np

    from cce_bench.train import RunResult

    def train(spec, data, reporter=None):
        diverged = spec.loss == loss
        return RunResult(
            outcome="diverged" if diverged else "completed",
            metrics={} if diverged else {"balanced_accuracy": 0.5}, history=[],
            image_ids=np.array(["a"]), y_true=np.array([0]),
            proba=np.ones((1, 7), np.float32) / 7, wall_time_s=0.0, images_per_s=0.0,
            peak_memory_mb=0.0, device="cpu", versions={}, node="host",
            diverged_at_step=3 if diverged else None,
        )  # fmt: skip

    return train


def test_an_arm_without_a_complete_trial_is_recorded_and_the_others_evaluated(ray_local, tmp_path):
    train = fake_train_diverging_for("cce_tau")
    outcome = run_study(load_study(write_study(tmp_path)), tmp_path / "results", train_fn=train)
    assert len(outcome.problems) == 1 and "resnet10t/cce_tau" in outcome.problems[0]
    store = ResultsStore(tmp_path / "results" / "tiny")
    by_arm = Counter((r["arm"], r["outcome"]) for r in store.read_runs())
    assert by_arm == {("ce", "completed"): 2, ("cce_tau", "failed"): 2}
    trials = arm_trials(store.root)["cce_tau"]
    assert {t.user_attrs["reason"] for t in trials} == {"diverged at step 3"}


def test_fresh_starts_over_in_a_new_folder_and_is_resumed_there(finished_study, tmp_path):
    from cce_bench.study.store import resolve_results_folder

    _, root, _ = finished_study
    shutil.copytree(root, tmp_path / "results" / "tiny")
    changed = write_study(tmp_path)
    changed.write_text(changed.read_text().replace("epochs = 2", "epochs = 3"))
    spec = load_study(changed)
    store, notes = resolve_results_folder(spec, tmp_path / "results", fresh=True)
    assert store.root == tmp_path / "results" / "tiny-2"
    assert notes == (f"--fresh: starting over in {store.root}",)
    store.root.mkdir()
    store.write_study(spec.to_toml())
    assert resolve_results_folder(spec, tmp_path / "results")[0].root == store.root
    assert (tmp_path / "results" / "tiny" / "runs.jsonl").is_file()  # nothing was deleted


def test_a_study_is_refused_another_storage_than_its_own(finished_study, tmp_path):
    from cce_bench.errors import ResultsError

    study, shared, _ = finished_study
    root = tmp_path / "results" / "tiny"
    shutil.copytree(shared, root)
    with pytest.raises(ResultsError, match="pass the same --storage"):
        run_study(load_study(study), root.parent, storage=f"sqlite:///{tmp_path}/other.db")


def test_study_data_follows_the_synthetic_difficulty_of_the_study(tmp_path):
    from cce_bench.study import load_study_data

    def images(difficulty: float):
        study = write_study(tmp_path)
        study.write_text(
            study.read_text().replace("n_images = 200", f"n_images = 60\ndifficulty = {difficulty}")
        )
        return load_study_data(load_study(study))[0][32].images

    assert not np.array_equal(images(0.0), images(1.0))


def write_wide_ham10000(folder: Path, n_images: int = 200) -> Path:
    """A HAM10000-layout folder of 2:1 JPEGs (dermoscopy photos are wider than tall)."""
    from PIL import Image

    from cce_bench.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(folder, n_images, 16, seed=0)
    for jpeg in folder.rglob("*.jpg"):
        Image.open(jpeg).resize((64, 32)).save(jpeg)
    return folder


def real_data_study(tmp_path: Path, data: Path) -> Path:
    study = write_study(tmp_path, n_trials=1, seeds=1)
    study.write_text(
        study.read_text()
        .replace(
            'source = "synthetic"', f'source = "ham10000"\npath = "{data}"\nresize_mode = "pad"'
        )
        .replace("n_images = 200\n", "")
    )
    return study


def test_study_data_follows_the_resize_mode_of_the_study(tmp_path, monkeypatch):
    from cce_bench.study import load_study_data

    monkeypatch.setenv("CCE_BENCH_CACHE_DIR", str(tmp_path / "cache"))
    study = real_data_study(tmp_path, write_wide_ham10000(tmp_path / "ham"))
    padded = load_study_data(load_study(study))[0][32].images
    assert padded[:, :8].max() <= 8  # black bands above and below, not a squashed lesion


def test_a_moved_dataset_resumes_its_study(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("CCE_BENCH_CACHE_DIR", str(tmp_path / "cache"))
    study = real_data_study(tmp_path, write_wide_ham10000(tmp_path / "ham"))
    (tmp_path / "counter").mkdir()
    train = fake_train_getting_worse(tmp_path / "counter")
    run_study(load_study(study), tmp_path / "results", train_fn=train)
    shutil.move(tmp_path / "ham", tmp_path / "moved")
    moved = load_study(study, data_path=tmp_path / "moved")
    run_study(moved, tmp_path / "results", train_fn=train)
    assert len(list((tmp_path / "counter").iterdir())) == 4  # nothing ran a second time


def test_resuming_on_other_images_is_refused_naming_the_split(finished_study, tmp_path):
    from cce_bench.errors import ResultsError

    study, root, _ = finished_study
    copy = tmp_path / "results" / "tiny"
    shutil.copytree(root, copy)
    manifest = json.loads((copy / "split.json").read_text())
    manifest["parts"]["test"]["image_ids"][0] = "ISIC_not_in_the_data"
    (copy / "split.json").write_text(json.dumps(manifest))
    with pytest.raises(ResultsError, match=r"split\.json records another split.*'test'.*--fresh"):
        run_study(load_study(study), copy.parent)
