"""The Ray executor on a cluster of three nodes that loses one mid-run (Ray's own
`ray.cluster_utils.Cluster`: three raylets on this machine, each with its sandbox pool).

A node is removed the hard way (its raylet killed, no drain) while shards run on it: the run
still ends with every question once, each verdict from a live pool; then a driver stopped while
the node is gone and started again resumes on the two nodes left.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

from kodcode_async.executors.ray import RayOptions, init_ray, run_on_ray
from tests.conftest import read_jsonl, server_stats, start_test_server
from tests.test_ray_executor import (
    add_config,
    add_questions,
    assert_each_question_once_and_passed,
    stop_mid_run_then_resume,
)

pytestmark = pytest.mark.timeout(900)
SHIM = str(Path(__file__).parent / "vllm_shim")


@pytest.fixture(scope="module")
def three_nodes():
    import ray
    from ray.cluster_utils import Cluster

    # A lost node is noticed within ~3 s (Ray's default health check takes ~30 s).
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": {
        "worker_niceness": 0, "health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    init_ray(cluster.address, extra_paths=() if importlib.util.find_spec("vllm") else (SHIM,))
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def _alive() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def test_losing_a_node_mid_run_loses_and_repeats_nothing_and_a_restarted_driver_resumes(three_nodes, tmp_path,
                                                                                         isolated):
    cluster, workers = three_nodes
    assert _alive() == 3
    n = 24
    questions, answers = add_questions(tmp_path, n, sleep_s=0.3)
    server, url = start_test_server(answers)
    removed: list[float] = []

    def on_progress(snap):
        # At the first progress tick with a row written (ticks come every second; the run needs
        # at least 24 x 0.3 s / 3 workers of sandbox time, so a tick lands mid-run).
        if not removed and snap.finished >= 1:
            cluster.remove_node(workers[1], allow_graceful=False)  # its raylet, pool and runners die at once
            removed.append(snap.finished)

    try:
        report = run_on_ray(add_config(questions, tmp_path / "run", 6, 1),
                            {"kind": "openai", "base_url": url, "model": "m", "workers": 6},
                            RayOptions(address=cluster.address, shards=3), on_progress=on_progress)
        requests = server_stats(url)
    finally:
        server.terminate()
        server.wait()
    assert removed and removed[0] < n
    # Every verdict a pass from a live pool, none a sandbox_error from the lost one.
    stats = assert_each_question_once_and_passed(tmp_path / "run", n)
    assert report.complete and stats["executor"]["nodes"] == 3
    # What was in flight on the lost node was asked again, nothing more (--workers 6 over 3 runners).
    assert n <= requests["requests"] <= n + 6

    # The node stays gone; a driver stopped mid-run and started again finishes on the two left.
    deadline = time.monotonic() + 60
    while _alive() > 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _alive() == 2
    again = tmp_path / "again"
    again.mkdir()
    n = 14
    questions, answers = add_questions(again, n, sleep_s=0.2)
    server, url = start_test_server(answers, hold_after=8)
    out = again / "run"
    cmd = [sys.executable, "-m", "kodcode_async.cli", "run", "--input", str(questions), "--out", str(out),
           "--backend", "openai", "--base-url", url, "--model", "m", "--workers", "4", "--attempts", "1",
           "--max-attempts", "1", "--timeout", "20", "--executor", "ray", "--ray-address", cluster.address,
           "--shards", "2", "--sandbox-workers", "1", "--quiet"]
    try:
        first = stop_mid_run_then_resume(cmd, out, url)
    finally:
        server.terminate()
        server.wait()
    rows = read_jsonl(out / "verified.jsonl")
    assert sorted(r["question_id"] for r in rows) == [f"k{i:03d}" for i in range(n)]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["resumed_questions"] == first and stats["executor"]["nodes"] == 2
