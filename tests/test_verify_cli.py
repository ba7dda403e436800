"""`kodcode-async verify` end to end, as a user runs it (a real subprocess)."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT, is_bwrap_label, read_jsonl


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_verify_cli_keeps_input_order_and_reports_bad_rows(tmp_path, mode, request):
    # The verify logic is tested without isolation too, so a broken bwrap cannot hide it;
    # examples/trials.jsonl is benign (an infinite loop at worst).
    if mode == "bwrap":
        request.getfixturevalue("isolated")
    out = tmp_path / "verdicts.jsonl"
    r = subprocess.run([sys.executable, "-m", "kodcode_async.cli", "verify", str(ROOT / "examples" / "trials.jsonl"),
                        "-o", str(out), "--workers", "2", "--timeout", "3", "--isolation", mode], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert [x["id"] for x in rows] == ["ok", "wrong", "loops", "line4", "no-test", "stdin"]
    assert [x["status"] for x in rows] == ["pass", "fail", "timeout", "error", "error", "pass"]
    assert "invalid JSON" in rows[3]["reason"]
    assert rows[0]["coverage"] == 100.0
    assert is_bwrap_label(rows[0]["isolation"]) if mode == "bwrap" else rows[0]["isolation"] == "none"
    assert "trials/s" in r.stdout


def test_stdin_comparison_rules():
    from sandbox.stdio import outputs_match

    assert outputs_match("3\r\n", "3")[0]
    assert outputs_match("a  \nb\n\n\n", "a\nb")[0]
    assert not outputs_match(" a", "a")[0]
    assert not outputs_match("a\n\nb", "a\nb")[0]
    assert not outputs_match("0.1000001", "0.1")[0]
    assert outputs_match("0.1000001 x", "0.1 x", float_tolerance=1e-5)[0]
    assert not outputs_match("0.1000001 y", "0.1 x", float_tolerance=1e-5)[0]


def _verify(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "kodcode_async", "verify", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_verify_bad_paths_and_numbers_end_before_any_work_with_one_line(tmp_path):
    trials = ROOT / "examples" / "trials.jsonl"
    cases = [
        ((tmp_path, "-o", tmp_path / "v.jsonl"), "is a directory; give a JSONL file"),
        ((trials, "-o", tmp_path), "is a directory; give a file path"),
        ((trials, "-o", tmp_path / "v.jsonl", "--workers", "0"), "--workers must be greater than 0"),
        ((trials, "-o", tmp_path / "v.jsonl", "--timeout", "-1"), "--timeout must be greater than 0"),
        ((trials, "-o", tmp_path / "v.jsonl", "--flaky-reruns", "-2"), "--flaky-reruns must be 0 or more"),
        ((tmp_path / "missing.jsonl", "-o", tmp_path / "v.jsonl"), "input file not found"),
    ]
    for args, message in cases:
        r = _verify(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "v.jsonl").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing was created, not even a hidden file


def test_verify_creates_the_output_folder_and_warns_on_empty_input(tmp_path, isolated):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    out = tmp_path / "new" / "deeper" / "v.jsonl"
    r = _verify(empty, "-o", out, "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert "has no rows" in r.stderr and out.exists() and out.read_text() == ""
    assert sorted(p.name for p in out.parent.iterdir()) == ["v.jsonl"]  # no .partial or other leftovers


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_interrupted_verify_leaves_the_finished_rows_in_the_output_itself(tmp_path, isolated, inherited):
    """Also when started with SIGINT ignored (a background job, some CI runners): Ctrl-C still stops it."""
    import signal
    import time

    rows = tmp_path / "slow.jsonl"
    import orjson

    # Three quick rows, then rows that take 40 s each: the signal surely lands mid-run, however
    # busy the machine is.
    rows.write_bytes(b"".join(orjson.dumps({"id": f"r{i}", "solution": "x = 1\n", "test": (
        f"import time\ndef test_a():\n    time.sleep({0 if i < 3 else 40})\n")}) + b"\n" for i in range(40)))
    out = tmp_path / "v.jsonl"
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if inherited == "ignored" else None
    proc = subprocess.Popen([sys.executable, "-m", "kodcode_async", "verify", str(rows), "-o", str(out),
                             "--workers", "2", "--timeout", "60"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ignore)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    done = read_jsonl(out)
    assert 3 <= len(done) < 40 and [r["id"] for r in done] == [f"r{i}" for i in range(len(done))]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.jsonl", "v.jsonl"]


def test_more_sandbox_workers_than_the_machine_holds_is_refused_before_anything_starts(tmp_path):
    from tests.conftest import run_cli

    out = tmp_path / "v.jsonl"
    r = run_cli("verify", "examples/trials.jsonl", "-o", str(out), "--workers", "100000")
    assert r.returncode == 2 and "more sandbox workers than this machine can hold" in r.stderr
    assert not out.exists() and "Traceback" not in r.stderr
    run_dir = tmp_path / "run"
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(run_dir), "--sandbox-workers", "100000")
    assert r.returncode == 2 and "--sandbox-workers 100000" in r.stderr and not run_dir.exists()


def test_sigterm_ends_verify_like_ctrl_c_and_leaves_no_log_directory(tmp_path):
    import glob
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    before = set(glob.glob("/tmp/kodcode-sandbox-logs-*"))
    out = tmp_path / "v.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "kodcode_async.cli", "verify", "examples/trials.jsonl", "-o",
                             str(out), "--workers", "1"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (set(glob.glob("/tmp/kodcode-sandbox-logs-*")) - before):
        time.sleep(0.05)
    time.sleep(1.0)  # the pool is up and working
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted; the verdicts finished so far" in err, err
    assert not (set(glob.glob("/tmp/kodcode-sandbox-logs-*")) - before)


def test_a_pool_killed_with_sigkill_leaves_directories_the_next_one_removes(tmp_path):
    import glob
    import os
    import signal
    import tempfile
    import time

    pattern = os.path.join(tempfile.gettempdir(), "kodcode-sandbox-logs-*")
    before = set(glob.glob(pattern))
    proc = subprocess.Popen([sys.executable, "-m", "kodcode_async.cli", "verify", "examples/trials.jsonl", "-o",
                             str(tmp_path / "v.jsonl"), "--workers", "1"], cwd=ROOT, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (set(glob.glob(pattern)) - before):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # no clean-up runs: the kernel's OOM killer does the same
    proc.wait(timeout=30)
    left = set(glob.glob(pattern)) - before
    assert [os.path.basename(p).split("-")[3] for p in left] == [str(proc.pid)]
    # A live process's directory (this test's own pid) is left alone.
    alive = tempfile.mkdtemp(prefix=f"kodcode-sandbox-logs-{os.getpid()}-")
    try:
        one = tmp_path / "one.jsonl"
        one.write_text('{"id": "a", "solution": "x = 1\\n", "test": "def test_a():\\n    assert True\\n"}\n')
        r = _verify(one, "-o", tmp_path / "w.jsonl", "--workers", "2", "--isolation", "none")
        assert r.returncode == 0, r.stderr
        assert "1 sandbox worker)" in r.stdout  # no more workers than rows
        assert not any(os.path.exists(p) for p in left) and os.path.isdir(alive)
    finally:
        os.rmdir(alive)
