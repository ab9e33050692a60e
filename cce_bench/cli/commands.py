"""Imports every command module so that each registers its commands on the app."""

import importlib

COMMAND_MODULES = ("data", "train", "study", "report")

for _name in COMMAND_MODULES:
    try:
        importlib.import_module(f"cce_bench.cli.{_name}")
    except ModuleNotFoundError as error:  # a command group not written yet
        if error.name != f"cce_bench.cli.{_name}":
            raise
