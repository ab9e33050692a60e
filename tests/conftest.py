"""Shared test settings: quiet, offline, bounded, and nothing written outside tmp folders."""

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CCE_BENCH_CACHE_DIR", os.path.join(os.getcwd(), ".cache", "test-cache"))


@pytest.fixture(scope="session")
def _ray_for_the_session():
    """Shuts the shared local Ray down when the session (or xdist worker) ends."""
    yield
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def loopback_only(monkeypatch):
    """Any connection to a host other than 127.0.0.1 fails the test; download retries do not
    pause, and no mirror set in the environment applies (the download tests use it)."""
    import socket

    from cce_bench.data import fetch

    connect = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] in ("127.0.0.1", "localhost"), f"a test tried to reach {address[0]}"
        return connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    monkeypatch.setattr(fetch, "RETRY_PAUSE_S", 0.0)
    monkeypatch.delenv("CCE_BENCH_DOWNLOAD_BASE", raising=False)


def _ensure_local_ray() -> None:
    import ray

    from cce_bench.study._executor import start_ray

    if not ray.is_initialized():
        start_ray(None, num_cpus=2)


@pytest.fixture(scope="module")
def ray_local(_ray_for_the_session):
    """A local Ray (2 CPUs) shared by every module that asks for it: its start costs ~7 s, paid
    once per session (per xdist worker) instead of once per module.

    Started again when a test before shut it down (a test that needs another Ray, such as one
    with pretend GPUs, shuts the shared one down first). It is always a Ray of its own
    (``start_ray`` starts local Rays with ``address="local"``), so it never joins the two-node
    cluster that ``test_cluster`` starts, nor another worker's Ray.
    """
    _ensure_local_ray()
    yield


@pytest.fixture(scope="session")
def finished_study(_ray_for_the_session, tmp_path_factory):
    """`cce-bench run tiny.toml`, in-process, once per session: (study file, results folder,
    what it printed). A real Ray study (about 8 runs); every module that only reads a finished
    study reads this one. A test that resumes, extends or breaks a study works on a copy
    (``shutil.copytree``), so the folder stays as the run left it for the other readers.
    """
    import contextlib
    import io

    from studies_for_tests import write_study

    from cce_bench.cli import main

    _ensure_local_ray()
    folder = tmp_path_factory.mktemp("shared-study")
    study = write_study(folder)
    output = io.StringIO()
    with contextlib.redirect_stdout(output), pytest.raises(SystemExit) as exit_info:
        main(["run", str(study), "--results-dir", str(folder / "results")])
    assert exit_info.value.code == 0, output.getvalue()
    return study, folder / "results" / "tiny", output.getvalue()


#: Test files by how long they take (their Ray studies, the two-node cluster), longest first.
#: Two xdist workers take whole files in collection order, so starting the long ones first keeps
#: one long file from running alone at the end while the other worker idles (the slowest tests
#: are printed by `make test`; refresh this list from them).
LONGEST_FILES_FIRST = (
    "test_study_e2e.py",
    "test_cluster.py",
    "test_faults.py",
    "test_errors_catalogue.py",
    "test_gpu_readiness.py",
    "test_gpu_cluster.py",
    "test_sequential_study.py",
    "test_json_for_scripts.py",
    "test_example_report.py",
    "test_pretrained.py",
    "test_engine_execution.py",
    "test_tuning_replicates.py",
    "test_determinism.py",
    "test_report.py",
)


def pytest_collection_modifyitems(session, config, items):
    """Long files first (a stable sort: the order within each file is kept)."""
    rank = {name: index for index, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
