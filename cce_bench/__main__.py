"""``python -m cce_bench``: the same command line as ``cce-bench``."""

from cce_bench.cli import main

if __name__ == "__main__":
    main()
