"""Shared test settings: quiet, offline, bounded, and nothing written outside tmp folders."""

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CCE_BENCH_CACHE_DIR", os.path.join(os.getcwd(), ".cache", "test-cache"))
