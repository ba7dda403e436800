"""`kodcode-async verify` end to end, as a user runs it (a real subprocess)."""

import subprocess
import sys

from tests.conftest import ROOT, is_bwrap_label, read_jsonl


def test_verify_cli_keeps_input_order_and_reports_bad_rows(tmp_path, isolated):
    out = tmp_path / "verdicts.jsonl"
    r = subprocess.run([sys.executable, "-m", "kodcode_async.cli", "verify", str(ROOT / "examples" / "trials.jsonl"),
                        "-o", str(out), "--workers", "2", "--timeout", "3"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert [x["id"] for x in rows] == ["ok", "wrong", "loops", "line4", "no-test", "stdin"]
    assert [x["status"] for x in rows] == ["pass", "fail", "timeout", "error", "error", "pass"]
    assert "invalid JSON" in rows[3]["reason"]
    assert rows[0]["coverage"] == 100.0 and is_bwrap_label(rows[0]["isolation"])
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
