"""The Optuna storage of a study: one URL, read back from the results folder by every reader."""

import optuna
import pytest

from cce_bench.study import check_tuning_split, study_status
from cce_bench.study.storage import open_storage, redact_url, same_storage
from cce_bench.study.store import ResultsStore

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: ``study.toml`` as a started study keeps it (the schema's defaults fill in the rest).
STORED_STUDY = """name = "tiny"
data = {source = "synthetic"}
models = {backbones = ["resnet10t"]}
losses = {arms = ["ce", "cce"]}
"""

CLEAN_SPEC = {"backbone": "resnet10t", "loss": "ce", "lr": 0.001,
              "train_parts": ["train"], "eval_part": "val"}  # fmt: skip


@pytest.fixture
def elsewhere(tmp_path) -> tuple[ResultsStore, str]:
    """A started study whose trials live in a storage outside its folder (``--storage``)."""
    store = ResultsStore(tmp_path / "results" / "tiny")
    store.write_study(STORED_STUDY)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    store.write_storage_url(url)
    return store, url


def _complete_trial(url: str, study_name: str, spec: dict) -> None:
    study = optuna.create_study(
        study_name=study_name, storage=open_storage(url), direction="maximize"
    )
    trial = study.ask()
    trial.set_user_attr("spec", spec)
    study.tell(trial, 0.5)


def test_status_counts_the_trials_of_a_study_run_with_another_storage(elsewhere):
    store, url = elsewhere
    _complete_trial(url, "tiny/resnet10t/ce", CLEAN_SPEC)
    progress = study_status(store.root)
    assert [arm.complete for arm in progress.arms] == [1, 0]


def test_tuning_split_check_reads_only_this_studys_trials_in_a_shared_storage(elsewhere):
    store, url = elsewhere
    _complete_trial(url, "tiny/resnet10t/ce", CLEAN_SPEC)
    leaky = {**CLEAN_SPEC, "train_parts": ["train", "test"]}
    _complete_trial(url, "another-folder/resnet10t/ce", leaky)  # another study's business
    assert check_tuning_split(store.root) == []


def test_a_url_sqlalchemy_cannot_parse_still_hides_what_may_be_a_password():
    assert redact_url("postgresql://user:s3cret@host:port/db") == "postgresql://***@host:port/db"
    assert redact_url("optuna.db") == "optuna.db"


def test_two_spellings_of_one_sqlite_file_are_the_same_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert same_storage("sqlite:///optuna.db", f"sqlite:///{tmp_path}/optuna.db")
    assert not same_storage("sqlite:///other.db", f"sqlite:///{tmp_path}/optuna.db")
    assert not same_storage("postgresql://u:pw@host/db", f"sqlite:///{tmp_path}/optuna.db")


def test_status_reads_the_budgets_a_stored_study_left_to_the_schema_defaults(elsewhere):
    store, _ = elsewhere  # its study.toml has no [tune] or [evaluate] table
    progress = study_status(store.root)
    assert {(arm.n_trials, arm.eval_total) for arm in progress.arms} == {(4, 5)}
