"""Sandbox throughput: the reference way against the warm pool, same corpus, same run.

Reference way (KodCode's): one fresh `timeout 30 python -m pytest --cov=solution` process
per trial in its own directory, N at a time (what GNU parallel -j N does).
Ours: SandboxPool with N workers, coverage on, the same 30 s wall limit.

Usage:
    python benchmarks/sandbox_throughput.py [--jobs N] [--limit K] [--timeout S]

Data: ../shared/data/kodcode_algorithm_trials.jsonl (real KodCode trials, CC BY-NC 4.0).
Prints a table for (a) the trials whose reference verdict is not a timeout and (b) the
whole corpus, and the ratio of trials/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import Job, Limits, SandboxConfig, SandboxPool  # noqa: E402
from sandbox.verdict import reference_label  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "kodcode_algorithm_trials.jsonl"


@dataclass
class Run:
    label: str  # Pass / Fail / Fail - Timed Out
    wall_s: float
    cpu_s: float


async def reference_trial(row: dict, limit_s: float, sem: asyncio.Semaphore) -> Run:
    async with sem:
        d = _trial_dir(row)
        try:
            before = os.times()
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                "timeout", str(int(limit_s)), sys.executable, "-m", "pytest", "--cov=solution", "-q",
                "-p", "no:cacheprovider", cwd=d, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            code = await proc.wait()
            wall = time.perf_counter() - t0
            after = os.times()
            # children_* accumulate over all reaped children; with N in flight this is an
            # approximation per trial, exact in sum.
            cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        label = "Pass" if code == 0 else ("Fail - Timed Out" if code == 124 else "Fail")
        return Run(label, wall, cpu)


def _trial_dir(row: dict) -> str:
    d = tempfile.mkdtemp(prefix="ref-trial-")
    Path(d, "solution.py").write_text(row["solution"])
    Path(d, "test_solution.py").write_text(row["test"])
    return d


async def run_reference(rows: list[dict], jobs: int, limit_s: float) -> tuple[list[Run], float, float]:
    sem = asyncio.Semaphore(jobs)
    c0 = os.times()
    t0 = time.perf_counter()
    runs = await asyncio.gather(*(reference_trial(r, limit_s, sem) for r in rows))
    c1 = os.times()
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    return list(runs), time.perf_counter() - t0, cpu


async def run_pool(rows: list[dict], jobs: int, limit_s: float) -> tuple[list[Run], float, float]:
    async with SandboxPool(SandboxConfig(workers=jobs)) as pool:
        t0 = time.perf_counter()
        verdicts = await asyncio.gather(*(pool.verify(Job(id=r["id"], solution=r["solution"], test=r["test"],
                                                          limits=Limits(wall_s=limit_s))) for r in rows))
        wall = time.perf_counter() - t0
    runs = [Run(reference_label(v), v.wall_s, v.cpu_s) for v in verdicts]
    return runs, wall, sum(r.cpu_s for r in runs)


def summarise(name: str, runs: list[Run], wall: float, cpu: float) -> dict:
    walls = sorted(r.wall_s for r in runs)
    p99 = walls[min(len(walls) - 1, int(0.99 * len(walls)))]
    return {"name": name, "n": len(runs), "wall": wall, "rate": len(runs) / wall, "median": statistics.median(walls),
            "p99": p99, "cpu_per": cpu / len(runs)}


def print_table(title: str, ref: dict, ours: dict) -> None:
    print(f"\n{title}")
    print(f"{'way':<28}{'trials':>7}{'wall s':>9}{'trials/s':>10}{'median s':>10}{'p99 s':>9}{'CPU s/trial':>13}")
    for r in (ref, ours):
        print(f"{r['name']:<28}{r['n']:>7}{r['wall']:>9.1f}{r['rate']:>10.2f}{r['median']:>10.3f}{r['p99']:>9.3f}"
              f"{r['cpu_per']:>13.3f}")
    print(f"ratio (ours / reference) trials/s: {ours['rate'] / ref['rate']:.1f}x")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--limit", type=int, default=0, help="use only the first K trials of each part")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--parts", default="a,b,c", help="which parts to run: a (no timeouts), b (full corpus), "
                    "c (trivial trials: start-up cost alone)")
    args = ap.parse_args()
    rows = [orjson.loads(line) for line in DATA.read_bytes().splitlines() if line.strip()]  # noqa: ASYNC240
    part_a = [r for r in rows if r["verdict_reference"] != "Fail - Timed Out"]
    if args.limit:
        part_a = part_a[:args.limit]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}; jobs={args.jobs}, timeout={args.timeout:g}s")
    wanted = set(args.parts.split(","))
    parts = []
    if "a" in wanted:
        parts.append(("(a) trials that do not time out", part_a))
    if "b" in wanted:
        parts.append(("(b) full corpus", rows[:args.limit * 2] if args.limit else rows))
    # (c) isolates what the sandbox itself costs: trials whose tests take no time at all.
    trivial = [{"id": f"trivial{i}", "solution": f"def f():\n    return {i}\n",
                "test": f"from solution import *\n\ndef test_f():\n    assert f() == {i}\n",
                "verdict_reference": "Pass"} for i in range(40 if not args.limit else 10)]
    if "c" in wanted:
        parts.append(("(c) start-up cost alone: trivial trials", trivial))
    for title, subset in parts:
        ref_runs, ref_wall, ref_cpu = await run_reference(subset, args.jobs, args.timeout)
        our_runs, our_wall, our_cpu = await run_pool(subset, args.jobs, args.timeout)
        same = sum(a.label == b.label for a, b in zip(ref_runs, our_runs))
        recorded = sum(r["verdict_reference"] == b.label for r, b in zip(subset, our_runs))
        print_table(title, summarise("reference (fresh pytest)", ref_runs, ref_wall, ref_cpu),
                    summarise("kodcode-async pool", our_runs, our_wall, our_cpu))
        print(f"verdicts identical to this run's reference: {same}/{len(subset)}; "
              f"to the recorded reference: {recorded}/{len(subset)}")
        for r, a, b in zip(subset, ref_runs, our_runs):
            if a.label != b.label:
                print(f"  differs: {r['id']}: reference {a.label}, ours {b.label}")


if __name__ == "__main__":
    asyncio.run(main())
