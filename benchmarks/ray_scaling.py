"""What the Ray executor costs against the local executor, verification-bound, at the same total workers.

Workload: the real KodCode responses in tests/data (kodcode_algorithm_completions.jsonl: 99
questions x 3 model responses, recorded backend, so generation costs nothing), the questions whose
trials spin to the CPU limit left out (--keep-slow to keep them): every attempt is parsed and its
(solution, tests) pair runs in the sandbox, ~270 realistic pytest trials.

Side by side in the same run, each on a fresh run directory, the same --workers sandbox workers in total:
* local: `run.execute`, one process, one pool;
* ray, one node (the local Ray instance), its pool actor with the same workers, with 1 and with 2
  shards (runners), Ray already started (its start-up is timed apart, once).
Prints each wall time and ray / local. The rows of every run are checked equal to the local run's.

With `--nodes 1,2,3`: the same workload through Ray on clusters of 1, 2 and 3 simulated nodes
(Ray's `ray.cluster_utils.Cluster`: that many raylets on this machine) at the same total sandbox
workers (`--workers`, split evenly over the nodes, two shards per node), beside the local
executor: what the executor costs per node it spreads over, when the hardware stays the same.

Usage: python benchmarks/ray_scaling.py [--workers 2] [--repeats 2] [--keep-slow] [--nodes 1,2,3]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kodcode_async.backends.recorded import RecordedBackend  # noqa: E402
from kodcode_async.executors.ray import RayOptions, init_ray, run_on_ray  # noqa: E402
from kodcode_async.run import RunConfig, execute  # noqa: E402
from kodcode_async.stages.solutions import SolveOptions  # noqa: E402
from sandbox import Limits  # noqa: E402
from sandbox.pool import SandboxConfig  # noqa: E402

DATA = ROOT / "tests" / "data"


def read_gz(path: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()]


def workload(tmp: str, keep_slow: bool) -> tuple[str, str]:
    trials = read_gz(DATA / "kodcode_algorithm_trials.jsonl.gz")
    slow = set() if keep_slow else {t["id"].split("/")[1] for t in trials
                                    if t["verdict_reference"] == "Fail - Timed Out"}
    questions, recorded = os.path.join(tmp, "q.jsonl"), os.path.join(tmp, "rec.jsonl")
    seen = set()
    with open(questions, "w") as q, open(recorded, "w") as rec:
        for c in read_gz(DATA / "kodcode_algorithm_completions.jsonl.gz"):
            if c["prompt_id"] in slow:
                continue
            if c["prompt_id"] not in seen:
                seen.add(c["prompt_id"])
                q.write(json.dumps({"question_id": c["prompt_id"], "question": c["question"],
                                    "subset": c["subset"]}) + "\n")
            rec.write(json.dumps({"stage": "solutions", "item_id": c["prompt_id"], "attempt": c["attempt"],
                                  "response": c["response"]}) + "\n")
    return questions, recorded


def config(questions: str, out: str, workers: int) -> RunConfig:
    return RunConfig(input_path=questions, out_dir=out, workers=64, sandbox=SandboxConfig(
        workers=workers, blocked_imports=("scipy", "sympy")), solve=SolveOptions(
        attempts=3, max_attempts=3, model_name="recorded", limits=Limits(wall_s=20)))


def rows(out: str) -> dict:
    return {n: sorted(open(os.path.join(out, n)).read().splitlines()) for n in ("verified.jsonl", "failed.jsonl")
            if os.path.exists(os.path.join(out, n))}


def by_nodes(tmp: str, questions: str, recorded: str, workers: int, counts: list[int], repeats: int) -> None:
    import ray
    from ray.cluster_utils import Cluster

    for n in counts:
        if workers % n:
            raise SystemExit(f"--workers {workers} does not split evenly over {n} nodes")
    results: dict[str, list[float]] = {"local": [], **{f"ray, {n} node{'s' * (n > 1)}": [] for n in counts}}
    reference = None
    cores = os.cpu_count() or 1
    for r in range(repeats):
        for name in results:
            out = os.path.join(tmp, f"nodes-{name.replace(' ', '').replace(',', '-')}-{r}")
            if name == "local":
                t = time.perf_counter()
                asyncio.run(execute(config(questions, out, workers), RecordedBackend(recorded)))
                results[name].append(time.perf_counter() - t)
            else:
                n = int(name.split()[1])
                cluster = Cluster(initialize_head=True, head_node_args={
                    "num_cpus": max(1, cores // n), "_system_config": {"worker_niceness": 0}})
                for _ in range(n - 1):
                    cluster.add_node(num_cpus=max(1, cores // n))
                cluster.wait_for_nodes()
                init_ray(cluster.address)
                try:
                    t = time.perf_counter()
                    report = run_on_ray(config(questions, out, workers), {"kind": "recorded", "recorded_path": recorded},
                                        RayOptions(address=cluster.address, pool_workers=workers // n))
                    results[name].append(time.perf_counter() - t)
                    assert report.complete
                finally:
                    ray.shutdown()
                    cluster.shutdown()
            got = rows(out)
            reference = reference or got
            assert got == reference, f"{name}: rows differ from the local run's"
            print(f"  {name:<14} run {r + 1}: {results[name][-1]:6.2f} s", flush=True)
    best = {k: min(v) for k, v in results.items()}
    jobs = sum(len(v) for v in reference.values()) * 3 if reference else 0
    print(f"best of each ({workers} sandbox workers in total; ~{jobs} trials):")
    for k, v in best.items():
        extra = v - best["local"]
        print(f"  {k:<14} {v:6.2f} s   {v / best['local']:.2f}x the local executor's time   "
              f"+{extra:5.2f} s over local")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="sandbox workers in total (default 2)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--keep-slow", action="store_true")
    ap.add_argument("--nodes", help="e.g. 1,2,3: simulated clusters of that many nodes at the same total workers")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kodcode-ray-bench-")
    questions, recorded = workload(tmp, a.keep_slow)
    n = sum(1 for _ in open(questions))
    if a.nodes:
        counts = [int(x) for x in a.nodes.split(",")]
        print(f"{platform.node()}: {os.cpu_count()} cores, {n} questions x 3 responses, {a.workers} sandbox workers "
              f"in total over {a.nodes} nodes; each cluster's start-up is not in the times below")
        by_nodes(tmp, questions, recorded, a.workers, counts, a.repeats)
        return
    t = time.perf_counter()
    init_ray(num_cpus=os.cpu_count())
    ray_start = time.perf_counter() - t
    print(f"{platform.node()}: {os.cpu_count()} cores, {n} questions x 3 responses, {a.workers} sandbox workers; "
          f"Ray start-up {ray_start:.1f} s (not in the times below)")
    results: dict[str, list[float]] = {"local": [], "ray, 1 shard": [], "ray, 2 shards": []}
    reference = None
    for r in range(a.repeats):
        for name in results:
            out = os.path.join(tmp, f"{name.replace(' ', '').replace(',', '-')}-{r}")
            t = time.perf_counter()
            if name == "local":
                asyncio.run(execute(config(questions, out, a.workers), RecordedBackend(recorded)))
            else:
                run_on_ray(config(questions, out, a.workers), {"kind": "recorded", "recorded_path": recorded},
                           RayOptions(shards=1 if "1 shard" in name else 2, pool_workers=a.workers))
            results[name].append(time.perf_counter() - t)
            got = rows(out)
            reference = reference or got
            assert got == reference, f"{name}: rows differ from the local run's"
            print(f"  {name:<14} run {r + 1}: {results[name][-1]:6.2f} s", flush=True)
    best = {k: min(v) for k, v in results.items()}
    print("best of each:")
    for k, v in best.items():
        print(f"  {k:<14} {v:6.2f} s   {v / best['local']:.2f}x the local executor's time")


if __name__ == "__main__":
    main()
