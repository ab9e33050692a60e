"""cce-bench: does Confusion-aware Cross Entropy beat cross entropy for skin-lesion classification?

The package is a library first (every command's work is a function a test can call) and a CLI
second (`cce_bench.cli`, the only module that prints for people). Heavy libraries (torch, timm,
ray) are imported inside the functions that need them so that `cce-bench --help` stays instant.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cce-bench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from cce_bench.errors import CceBenchError

__all__ = ["CceBenchError", "__version__"]
