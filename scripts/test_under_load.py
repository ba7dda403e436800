"""Run the whole test suite with every core busy, as on a loaded CI machine or laptop.

Starts one CPU-bound process per core (a tight loop at normal priority), runs the README's
test command (`python -m pytest -q`, extra arguments passed through), stops the loops, and exits
with pytest's exit code. The suite must pass like this: wall limits in tests are generous
except where the timeout itself is under test.

Usage: python scripts/test_under_load.py [pytest args...]
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def burn() -> None:
    x = 0
    while True:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def main() -> int:
    cores = os.cpu_count() or 1
    ctx = multiprocessing.get_context("spawn")
    loops = [ctx.Process(target=burn, daemon=True) for _ in range(cores)]
    for p in loops:
        p.start()
    print(f"load: {cores} busy loops (one per core); running the suite", flush=True)
    t0 = time.monotonic()
    try:
        code = subprocess.run([sys.executable, "-m", "pytest", "-q", *sys.argv[1:]], cwd=ROOT).returncode
    finally:
        for p in loops:
            p.kill()
        for p in loops:
            p.join()
    print(f"suite under load: exit {code} in {time.monotonic() - t0:.0f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
