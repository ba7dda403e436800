"""A run as a user drives it: stop after a stage and start at the next, a run directory that belongs
to one configuration, an LLM server that is down and then back, kill -9 through the Python API."""

import json
import os
import socket
import subprocess
import sys

from tests.conftest import (
    ROOT,
    kill_when_rows,
    read_jsonl,
    run_cli,
    server_stats,
    start_test_server,
    write_add_questions,
)


def _by_id(path):
    return {r["question_id"]: r for r in read_jsonl(path)} if path.exists() else {}


def test_stop_after_then_start_at_the_next_stage_gives_the_rows_of_one_run(demo_run, tmp_path):
    first, second = tmp_path / "solve", tmp_path / "rest"
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(first), "--stop-after", "solutions")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(first)) == ["failed.jsonl", "journal.sqlite", "manifest.json", "run.json",
                                         "stats.json", "verified.jsonl"]
    assert all("r1_pass_sequence" not in row for row in read_jsonl(first / "verified.jsonl"))
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(second), "--start-at", "style",
                "--input", str(first / "verified.jsonl"))
    assert r.returncode == 0, r.stderr
    json_stats = json.loads((second / "stats.json").read_text())
    assert [s["name"] for s in json_stats["stages"]] == ["style", "sft"]
    for name in ("verified.jsonl", "verified_complete.jsonl", "style_rejected.jsonl", "sft.jsonl"):
        assert _by_id(second / name) == _by_id(demo_run / name), name
    assert _by_id(first / "failed.jsonl") == _by_id(demo_run / "failed.jsonl")
    # A stage that is not on is refused before anything is created.
    never = tmp_path / "never"
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(never), "--stop-after", "sft", "--sft-n", "0")
    assert r.returncode == 2 and "--stop-after sft: not a stage of this run" in r.stderr and not never.exists()
    # Question rows are not verified rows: --start-at style says what it needs, per row.
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(never), "--start-at", "style")
    stats = json.loads((never / "stats.json").read_text())
    assert {x["reason"] for x in stats["rejected_rows"]} == {
        "row has no 'solution': stages after 'solutions' take verified rows (verified.jsonl)"}


def test_a_run_directory_reused_with_a_different_configuration_is_refused(demo_run, tmp_path):
    before = {n: (demo_run / n).read_bytes() for n in os.listdir(demo_run) if n.endswith(".jsonl")}
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(demo_run), "--model", "another-model")
    assert r.returncode == 2, r.stderr
    assert "solutions.model: 'recorded-demo' -> 'another-model'" in r.stderr and "--new-run" in r.stderr
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(demo_run), "--max-attempts", "7")
    assert r.returncode == 2 and "solutions.max_attempts: 5 -> 7" in r.stderr
    assert {n: (demo_run / n).read_bytes() for n in before} == before  # untouched
    # Asked for by name: a new run in that directory; the old one is kept aside, not deleted.
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(demo_run), str(copy)], check=True)
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(copy), "--stop-after", "solutions", "--new-run")
    assert r.returncode == 0, r.stderr
    aside = [n for n in os.listdir(copy) if n.startswith("replaced-")]
    assert len(aside) == 1 and (copy / aside[0] / "sft.jsonl").read_bytes() == before["sft.jsonl"]
    assert not (copy / "sft.jsonl").exists()
    assert json.loads((copy / "stats.json").read_text())["llm_requests_this_run"] > 0  # the journal moved too


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_llm_server_down_then_up_labels_nothing_while_down_and_resumes_with_exactly_the_attempts(tmp_path, isolated):
    n = 6
    questions, answers = write_add_questions(tmp_path, n, attempts=2)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    out = tmp_path / "run"
    cmd = ("run", "--input", str(questions), "--out", str(out), "--backend", "openai", "--base-url", url,
           "--model", "m", "--workers", "4", "--attempts", "2", "--max-attempts", "4", "--max-retries", "0",
           "--sandbox-workers", "1")
    r = run_cli(*cmd)
    assert r.returncode == 3, r.stderr
    assert f"{n} items unfinished: solutions: connection ({n}); run the same command again to resume" in r.stderr
    assert not (out / "verified.jsonl").exists() and not (out / "failed.jsonl").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["unfinished"] == n
    server, served_url = start_test_server(answers, port=port)
    try:
        assert served_url == url
        r = run_cli(*cmd)
        assert r.returncode == 0, r.stderr
        rows = read_jsonl(out / "verified.jsonl")
        assert sorted(row["question_id"] for row in rows) == [f"k{i:03d}" for i in range(n)]
        assert all(row["gpt_pass_sequence"] == [1, 1] and row["gpt_difficulty"] == "easy" for row in rows)
        assert server_stats(url)["requests"] == 2 * n  # nothing was answered while down: nothing to replay
        assert json.loads((out / "manifest.json").read_text())["complete"] is True
    finally:
        server.terminate()
        server.wait()


API_RUN = """
import asyncio, sys
from kodcode_async.api import Pipeline
from kodcode_async.backends import make_backend
from kodcode_async.stages.solutions import SolveOptions
from sandbox import SandboxConfig

async def main():
    backend = make_backend("openai", base_url=sys.argv[1], model="m", workers=4)
    pipeline = Pipeline(backend, solve=SolveOptions(attempts=1, max_attempts=1, model_name="m"),
                        sandbox=SandboxConfig(workers=2), workers=4)
    try:
        report = await pipeline.run_to(sys.argv[2], sys.argv[3])
    finally:
        await backend.close()
    print(report.as_dict()["resumed_questions"], report.as_dict()["llm_requests_this_run"])

asyncio.run(main())
"""


def test_resume_after_kill_9_through_the_api_loses_nothing_and_repeats_no_request(tmp_path, isolated):
    n = 30
    questions, answers = write_add_questions(tmp_path, n)
    server, url = start_test_server(answers, delay=0.05)
    try:
        out = tmp_path / "run"
        cmd = [sys.executable, "-c", API_RUN, url, str(out), str(questions)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        verified = out / "verified.jsonl"
        kill_when_rows(proc, verified, 5)
        done_before = len(read_jsonl(verified))
        assert 5 <= done_before < n
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        resumed, asked = map(int, r.stdout.split())
        assert resumed == done_before
        ids = [row["question_id"] for row in read_jsonl(verified)]
        assert sorted(ids) == [f"k{i:03d}" for i in range(n)]  # none lost, none duplicated
        stats = server_stats(url)
        # Journaled before use: only requests cut off in flight by the kill (at most --workers) are asked again.
        assert n <= stats["requests"] <= n + 4
        assert asked <= n - done_before
    finally:
        server.terminate()
        server.wait()
