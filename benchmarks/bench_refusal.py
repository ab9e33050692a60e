"""How fast a broken study file is refused: `cce-bench run` on a misspelt key, end to end.

The claim it checks: a study file with a misspelt key is refused within 1 s of wall time after
Python starts, because the whole file is checked before torch, timm, Ray, scipy or statsmodels
are imported (backbone names come from timm's catalogue, cached once per timm version).

Side by side, in one run, each the median of ``--repeats`` fresh processes:

* ``python -c pass``: the interpreter's own start, which no CLI can avoid;
* ``cce-bench run typo.toml``: the refusal, exit code 2;
* the same refusal after importing the engine first (``cce_bench.study`` and timm), as the CLI
  did before: what the ordering saves.

The refusal's time after Python starts is the second minus the first. State the CPU (``lscpu``)
with the figures: they scale with it. Usage: ``python benchmarks/bench_refusal.py [--repeats 7]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TYPO_STUDY = 'name = "typo"\n[data]\nsorce = "synthetic"\n'


def wall_time(command: list[str], env: dict[str, str], expect: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != expect:
        raise SystemExit(f"{command} exited {done.returncode}, not {expect}:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        study = Path(folder) / "typo.toml"
        study.write_text(TYPO_STUDY)
        env = {**os.environ, "CCE_BENCH_CACHE_DIR": str(Path(folder) / "cache")}
        refuse = "from cce_bench.cli import main; main(['run', sys.argv[1]])"
        engine_first = "import cce_bench.study, timm; " + refuse
        commands = {
            "python -c pass": ([sys.executable, "-c", "pass"], 0),
            "cce-bench run typo.toml": ([sys.executable, "-c", f"import sys; {refuse}", study], 2),
            "the same, engine imported first": (
                [sys.executable, "-c", f"import sys; {engine_first}", str(study)],
                2,
            ),
        }
        wall_time(commands["cce-bench run typo.toml"][0], env, 2)  # warm the disk cache
        medians = {}
        for label, (command, expect) in commands.items():
            argv = [str(part) for part in command]
            times = [wall_time(argv, env, expect) for _ in range(args.repeats)]
            medians[label] = statistics.median(times)
            print(f"{label:34s} median {medians[label]:6.2f} s  (of {args.repeats})")
    start = medians["python -c pass"]
    refusal = medians["cce-bench run typo.toml"] - start
    before = medians["the same, engine imported first"] - start
    print(f"refusal after Python starts: {refusal:.2f} s (claim: at most 1 s)")
    print(f"engine imported first: {before:.2f} s after Python starts, {before / refusal:.1f}x")


if __name__ == "__main__":
    main()
