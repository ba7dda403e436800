"""CLI details: engine-dead errors are found inside exception groups and reported plainly."""

import subprocess
import sys

from kodcode_async.backends import BackendDead
from kodcode_async.cli import _engine_dead, build_parser
from tests.conftest import ROOT


def test_engine_dead_errors_are_found_inside_task_groups():
    dead = BackendDead("engine died")
    group = ExceptionGroup("outer", [ValueError("x"), ExceptionGroup("inner", [dead])])
    assert _engine_dead(group, (BackendDead,)) is dead
    assert _engine_dead(ExceptionGroup("g", [ValueError("x")]), (BackendDead,)) is None


def test_run_help_lists_every_option():
    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for flag in ("--config", "--backend", "--base-url", "--model", "--workers", "--out", "--attempts",
                 "--max-attempts", "--start-at", "--style", "--sft-n"):
        assert flag in text


def test_missing_input_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "kodcode_async.cli", "verify", str(tmp_path / "nope.jsonl"), "-o",
                        str(tmp_path / "out.jsonl")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "input file not found" in r.stderr
