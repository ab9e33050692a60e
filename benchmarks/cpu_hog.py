"""Hold one CPU core busy until killed: the load under which `make test-under-load` runs.

A shared CI runner or a developer's busy laptop leaves the suite less than the whole machine;
a test that only passes on an idle one is measuring speed, not behaviour.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pidfile", type=Path, help="Write this process's id here.")
    args = parser.parse_args()
    if args.pidfile:
        args.pidfile.write_text(str(os.getpid()))
    spin = 0
    while True:  # pure Python arithmetic: one core at 100 %, no memory, no I/O
        spin = (spin * 1103515245 + 12345) % 2**31


if __name__ == "__main__":
    main()
