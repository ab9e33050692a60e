"""The `cce-bench` command line: a thin layer that parses, calls one library function, renders.

Command groups live in their own modules (``data``, ``train``, ``study``) and register on the
shared Typer ``app`` when imported here; each imports torch, timm or ray only inside its
command bodies so that ``cce-bench --help`` answers in well under a second.
"""

from cce_bench.cli.app import app, main

__all__ = ["app", "main"]
