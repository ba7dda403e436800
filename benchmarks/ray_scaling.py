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

With `--lose-node`: the same workload on a cluster of 3 simulated nodes (one sandbox worker
each: `--workers 3`), side by side with and without losing one: in the second, a non-head
node is removed the hard way (its raylet killed, no drain) at the first progress tick with half
the questions written, so shards and pool jobs die mid-run. Both runs' rows must equal the local
executor's (the same verdicts, none lost, none twice); printed: each wall time, loss / no loss,
and the shard runners started again.

Usage: python benchmarks/ray_scaling.py [--workers 2] [--repeats 2] [--keep-slow] [--nodes 1,2,3 | --lose-node]
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
from kodcode_async.stats import Snapshot  # noqa: E402
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


def simulated_cluster(nodes: int, cpus_each: int, fast_health_check: bool = False):  # noqa: ANN201
    """Ray's own `Cluster` with `nodes` raylets on this machine (workers at nice 0, as a local
    instance runs them), connected; returns it and the nodes added after the head."""
    from ray.cluster_utils import Cluster

    system = {"worker_niceness": 0}
    if fast_health_check:  # a lost node is noticed within ~3 s (Ray's default takes ~30 s)
        system |= {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus_each, "_system_config": system})
    others = [cluster.add_node(num_cpus=cpus_each) for _ in range(nodes - 1)]
    cluster.wait_for_nodes()
    init_ray(cluster.address)
    return cluster, others


def by_nodes(tmp: str, questions: str, recorded: str, workers: int, counts: list[int], repeats: int) -> None:
    import ray

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
                cluster, _ = simulated_cluster(n, max(1, cores // n))
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


def lose_node(tmp: str, questions: str, recorded: str, repeats: int) -> None:
    import ray
    from ray.cluster_utils import Cluster

    total = sum(1 for _ in open(questions))
    local = os.path.join(tmp, "loss-local")
    t = time.perf_counter()
    asyncio.run(execute(config(questions, local, 3), RecordedBackend(recorded)))
    print(f"  local (3 workers)  {time.perf_counter() - t:6.2f} s", flush=True)
    reference = rows(local)
    results: dict[str, list[tuple[float, int]]] = {"3 nodes": [], "3 nodes, 1 lost": []}  # (s, restarts)
    for r in range(repeats):
        for name in results:
            cluster, others = simulated_cluster(3, 1, fast_health_check=True)
            removed: list[int] = []

            def on_progress(snap: Snapshot, lose: bool = "lost" in name, cluster: Cluster = cluster,
                            node: object = others[1], removed: list[int] = removed) -> None:
                if lose and not removed and snap.finished >= total // 2:
                    cluster.remove_node(node, allow_graceful=False)
                    removed.append(snap.finished)

            out = os.path.join(tmp, f"loss-{name.replace(' ', '').replace(',', '-')}-{r}")
            try:
                t = time.perf_counter()
                report = run_on_ray(config(questions, out, 3), {"kind": "recorded", "recorded_path": recorded},
                                    RayOptions(address=cluster.address, pool_workers=1), on_progress=on_progress)
                wall = time.perf_counter() - t
            finally:
                ray.shutdown()
                cluster.shutdown()
            assert report.complete, report.unfinished
            assert rows(out) == reference, f"{name}: rows differ from the local run's"
            if "lost" in name:
                assert removed, "the run ended before half its questions were written: nothing was lost"
            stats = json.load(open(os.path.join(out, "stats.json")))
            # The report counts the jobs of the runners alive at the end: a dead runner's count
            # dies with it (its rows and journal do not), so no "jobs redone" figure is printed.
            results[name].append((wall, stats["executor"]["shard_restarts"]))
            where = f", node removed at {removed[0]} of {total} questions written" if removed else ""
            print(f"  {name:<16} run {r + 1}: {wall:6.2f} s, {stats['executor']['shard_restarts']} shard restarts"
                  f"{where}; rows equal to local", flush=True)
    best = {k: min(v) for k, v in results.items()}
    base = best["3 nodes"]
    print(f"best of each ({total} questions, 3 sandbox workers in total; Ray start-up not in the times):")
    for k, (wall, restarts) in best.items():
        print(f"  {k:<16} {wall:6.2f} s   {wall / base[0]:.2f}x the run without a loss   {restarts} shard restarts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="sandbox workers in total (default 2)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--keep-slow", action="store_true")
    ap.add_argument("--nodes", help="e.g. 1,2,3: simulated clusters of that many nodes at the same total workers")
    ap.add_argument("--lose-node", action="store_true", help="3 simulated nodes, with and without losing one mid-run")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kodcode-ray-bench-")
    questions, recorded = workload(tmp, a.keep_slow)
    n = sum(1 for _ in open(questions))
    if a.lose_node:
        print(f"{platform.node()}: {os.cpu_count()} cores, {n} questions x 3 responses, 3 nodes of 1 sandbox worker")
        lose_node(tmp, questions, recorded, a.repeats)
        return
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
