"""The ``cce-bench`` command line: a thin layer that parses, calls one library function, renders.

Each command module (``study``, ``train``, ``report``, ``data``) owns its Typer app; ``app``
gathers them under the root command. Each imports torch, timm, ray or pandas only inside its
command bodies, so that ``cce-bench --help`` answers in well under a second.
"""

from cce_bench.cli.app import app, main

__all__ = ["app", "main"]
