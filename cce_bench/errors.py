"""The exceptions cce-bench raises for user mistakes.

Every error a user can fix derives from :class:`CceBenchError`; the CLI prints its message as
one red line and exits with code 2. Anything else is a bug: it keeps its traceback and exits 1.
(A study in which nothing completed is neither: the CLI exits 3, see ``cce_bench.cli``.)
Messages name the file, the field (or row) and the fix, because the user reads them, not us.
Modules may define narrower subclasses next to the concept they guard; these are the families.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CceBenchError(Exception):
    """Base class of every error caused by input the user can fix."""


class LossInputError(CceBenchError, ValueError):
    """Logits or targets handed to a loss have the wrong shape, dtype or range."""


class UnknownNameError(CceBenchError, KeyError):
    """A name (loss, source, split, policy, pruner, backbone) is not in its registry.

    Subclassing KeyError keeps registry lookups idiomatic; ``__str__`` is overridden because
    KeyError would otherwise print the message wrapped in quotes.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The valid choice closest to ``name`` (``difflib``'s ratio of at least 0.6), or None."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return close[0] if close else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the valid choice closest to ``name``, or "" when none is close.

    Every registry (losses, sources, splits, policies, classes) ends its unknown-name message
    with this hint, and a study file's unknown keys and names use :func:`closest` too, so a typo
    costs the user one read rather than a look at the docs.
    """
    close = closest(name, choices)
    return f" Did you mean {close!r}?" if close else ""


class StudyConfigError(CceBenchError):
    """A study file is missing, unparsable, or has a wrong key, type or value."""


class DataError(CceBenchError):
    """A dataset folder or file cannot be used as it is."""


class ModelError(CceBenchError):
    """A backbone cannot be built as asked (unknown name, size too small, bad weights)."""


class StorageError(CceBenchError):
    """The Optuna storage URL is malformed or unreachable."""


class ClusterError(CceBenchError):
    """Ray could not be started or joined."""


class ResultsError(CceBenchError):
    """The results folder cannot be used: not writable, corrupt records, or a changed study."""


class DownloadError(CceBenchError):
    """A dataset could not be fetched, verified or unpacked (``cce-bench data download``)."""
