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


def test_every_flag_of_every_command_is_in_its_help_and_run_flags_are_config_keys():
    import re

    from kodcode_async.cli import RUN_DEFAULTS

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) >= {"verify", "run", "export"}
    for name, sub in commands.items():
        r = subprocess.run([sys.executable, "-m", "kodcode_async", name, "--help"], capture_output=True, text=True,
                           cwd=ROOT, timeout=60)
        assert r.returncode == 0, r.stderr
        flags = [o for action in sub._actions for o in action.option_strings]
        assert len(flags) > 2
        for flag in flags:
            assert re.search(rf"(^|[\s,\[]){re.escape(flag)}\b", r.stdout), f"{name}: {flag} missing from --help"
    run_flags = {o[2:].replace("-", "_") for a in commands["run"]._actions for o in a.option_strings
                 if o.startswith("--") and o not in ("--help", "--config")}
    assert run_flags == set(RUN_DEFAULTS), run_flags ^ set(RUN_DEFAULTS)


def test_missing_input_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "kodcode_async.cli", "verify", str(tmp_path / "nope.jsonl"), "-o",
                        str(tmp_path / "out.jsonl")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "input file not found" in r.stderr
