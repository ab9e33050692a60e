"""Imports every command module so that each registers its commands on the app.

Each module imports torch, timm, ray or pandas only inside its command bodies, so importing
them all here keeps ``cce-bench --help`` well under a second.
"""

from cce_bench.cli import data, report, study, train

__all__ = ["data", "report", "study", "train"]
