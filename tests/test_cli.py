"""CLI details: engine-dead errors are found inside exception groups and reported plainly."""

import argparse
import subprocess
import sys

from kodcode_async.backends import BackendDead
from kodcode_async.cli import build_parser
from kodcode_async.terminal import first_of
from tests.conftest import ROOT


def test_engine_dead_errors_are_found_inside_task_groups():
    dead = BackendDead("engine died")
    group = ExceptionGroup("outer", [ValueError("x"), ExceptionGroup("inner", [dead])])
    assert first_of(group, (BackendDead,)) is dead
    assert first_of(ExceptionGroup("g", [ValueError("x")]), (BackendDead,)) is None


def test_every_flag_of_every_command_is_in_its_help_and_run_flags_are_config_keys():
    import re

    from kodcode_async.options import DEFAULTS as RUN_DEFAULTS

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


def test_run_help_states_every_default():
    from kodcode_async.options import BY_KEY

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    for action in run._actions:
        o = BY_KEY.get(action.dest)
        if o is not None and (o.default not in ("", False) or o.shown):
            assert "default" in (action.help or ""), f"{o.flag} does not state its default"


def test_limit_seed_prompts_log_file_and_quiet(tmp_path, isolated):
    import json

    from tests.conftest import read_jsonl, run_cli

    out = tmp_path / "run"
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "solutions.user.txt").write_text("Solve this, with pytest tests:\n{question}\n")
    log = tmp_path / "run.log"
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(out), "--limit", "2", "--seed", "7",
                "--prompts", str(prompts), "--log-file", str(log), "--quiet", "--sft-n", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and "items:" not in r.stderr  # quiet: no progress view, no summary
    rows = read_jsonl(out / "verified.jsonl")  # both demo-001 and demo-002 pass: no failed.jsonl
    assert sorted(row["question_id"] for row in rows) == ["demo-001", "demo-002"]  # --limit 2
    from kodcode_async.prompts import load_prompts

    want = load_prompts(str(prompts)).stage_hash("solutions")
    assert want != load_prompts().stage_hash("solutions")
    assert {row["metadata"]["prompt_hash"] for row in rows} == {want}
    fingerprint = json.loads((out / "run.json").read_text())["fingerprint"]
    assert fingerprint["solutions"]["seed"] == 7 and fingerprint["solutions"]["prompt"] == want
    text = log.read_text()
    assert "INFO kodcode_async.run: run " in text and "2 items to do" in text
    assert "INFO" not in r.stderr  # the terminal gets warnings only when a file takes the logs
    # Another seed is another configuration.
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(out), "--limit", "2", "--seed", "8",
                "--prompts", str(prompts), "--sft-n", "0")
    assert r.returncode == 2 and "solutions.seed: 7 -> 8" in r.stderr
    # Broken templates are refused before anything is created.
    (prompts / "style.user.txt").write_text("Rewrite {question} as a stub.\n")
    never = tmp_path / "never"
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(never), "--prompts", str(prompts))
    assert r.returncode == 2 and "style.user.txt must use the placeholders ['name', 'question', 'solution']" in r.stderr
    (prompts / "style.user.txt").unlink()
    (prompts / "solution.user.txt").write_text("{question}")
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(never), "--prompts", str(prompts))
    assert r.returncode == 2 and "unknown template solution.user.txt" in r.stderr and not never.exists()


def test_every_attempt_samples_with_the_base_seed_plus_its_number():
    from kodcode_async.stages.base import Item
    from kodcode_async.stages.solutions import SolveOptions, SolveStage

    stage = SolveStage(SolveOptions(seed=100), llm=None, sandbox=None, concurrency=1)
    item = Item("q", {"question_id": "q", "question": "Write f.", "subset": "s"})
    assert [stage.request(item, k).sampling.seed for k in range(3)] == [100, 101, 102]


def test_an_output_path_that_cannot_be_written_gets_one_line_not_a_traceback(tmp_path, demo_run):
    from tests.conftest import run_cli

    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a path under a file cannot be created, as root too
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(blocker / "run"), "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr and str(blocker) in r.stderr, r.stderr
    for args in (("export", str(demo_run), "-o", str(blocker / "x.parquet")),
                 ("select", str(demo_run), "--n", "2", "-o", str(blocker / "x.jsonl")),
                 ("report", str(demo_run), "-o", str(blocker / "report"))):
        r = run_cli(*args)
        assert r.returncode != 0 and "Traceback" not in r.stderr and "error" in r.stderr, (args, r.stderr)


def test_a_run_with_no_usable_row_says_why_and_fails(tmp_path):
    from tests.conftest import run_cli

    bad = tmp_path / "q.jsonl"
    bad.write_text('{"prompt": "x"}\n{"prompt": "y"}\n')
    r = run_cli("run", "--config", "examples/demo.toml", "--input", str(bad), "--out", str(tmp_path / "r"), "--quiet")
    assert r.returncode == 2 and "line 1 rejected: row has no non-empty string 'question'" in r.stderr
    assert "no usable question" in r.stderr
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    r = run_cli("run", "--config", "examples/demo.toml", "--input", str(empty), "--out", str(tmp_path / "e"))
    assert r.returncode == 2 and "(it is empty)" in r.stderr


def test_paths_in_a_config_file_are_relative_to_its_folder(tmp_path):
    from kodcode_async.options import load_config

    cfg = tmp_path / "conf" / "x.toml"
    cfg.parent.mkdir()
    cfg.write_text('input = "q.jsonl"\nout = "../runs/a"\nrecorded = "/abs/r.jsonl"\nmodel = "m/x"\n'
                   'seeds = "leetcode=s/lc.jsonl,docs=/d.jsonl"\nbenchmarks = "humaneval,b.jsonl"\n'
                   'prefill-template = "llama3"\nlog-file = "~/k.log"\n')
    o = load_config(str(cfg))
    base = str(cfg.parent)
    assert o["input"] == f"{base}/q.jsonl" and o["out"] == f"{tmp_path}/runs/a"
    assert o["recorded"] == "/abs/r.jsonl" and o["model"] == "m/x"  # absolute paths and non-paths unchanged
    assert o["seeds"] == f"leetcode={base}/s/lc.jsonl,docs=/d.jsonl"
    assert o["benchmarks"] == f"humaneval,{base}/b.jsonl" and o["prefill_template"] == "llama3"
    assert o["log_file"].startswith("/") and o["log_file"].endswith("/k.log")
    # The bundled demo runs from any folder.
    r = subprocess.run([sys.executable, "-m", "kodcode_async.cli", "run", "--config", str(ROOT / "examples" / "demo.toml"),
                        "--out", str(tmp_path / "run"), "--limit", "1", "--sft-n", "0", "--isolation", "none",
                        "--quiet"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "verified.jsonl").exists()


def test_help_states_each_default_once():
    from kodcode_async.cli import _DefaultsHelp, build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        formatter = _DefaultsHelp(name)
        for action in sub._actions:
            text = formatter._expand_help(action) if action.help else ""
            assert text.count("(default") <= 1 and "(default: None)" not in text, (name, action.dest, text)
            assert "(default: )" not in text and "(default: False)" not in text, (name, action.dest, text)


def test_a_run_starts_no_more_sandbox_workers_than_jobs_can_run_at_once(tmp_path, isolated):
    import json

    from tests.conftest import run_cli

    out = tmp_path / "run"
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(out), "--limit", "1", "--attempts", "2",
                "--sft-n", "0", "--sandbox-workers", "6", "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "stats.json").read_text())["sandbox"]["workers"] == 2  # 1 question x 2 attempts
