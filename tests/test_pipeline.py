"""The solve-and-verify pipeline end to end: bundled demo, real KodCode responses, kill -9 and resume."""

import json
import signal
import subprocess
import sys
import time

from tests.conftest import (
    DATA,
    ROOT,
    kill_when_rows,
    read_jsonl,
    run_cli,
    server_stats,
    start_test_server,
    write_add_questions,
)


def test_demo_run_labels_difficulty_and_resumes_without_new_requests(tmp_path, isolated):
    out = tmp_path / "demo"
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "verified: 4" in r.stdout
    # Counts and shares, labelled (stats.json holds both as questions and rate).
    assert "demo: questions solved within k attempts (share of all): pass@1 2 (40%), pass@2 3 (60%)" in r.stdout
    verified = {row["question_id"]: row for row in read_jsonl(out / "verified.jsonl")}
    failed = {row["question_id"]: row for row in read_jsonl(out / "failed.jsonl")}
    assert set(verified) == {"demo-001", "demo-002", "demo-003", "demo-005"} and set(failed) == {"demo-004"}
    assert verified["demo-001"]["gpt_difficulty"] == "easy"
    assert verified["demo-002"]["gpt_difficulty"] == "medium"
    assert verified["demo-003"]["gpt_pass_sequence"] == [0, 0, 0, 0, 1]
    assert verified["demo-003"]["gpt_difficulty"] == "hard"
    assert failed["demo-004"]["gpt_difficulty"] == "fail" and len(failed["demo-004"]["trials"]) == 5
    row = verified["demo-005"]
    assert row["gpt_pass_sequence"] == [1, 0, 1] and row["gpt_difficulty"] == "easy"  # 2 of 3: easy, as in V1
    assert row["chosen_trial"] == "trial_0" and row["test_info"][0]["function_name"] == "pair_sum"
    statuses = {t["status"] for q in list(verified.values()) + list(failed.values()) for t in q["trials"].values()}
    assert {"pass", "fail", "error", "timeout", "parse_error"} <= statuses
    stats = json.loads((out / "stats.json").read_text())
    assert stats["pass_at_k"]["demo"]["1"]["questions"] == 2 and stats["difficulty"]["fail"] == 1
    # Style converter: three stubs accepted and re-verified, one rejected for naming the wrong function.
    complete = {row["question_id"]: row for row in read_jsonl(out / "verified_complete.jsonl")}
    assert set(complete) == {"demo-001", "demo-002", "demo-005"}
    assert all(r["style"] == "complete" and r["question"].startswith(("def ", "from ")) for r in complete.values())
    assert complete["demo-005"]["test"] == verified["demo-005"]["test"]
    assert "signature mismatch" in read_jsonl(out / "style_rejected.jsonl")[0]["reason"]
    # SFT with reject sampling: the tests keep only correct answers.
    assert verified["demo-001"]["r1_pass_sequence"] == [1, 0] and verified["demo-002"]["r1_correctness"] is False
    assert verified["demo-003"]["r1_pass_sequence"] == [0, 1]  # the first answer had no code at all
    sft = {row["question_id"]: row for row in read_jsonl(out / "sft.jsonl")}
    assert set(sft) == {"demo-001", "demo-003", "demo-005"}
    assert sft["demo-001"]["conversations"][0]["from"] == "human"
    # Same command again: everything is already done; nothing is asked again.
    r2 = run_cli("run", "--config", "examples/demo.toml", "--out", str(out))
    assert r2.returncode == 0, r2.stderr
    stats2 = json.loads((out / "stats.json").read_text())
    assert stats2["resumed_questions"] == 5 and stats2["llm_requests_this_run"] == 0
    assert len(read_jsonl(out / "verified.jsonl")) == 4 and len(read_jsonl(out / "sft.jsonl")) == 3
    # The journal alone: delete every output file and run again. Every answer and verdict
    # comes back from journal.sqlite, no request is made, and the rows are the same.
    first_rows = {n: read_jsonl(out / n) for n in ("verified.jsonl", "failed.jsonl", "sft.jsonl")}
    for name in ("verified.jsonl", "failed.jsonl", "verified_complete.jsonl", "style_rejected.jsonl", "sft.jsonl",
                 "stats.json", "manifest.json"):
        (out / name).unlink()
    r3 = run_cli("run", "--config", "examples/demo.toml", "--out", str(out))
    assert r3.returncode == 0, r3.stderr
    stats3 = json.loads((out / "stats.json").read_text())
    assert stats3["resumed_questions"] == 0 and stats3["llm_requests_this_run"] == 0
    # Every record in the journal (27 recorded answers, and the verdicts) was used once.
    import sqlite3

    with sqlite3.connect(out / "journal.sqlite") as db:
        records = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        answers = db.execute("SELECT COUNT(*) FROM records WHERE kind = 'response'").fetchone()[0]
    assert answers == 27 and stats3["journal_hits_this_run"] == records
    for name, rows in first_rows.items():
        again = {r["question_id"]: r for r in read_jsonl(out / name)}
        assert again == {r["question_id"]: r for r in rows}, name
    # Export to the trainers' formats, read back.
    import pyarrow.parquet as pq

    assert run_cli("export", str(out), "--format", "verl", "--style", "instruct").returncode == 0
    verl = {r["extra_info"]["question_id"]: r for r in pq.read_table(out / "export" / "verl.parquet").to_pylist()}
    assert set(verl) == {f"demo_{qid}_I" for qid in verified}  # V1's <Subset>_<prompt_id>_I
    verl = {qid.removeprefix("demo_").removesuffix("_I"): row for qid, row in verl.items()}
    for qid, row in verl.items():
        assert row["reward_model"] == {"style": "rule", "ground_truth": verified[qid]["test"]}
        assert row["prompt"] == [{"role": "user", "content": verified[qid]["question"]}]
        assert row["ability"] == "code" and row["extra_info"]["difficulty"] == verified[qid]["gpt_difficulty"]
    assert run_cli("export", str(out), "--format", "parquet", "--style", "instruct").returncode == 0
    exported = {r["metadata"]["prompt_id"]: r for r in pq.read_table(out / "export" / "dataset.parquet").to_pylist()}
    assert set(exported) == set(verified)
    for qid, row in exported.items():
        assert row["solution"] == verified[qid]["solution"] and row["test"] == verified[qid]["test"]
        assert row["gpt_pass_sequence"] == verified[qid]["gpt_pass_sequence"]
        for name, trial in verified[qid]["trials"].items():
            published = row["trials"][name.replace("trial_", "trial_gpt4o_")]
            assert published["test_result"] == trial["test_result"] and published["test_code"] == trial["test_code"]


# Trials where our verdict differs from the reference's, each for the same reason: the reference's
# test_solution.py has a broken fence line ("``" or "`python"), a SyntaxError
# there (the first non-blank line after `from solution import *`), which our parser drops.
# Listed by hand from reading those files, not computed.
SLOW_KEPT = {"00000010"}
MEMORY_HUNGRY = {"00000049", "00000056"}
EXPLAINED_FENCE_TRIALS = {
    "algorithm/00000002/attempt0", "algorithm/00000005/attempt2", "algorithm/00000025/attempt0",
    "algorithm/00000044/attempt0", "algorithm/00000044/attempt2", "algorithm/00000049/attempt0",
    "algorithm/00000075/attempt2",
}


def test_real_kodcode_responses_give_reference_like_pass_at_k(tmp_path, isolated):
    """Real model responses (tests/data) through parse -> verify -> select.

    Every trial gets the reference's verdict (scipy and sympy blocked, as on the reference
    machine) except the seven in EXPLAINED_FENCE_TRIALS, which pass here. The expected pass@k is
    derived from the reference's own verdicts with exactly those seven flipped.

    The questions whose trials spin until the CPU limit are left out but one (SLOW_KEPT): each
    costs 15 CPU-seconds (the limit: the slowest trial that ends by itself needs ~10), tests/test_sandbox_agreement.py already checks all of them against the
    reference, and one is enough to show a timed-out attempt flows through selection. The two
    memory-hungry questions stay (the 2 GB limit ends them within a second).
    """
    all_trials = read_jsonl(DATA / "kodcode_algorithm_trials.jsonl")
    slow = {r["id"].split("/")[1] for r in all_trials if r["verdict_reference"] == "Fail - Timed Out"}
    slow -= SLOW_KEPT | MEMORY_HUNGRY
    assert len(slow) == 6  # the corpus as shipped: 00000029, 32, 37, 58, 77, 84
    comps = [c for c in read_jsonl(DATA / "kodcode_algorithm_completions.jsonl") if c["prompt_id"] not in slow]
    trials = {r["id"]: r for r in all_trials if r["id"].split("/")[1] not in slow}
    questions, recorded = tmp_path / "q.jsonl", tmp_path / "rec.jsonl"
    seen = set()
    with open(questions, "w") as q, open(recorded, "w") as rec:
        for c in comps:
            if c["prompt_id"] not in seen:
                seen.add(c["prompt_id"])
                q.write(json.dumps({"question_id": c["prompt_id"], "question": c["question"],
                                    "subset": c["subset"]}) + "\n")
            rec.write(json.dumps({"stage": "solutions", "item_id": c["prompt_id"], "attempt": c["attempt"],
                                  "response": c["response"]}) + "\n")
    out = tmp_path / "run"
    r = run_cli("run", "--input", str(questions), "--out", str(out), "--backend", "recorded", "--recorded",
                str(recorded), "--attempts", "3", "--max-attempts", "3", "--timeout", "15",
                "--block-imports", "scipy,sympy", timeout=600)
    assert r.returncode == 0, r.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["questions"] == 99 - len(slow)
    differences = set()
    for row in read_jsonl(out / "verified.jsonl") + read_jsonl(out / "failed.jsonl"):
        for name, trial in row["trials"].items():
            ref = trials.get(f"algorithm/{row['question_id']}/attempt{name.split('_')[1]}")
            if ref is not None and (trial["test_result"] == "Pass") != (ref["verdict_reference"] == "Pass"):
                differences.add(ref["id"])
                assert trial["test_result"] == "Pass", ref["id"]
    assert differences == EXPLAINED_FENCE_TRIALS
    for trial_id in EXPLAINED_FENCE_TRIALS:
        lines = [line for line in trials[trial_id]["test"].splitlines() if line.strip()]
        assert lines[0] == "from solution import *" and lines[1] in ("``", "`python"), trial_id

    # Expected pass@k: the reference's verdicts, the seven flipped to Pass.
    passed_at: dict[str, list[int]] = {}
    for trial_id, t in trials.items():
        _, qid, attempt = trial_id.split("/")
        ok = t["verdict_reference"] == "Pass" or trial_id in EXPLAINED_FENCE_TRIALS
        passed_at.setdefault(qid, []).append(int(attempt.removeprefix("attempt")) if ok else 99)
    expected = {k: sum(min(v) < k for v in passed_at.values()) for k in (1, 2, 3)}
    reference = {k: sum(any(t["verdict_reference"] == "Pass" for i, t in trials.items()
                            if i.split("/")[1] == qid and int(i.split("attempt")[1]) < k) for qid in passed_at)
                 for k in (1, 2, 3)}
    # From the reference's own verdicts in the trial file (none of the left-out questions ever
    # passed there). The data's README states pass@3 = 16 for the whole file; its trial file has 15
    # questions with a passing attempt among attempts 0-2.
    assert reference == {1: 8, 2: 10, 3: 15}
    ours = {int(k): v["questions"] for k, v in stats["pass_at_k"]["algorithm"].items()}
    assert ours == expected == {1: 12, 2: 14, 3: 19}


def test_kill_9_mid_run_then_resume_loses_nothing_and_repeats_no_request(tmp_path, isolated):
    n = 30
    questions, answers = write_add_questions(tmp_path, n)
    server, url = start_test_server(answers)
    try:
        out = tmp_path / "run"
        cmd = [sys.executable, "-m", "kodcode_async.cli", "run", "--input", str(questions), "--out", str(out),
               "--backend", "openai", "--base-url", url, "--model", "m", "--workers", "4", "--attempts", "1",
               "--max-attempts", "1", "--sandbox-workers", "2"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        verified = out / "verified.jsonl"
        kill_when_rows(proc, verified, 5)
        done_before = len(read_jsonl(verified))
        assert 5 <= done_before < n
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        rows = read_jsonl(verified)
        ids = [row["question_id"] for row in rows]
        assert sorted(ids) == [f"k{i:03d}" for i in range(n)]  # none lost, none duplicated
        stats = server_stats(url)
        # Every completion the server produced was journaled before use, except those cut off by
        # the kill while in flight: at most --workers of them can be asked twice.
        assert n <= stats["requests"] <= n + 4
        repeated = [k for k, c in stats["by_key"].items() if c > 1]
        assert len(repeated) <= 4
    finally:
        server.terminate()
        server.wait()


def test_sigint_stops_gracefully_and_the_same_command_resumes(tmp_path, isolated):
    n = 20
    questions, answers = write_add_questions(tmp_path, n)
    server, url = start_test_server(answers, delay=0.3)
    try:
        out = tmp_path / "run"
        cmd = [sys.executable, "-m", "kodcode_async.cli", "run", "--input", str(questions), "--out", str(out),
               "--backend", "openai", "--base-url", url, "--model", "m", "--workers", "2", "--attempts", "1",
               "--max-attempts", "1", "--sandbox-workers", "1"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out / "verified.jsonl").exists():
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "run the same command again to resume" in err
        first = len(read_jsonl(out / "verified.jsonl"))
        assert 1 <= first < n
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        ids = sorted(row["question_id"] for row in read_jsonl(out / "verified.jsonl"))
        assert ids == [f"k{i:03d}" for i in range(n)]
        assert server_stats(url)["requests"] <= n + 2  # at most the two cut off in flight
    finally:
        server.terminate()
        server.wait()


def test_bad_input_rows_and_bad_config_get_clear_errors(tmp_path):
    # Nothing here runs code, so it runs without isolation (asked for by name): a broken bwrap
    # cannot hide a regression in input handling.
    q = tmp_path / "q.jsonl"
    q.write_text('{"question": "Write f."}\nnot json\n{"nope": 1}\n{"question": "  "}\n')
    rec = tmp_path / "rec.jsonl"
    rec.write_text("")
    out = tmp_path / "run"
    r = run_cli("run", "--input", str(q), "--out", str(out), "--backend", "recorded", "--recorded", str(rec),
                "--attempts", "1", "--max-attempts", "1", "--isolation", "none")
    # Nothing is recorded for the one good row: not an attempt, so no label; the question stays
    # unfinished, the run says so and exits 3, and the manifest is not complete.
    assert r.returncode == 3, r.stderr
    assert "1 items unfinished: solutions: not_recorded (1); run the same command again to resume" in r.stderr
    assert "WITHOUT any sandbox isolation" in r.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert [x["line"] for x in stats["rejected_rows"]] == [2, 3, 4]
    assert not (out / "failed.jsonl").exists() and not (out / "verified.jsonl").exists()
    assert json.loads((out / "manifest.json").read_text())["complete"] is False
    cfg = tmp_path / "bad.toml"
    cfg.write_text('workers = "many"\n')
    r = run_cli("run", "--config", str(cfg))
    assert r.returncode != 0 and "workers must be int" in r.stderr
    cfg.write_text("wokers = 3\n")
    r = run_cli("run", "--config", str(cfg))
    assert r.returncode != 0 and "unknown key 'wokers'" in r.stderr
    cfg.write_text('isolation = "auto"\n')
    r = run_cli("run", "--config", str(cfg))
    assert r.returncode != 0 and "isolation must be" in r.stderr
    for flag, value, message in (("--workers", "0", "--workers must be greater than 0"),
                                 ("--attempts", "-1", "--attempts must be greater than 0"),
                                 ("--flaky-reruns", "-1", "--flaky-reruns must be 0 or more")):
        fresh = tmp_path / f"never-{flag[2:]}"
        r = run_cli("run", "--input", str(q), "--out", str(fresh), flag, value)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not fresh.exists()
    for url, message in (("localhost:8000/v1", "must start with http:// or https://"), ("http://h:port/v1", "bad base URL")):
        fresh = tmp_path / "never-url"
        r = run_cli("run", "--input", str(q), "--out", str(fresh), "--backend", "openai", "--model", "m", "--base-url", url)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not fresh.exists()
