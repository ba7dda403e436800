"""`serve` as verl uses it: a real client against the real server on 127.0.0.1."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest

from tests.conftest import ROOT

TOKEN = "s3cret-token"
TEST = "from solution import *\n\ndef test_add():\n    assert add(1, 2) == 3\n"


def start(*flags, token=True):
    env = {**os.environ, "KODCODE_TEST_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "kodcode_async", "serve", "--port", "0", *flags]
    if token:
        cmd += ["--token-env", "KODCODE_TEST_TOKEN"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    line = proc.stdout.readline()
    assert "serving the sandbox on http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() is not None else line
    return proc, "http://127.0.0.1:" + line.split("127.0.0.1:")[1].split()[0]


def call(url, path, body=None, token=TOKEN, raw=None, timeout=60):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method="POST" if data is not None else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def run_code(url, code, **fields):
    # The body verl's sandbox_fusion client sends.
    body = {"code": code, "language": "python", "stdin": "", "compile_timeout": 10, "run_timeout": 10,
            "memory_limit_MB": 1024, "files": {}, "fetch_files": [], **fields}
    status, _, out = call(url, "/run_code", body)
    assert status == 200, out
    return json.loads(out)


@pytest.fixture(scope="module")
def server(isolated):
    proc, url = start("--workers", "2", "--max-queue", "2")
    yield proc, url
    proc.terminate()
    proc.wait(timeout=30)


def test_run_code_answers_in_sandboxfusion_shape_for_every_outcome(server):
    _, url = server
    ok = run_code(url, "import sys\nprint(sys.stdin.read()[::-1])", stdin="abc")
    assert ok["status"] == "Success" and ok["compile_result"] is None and ok["files"] == {}
    assert ok["run_result"]["status"] == "Finished" and ok["run_result"]["return_code"] == 0
    assert ok["run_result"]["stdout"] == "cba\n" and isinstance(ok["run_result"]["execution_time"], float)
    failed = run_code(url, "import sys\nprint('oops', file=sys.stderr)\nsys.exit(3)")
    assert failed["status"] == "Failed" and failed["run_result"]["status"] == "Finished"
    assert failed["run_result"]["return_code"] == 3 and failed["run_result"]["stderr"] == "oops\n"
    hard_exit = run_code(url, "import os\nprint('bye', flush=True)\nos._exit(7)")
    assert hard_exit["status"] == "Failed" and hard_exit["run_result"]["return_code"] == 7
    assert hard_exit["run_result"]["stdout"] == "bye\n"
    segfault = run_code(url, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\nprint('still here')")
    assert segfault["status"] == "Failed" and segfault["run_result"]["return_code"] == -11
    assert "still here" not in segfault["run_result"]["stdout"]
    crash = run_code(url, "raise ValueError('bad')")
    assert crash["run_result"]["return_code"] == 1 and "ValueError: bad" in crash["run_result"]["stderr"]
    slow = run_code(url, "while True:\n    pass", run_timeout=1)
    assert slow["status"] == "Failed" and slow["run_result"]["status"] == "TimeLimitExceeded"
    memory = run_code(url, "x = bytearray(2 * 1024 ** 3)", memory_limit_MB=256)
    assert memory["status"] == "Failed" and "MemoryError" in memory["run_result"]["stderr"]
    big = run_code(url, "import sys\nsys.stdout.write('x' * 10_000_000)", run_timeout=10)
    assert big["run_result"]["status"] == "Finished"  # drained while it ran: not mistaken for a timeout
    solution = base64.b64encode(b"def add(a, b):\n    return a + b\n").decode()
    passed = run_code(url, TEST, language="pytest", files={"solution.py": solution})
    assert passed["status"] == "Success" and passed["run_result"]["return_code"] == 0
    wrong = base64.b64encode(b"def add(a, b):\n    return a - b\n").decode()
    assert run_code(url, TEST, language="pytest", files={"solution.py": wrong})["status"] == "Failed"
    other = run_code(url, "int main() {}", language="cpp")
    assert other["status"] == "SandboxError" and "unsupported language 'cpp'" in other["message"]


def test_bad_requests_missing_tokens_and_oversized_bodies_are_refused_clearly(server):
    _, url = server
    status, _, out = call(url, "/run_code", raw=b"{not json")
    assert status == 400 and b"bad request" in out
    assert call(url, "/run_code", {"code": "1"}, token=None)[0] == 401
    assert call(url, "/run_code", {"code": "1"}, token="wrong")[0] == 401
    assert call(url, "/metrics", token=None)[0] == 401
    assert call(url, "/health", token=None)[0] == 200  # health needs no token
    assert call(url, "/run_code", raw=b'{"code": "' + b"x" * (17 * 1024 * 1024) + b'"}')[0] == 413


def test_limits_and_inputs_are_validated_before_anything_is_admitted(server):
    _, url = server
    # A fraction of a megabyte or 0 must not become "no limit": clamped to at least 1 MB.
    tiny = run_code(url, "x = bytearray(64 * 1024 ** 2)\nprint('allocated')", memory_limit_MB=0.5)
    assert tiny["status"] == "Failed" and "allocated" not in tiny["run_result"]["stdout"], tiny
    zero = run_code(url, "while True:\n    pass", run_timeout=0)
    assert zero["run_result"]["status"] == "TimeLimitExceeded"  # 0 is the minimum, never "no limit"
    for field, value in (("run_timeout", "abc"), ("run_timeout", "nan"), ("memory_limit_MB", "inf"),
                         ("memory_limit_MB", [1])):
        status, _, out = call(url, "/run_code", {"code": "1", field: value})
        assert status == 400 and field.encode() in out and json.loads(out)["status"] == "SandboxError", out
    for query in ("timeout=0", "timeout=nan", "timeout=abc", "memory_mb=0"):
        status, _, out = call(url, f"/verify?{query}", [{"id": "a", "solution": "x = 1\n", "test": TEST}])
        if query in ("timeout=0", "memory_mb=0"):
            assert status == 200, out  # clamped, then run
        else:
            assert status == 400 and b"must be a finite number" in out or b"must be a number" in out, out
    status, _, out = call(url, "/verify", [{"id": str(i)} for i in range(10_001)])
    assert status == 400 and b"at most 10000" in out
    status, _, out = call(url, "/run_code", raw=b'{"code": "' + b"x" * (17 * 1024 * 1024) + b'"}')
    assert status == 413 and json.loads(out)["status"] == "SandboxError"
    req = urllib.request.Request(url + "/run_code", data=b'{"code": "1"}', method="POST")
    req.add_header("Authorization", "Bearer \u201ctoken\u201d".encode().decode("latin-1"))
    try:
        urllib.request.urlopen(req, timeout=30)
        raise AssertionError("a wrong token was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 401


def test_run_code_return_codes_are_a_real_process_s(server):
    _, url = server
    failing = run_code(url, TEST, language="pytest",
                       files={"solution.py": base64.b64encode(b"def add(a, b):\n    return 0\n").decode()})
    assert failing["run_result"]["return_code"] == 1
    broken = run_code(url, "import nothing_here\n" + TEST, language="pytest",
                      files={"solution.py": base64.b64encode(b"def add(a, b):\n    return a + b\n").decode()})
    assert broken["run_result"]["return_code"] == 2
    skipped = run_code(url, TEST, language="pytest", files={"solution.py": base64.b64encode(
        b"import pytest\ndef add(a, b):\n    pytest.skip('no')\n").decode()})
    assert skipped["status"] == "Failed" and skipped["run_result"]["return_code"] != 0
    exited = run_code(url, "import sys\nsys.exit(3)")
    assert exited["message"].startswith("the program exit 3"), exited["message"]
    big = run_code(url, "print('x' * 1_000_000)")
    assert big["status"] == "Success" and "truncated" in big["message"]


def test_verify_streams_verdicts_with_ids_and_metrics_count_them(server):
    _, url = server
    rows = [{"id": "slow", "solution": "import time\ntime.sleep(1)\ndef add(a, b):\n    return a + b\n", "test": TEST},
            {"id": "fast", "solution": "def add(a, b):\n    return a + b\n", "test": TEST},
            {"id": "broken", "solution": "def add(a, b):\n    return 0\n", "test": TEST},
            {"id": "no-test", "solution": "x = 1"}]
    status, headers, out = call(url, "/verify?coverage=0", rows)
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["id"] for x in lines][0] == "no-test" and lines[0]["status"] == "error"
    got = {x["id"]: x["status"] for x in lines}
    assert got == {"no-test": "error", "slow": "pass", "fast": "pass", "broken": "fail"}
    assert [x["id"] for x in lines].index("fast") < [x["id"] for x in lines].index("slow")  # completion order
    status, _, text = call(url, "/metrics")
    assert status == 200 and b'kodcode_verdicts_total{status="pass"}' in text
    assert b'kodcode_request_seconds_count{route="/verify"}' in text and b"kodcode_workers 2" in text


def test_a_full_server_answers_503_at_once_and_recovers(isolated):
    proc, url = start("--workers", "1", "--max-queue", "0", token=False)
    try:
        sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        body = json.dumps({"code": "import time\ntime.sleep(3)", "language": "python", "run_timeout": 10}).encode()
        sock.sendall(b"POST /run_code HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.5)  # the one worker is busy now
        t = time.monotonic()
        status, headers, out = call(url, "/run_code", {"code": "print(1)"}, token=None)
        assert status == 503 and headers["Retry-After"] == "1" and time.monotonic() - t < 1.0
        assert json.loads(out)["status"] == "SandboxError"
        reply = sock.recv(65536)
        while b'"status":' not in reply:
            reply += sock.recv(65536)
        assert b"200 OK" in reply
        sock.close()
        assert run_code_no_token(url)["status"] == "Success"  # capacity is back
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_code_no_token(url):
    status, _, out = call(url, "/run_code", {"code": "print(1)", "language": "python"}, token=None)
    assert status == 200
    return json.loads(out)


def test_a_client_that_disconnects_cancels_its_job_and_shutdown_reaps_everything(isolated):
    proc, url = start("--workers", "1", "--max-queue", "1", token=False)
    try:
        time.sleep(0.5)
        at_rest = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        body = json.dumps({"code": "import time\ntime.sleep(60)", "language": "python", "run_timeout": 60}).encode()
        sock.sendall(b"POST /run_code HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        deadline = time.monotonic() + 10
        while json.loads(call(url, "/health", token=None)[2])["busy"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        # The busy worker's whole tree (its job included): a cancelled job's worker is killed, not reused.
        running = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        assert running and at_rest <= running
        sock.close()  # the client goes away mid-run
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            health = json.loads(call(url, "/health", token=None)[2])
            alive = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
            if health["queued_or_running"] == 0 and not (running & alive):
                break
            time.sleep(0.1)
        assert health["queued_or_running"] == 0 and health["busy"] == 0
        assert not running & alive  # the job was cancelled, its worker killed and every process reaped
        assert run_code_no_token(url)["status"] == "Success"  # a fresh worker took its place
        # Shutdown with a job in flight: SIGTERM, and nothing is left behind.
        sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        sock.sendall(b"POST /run_code HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(1.0)
        tree = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        gone, alive = psutil.wait_procs(tree, timeout=10)
        assert alive == []
        sock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_rewards_score_honest_and_broken_answers_in_process_and_through_the_server(server, reward_pool):
    from kodcode_async.rewards import acompute_score_batch, compute_score, extract_code

    _, url = server
    answer = "Here is my solution:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert extract_code(answer) == "def add(a, b):\n    return a + b\n"
    assert compute_score("kodcode", answer, TEST)["score"] == 1.0
    assert compute_score("kodcode", "def add(a, b):\n    return a - b\n", TEST)["score"] == 0.0
    hacks = ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "import pytest\npytest.skip('no', allow_module_level=True)"]
    import asyncio

    scores = asyncio.run(acompute_score_batch(["kodcode"] * 4, [answer, *hacks], [TEST] * 4, sandbox_url=url,
                                              token=TOKEN))
    assert [s["score"] for s in scores] == [1.0, 0.0, 0.0, 0.0]


def test_silent_connections_are_closed_and_one_client_cannot_hold_them_all(isolated):
    """A client that opens connections and sends nothing (or a byte at a time) loses them after the
    header deadline; past the per-client cap, new ones are closed at once; /health still answers."""
    import asyncio
    import threading

    from kodcode_async.serve import ServeConfig, serve
    from sandbox.pool import SandboxConfig

    ready: list[int] = []
    config = ServeConfig(port=0, header_timeout_s=1.0, max_connections_per_client=4,
                         sandbox=SandboxConfig(workers=1))
    loop = asyncio.new_event_loop()
    task = loop.create_task(serve(config, on_ready=ready.append))
    def run() -> None:
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not ready and time.monotonic() < deadline:
            time.sleep(0.05)
        port = ready[0]
        silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(6)]
        silent[0].sendall(b"GET /hea")  # a trickle, never a whole head
        time.sleep(0.3)
        closed_now = 0
        for s in silent[4:]:  # over the cap: closed at once
            s.settimeout(2)
            try:
                closed_now += s.recv(1) == b""
            except ConnectionResetError:
                closed_now += 1
        assert closed_now == 2
        time.sleep(1.5)
        for s in silent[:4]:  # past the header deadline: closed
            s.settimeout(2)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
        status, _, body = call(f"http://127.0.0.1:{port}", "/health", token=None)
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=30)
