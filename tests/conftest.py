"""Shared test settings: quiet, offline, bounded, and nothing written outside tmp folders."""

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CCE_BENCH_CACHE_DIR", os.path.join(os.getcwd(), ".cache", "test-cache"))


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray (2 CPUs) per test module that asks for it; its start costs ~7 s here.

    Shut down after the module, so that every module starts from a process without Ray (a Ray
    left running would make ``start_ray`` reuse it instead of joining another cluster).
    """
    import ray

    from cce_bench.study._executor import start_ray

    started = start_ray(None, num_cpus=2)
    yield
    if started:
        ray.shutdown()
