"""Mutation score of the modules where a silent bug corrupts data (goal: >= 90% killed each).

Runs `mutmut run` (configured in pyproject.toml: [tool.mutmut]; the fast unit tests of those
modules are the test selection), then scores each target and lists every surviving mutant with
its diff, so each one can be explained or killed.

Targets: the verdict mapping (sandbox/verdict.py), the stdin comparison rules (sandbox/stdio.py),
difficulty and chosen trial (kodcode_async/stages/solutions.py: difficulty, kodcode_row,
SolveOptions), the journal (kodcode_async/journal.py), the parser (kodcode_async/parsing.py) and
the writers' recovery (kodcode_async/writers.py), question extraction (kodcode_async/extract.py),
seed files (kodcode_async/seeds.py) and the on-disk id set (kodcode_async/idset.py). Functions of those files outside the targets
(the solve stage's request/parse/settle, exercised end to end by the pipeline tests) are listed
but not scored.

Usage: python benchmarks/mutation_score.py [--no-run]     (needs `pip install -e '.[dev]'`)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "sandbox.verdict": None,  # None: every function of the module
    "sandbox.stdio": None,
    "kodcode_async.stages.solutions": {"x_difficulty", "x_kodcode_row", "xǁSolveOptionsǁ__post_init__"},
    "kodcode_async.journal": None,
    "kodcode_async.parsing": None,
    "kodcode_async.writers": None,
    "kodcode_async.extract": None,
    "kodcode_async.seeds": None,
    "kodcode_async.idset": None,
}
GOAL = 0.90


def results() -> list[tuple[str, str, str, str]]:
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    rows = []
    for line in out.splitlines():
        line = line.strip()
        if not line or ": " not in line:
            continue
        name, status = line.rsplit(": ", 1)
        m = re.match(r"(.+?)\.(x[_ǁ].*?)__mutmut_\d+$", name)
        if m:
            rows.append((m.group(1), m.group(2), name, status))
    return rows


def diff(name: str) -> str:
    shown = subprocess.run(["mutmut", "show", name], cwd=ROOT, capture_output=True, text=True).stdout
    return " | ".join(line[:150] for line in shown.splitlines() if line.startswith(("- ", "+ ")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-run", action="store_true", help="score the last `mutmut run` instead of running it")
    args = ap.parse_args()
    if not args.no_run:
        subprocess.run(["mutmut", "run"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    score: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    survivors: dict[str, list[str]] = defaultdict(list)
    outside: dict[str, int] = defaultdict(int)
    for module, func, name, status in results():
        wanted = TARGETS.get(module, set())
        if wanted is not None and func not in wanted:
            outside[module] += 1
            continue
        killed = status in ("killed", "timeout")
        score[module]["killed" if killed else "survived"] += 1
        if not killed:
            survivors[module].append(f"{name} [{status}]: {diff(name)}")
    ok = True
    print(f"{'module':<34}{'mutants':>9}{'killed':>8}{'score':>8}")
    for module in TARGETS:
        k, s = score[module]["killed"], score[module]["survived"]
        pct = k / (k + s) if k + s else 0.0
        ok &= pct >= GOAL
        print(f"{module:<34}{k + s:>9}{k:>8}{pct:>8.1%}")
    total_k = sum(v["killed"] for v in score.values())
    total = total_k + sum(v["survived"] for v in score.values())
    print(f"{'all targets':<34}{total:>9}{total_k:>8}{total_k / total:>8.1%}")
    for module, n in outside.items():
        print(f"(not scored: {n} mutants in {module} outside the target functions)")
    for module, items in survivors.items():
        print(f"\nsurvivors in {module}:")
        for item in items:
            print(f"  {item}")
    print(f"\ngoal >= {GOAL:.0%} per module: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
