"""Datasets: sources by name, leakage-free splits, a decode-once cache, batched augmentation.

The modules are used by name (``cce_bench.data.sources``, ``.splits``, ``.cache``, ...); the
package itself holds only the defaults of the synthetic source, kept here (no import beyond the
standard library) so that the command line can show them in ``--help`` without loading numpy.
"""

#: Images the synthetic source generates when a study or ``cce-bench train`` gives no count:
#: about 650 train, 150 validation and 200 test images at the shipped fractions, enough for
#: seven classes in every part and a 2-epoch run in seconds on one CPU thread.
SYNTHETIC_N_IMAGES = 1000

#: How alike the synthetic source's confusable classes look, in [0, 1]; 0.5 keeps the paper's
#: confused pairs hard to tell apart without making them indistinguishable.
SYNTHETIC_DIFFICULTY = 0.5

__all__ = ["SYNTHETIC_DIFFICULTY", "SYNTHETIC_N_IMAGES"]
