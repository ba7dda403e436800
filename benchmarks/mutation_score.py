"""Mutation score of the modules where a silent bug corrupts data (goal: >= 90% killed each).

Runs `mutmut run` (configured in pyproject.toml: [tool.mutmut]; the fast unit tests of those
modules are the test selection), then scores each target and lists every surviving mutant with
its diff, so each one can be explained or killed.

Targets, the modules where a silent bug corrupts rows, verdicts or the figures users read:
* verdicts: the verdict mapping (sandbox/verdict.py), the stdin comparison rules (sandbox/stdio.py);
* rows: difficulty, chosen trial and row (kodcode_async/stages/solutions.py: difficulty,
  kodcode_row, SolveOptions), the parser (parsing.py), question extraction (extract.py), seed
  files (seeds.py), tagging's answer rules (stages/tagging.py), the published shape and export
  (schema.py, export.py);
* what a run keeps: the journal (journal.py), the writers' recovery (writers.py), the on-disk id
  set (idset.py), the run directory (rundir.py);
* what a run drops: near-duplicates and benchmark overlap (stages/dedup.py, stages/decontam.py),
  the completion-style checks (stages/style.py);
* the RL reward: the code judged and the score of a verdict (rewards.py);
* figures: the engine's per-stage counts and busy time (engine.py), how counts add up and the
  timeline (stats.py);
* what a run is asked to do: the option checks (options.py) and the config built from them
  (configure.py);
* serve's request validation and response shape (serve.py: job_from_run_code, _clamp,
  run_code_response, _full, Metrics.observe).
Functions of those files outside the targets (the solve stage's request/parse/settle, serve's
HTTP handlers: exercised end to end by the pipeline and serve tests) are listed but not scored.

Usage: python benchmarks/mutation_score.py [--no-run] [--diffs]     (needs `pip install -e '.[dev]'`)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
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
    "kodcode_async.engine": None,
    "kodcode_async.rundir": None,
    "kodcode_async.schema": None,
    "kodcode_async.export": None,
    # serve: its request validation and response shape (the server's I/O is tested over HTTP)
    "kodcode_async.serve": {"xǁSandboxServerǁjob_from_run_code", "x__clamp", "x_run_code_response",
                            "xǁSandboxServerǁ_full", "xǁMetricsǁobserve", "x__sandbox_error"},
    # tagging: the rules an answer must meet (the stages' LLM round trips are tested end to end)
    "kodcode_async.stages.tagging": {"x_parse_json_object", "x__category", "x_validate"},
    "kodcode_async.stages.dedup": None,
    "kodcode_async.stages.decontam": None,
    "kodcode_async.stages.style": None,
    # rewards: the code judged, the score of a verdict, a batch on a pool (the server path and the
    # per-process pool's thread are tested end to end in test_serve.py and test_reward_hacking.py)
    "kodcode_async.rewards": {"x_extract_code", "x__result", "x_acompute_score_batch", "x__score_with_pool"},
    "kodcode_async.stats": None,
    # options: the declarations' checks, paths and generated help; configure: options -> a run's config
    "kodcode_async.options": None,
    "kodcode_async.configure": None,
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


def target_globs() -> list[str]:
    return [f"{module}.*" if funcs is None else f"{module}.{func}__mutmut_*"
            for module, funcs in TARGETS.items() for func in (funcs or [None])]


def diff(name: str) -> str:
    shown = subprocess.run(["mutmut", "show", name], cwd=ROOT, capture_output=True, text=True).stdout
    return " | ".join(line[:150] for line in shown.splitlines() if line.startswith(("- ", "+ ")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-run", action="store_true", help="score the last `mutmut run` instead of running it")
    ap.add_argument("--diffs", action="store_true", help="print each survivor's diff (one `mutmut show` each)")
    ap.add_argument("--max-children", type=int, default=(os.cpu_count() or 1) + 1,
                    help="mutants tested at once (default: cores + 1; many tests wait on a sandbox or a clock)")
    args = ap.parse_args()
    started = time.monotonic()
    if not args.no_run:
        # Only the target functions' mutants run (mutmut takes mutant-name globs); the rest of
        # those files is exercised end to end elsewhere, and would only cost time here.
        subprocess.run(["mutmut", "run", "--max-children", str(args.max_children), *target_globs()], cwd=ROOT,
                       check=True, stdout=subprocess.DEVNULL)
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
            survivors[module].append(f"{name} [{status}]" + (f": {diff(name)}" if args.diffs else ""))
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
    print(f"\ngoal >= {GOAL:.0%} per module: {'met' if ok else 'NOT met'}; {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
