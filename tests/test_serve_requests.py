"""serve's request validation and response shape, in-process: what a body becomes, what is refused.

The HTTP behaviour (status codes on the wire, auth, streaming, limits under load) is in
tests/test_serve.py against a real server; these state the rules one field at a time.
"""

import base64
import json
import math
from types import SimpleNamespace

import pytest

from kodcode_async.serve import Metrics, SandboxServer, ServeConfig, _clamp, run_code_response
from sandbox import Job, Limits, Verdict
from sandbox.protocol import StdinCase
from sandbox.protocol import TestOutcome as Outcome

CONFIG = ServeConfig(default_run_timeout_s=10.0, max_run_timeout_s=60.0, default_memory_mb=1024, max_memory_mb=4096,
                     max_queue=3, retry_after_s=7)


def server() -> SandboxServer:
    return SandboxServer(CONFIG, SimpleNamespace(size=2))  # only the pool's size is read here


def body_of(response) -> dict:
    return json.loads(response.body)


def test_a_limit_is_its_default_when_absent_else_a_finite_number_within_bounds():
    assert _clamp(None, 10.0, 0.1, 60.0, "run_timeout") == 10.0
    assert _clamp(5, 10.0, 0.1, 60.0, "run_timeout") == 5.0 and _clamp("2.5", 10.0, 0.1, 60.0, "t") == 2.5
    assert _clamp(0, 10.0, 0.1, 60.0, "t") == 0.1 and _clamp(-3, 10.0, 0.1, 60.0, "t") == 0.1  # never 0: no limit
    assert _clamp(999, 10.0, 0.1, 60.0, "t") == 60.0 and _clamp(60, 10.0, 0.1, 60.0, "t") == 60.0
    for bad, message in [(True, "run_timeout must be a number, not True"),
                         ([1], "run_timeout must be a number, not [1]"),
                         ("ten", "run_timeout must be a number, not 'ten'"),
                         (math.inf, "run_timeout must be a finite number, not inf"),
                         ("nan", "run_timeout must be a finite number, not 'nan'")]:
        with pytest.raises(ValueError) as e:
            _clamp(bad, 10.0, 0.1, 60.0, "run_timeout")
        assert str(e.value) == message
    with pytest.raises(ValueError) as e:
        _clamp("x" * 500, 1, 0, 2, "t")
    assert len(str(e.value)) == 200


def test_a_python_body_becomes_a_stdin_job_and_a_pytest_body_a_test_of_its_solution():
    s = server()
    job = s.job_from_run_code({"code": "print(input())", "stdin": "hi", "run_timeout": 2, "memory_limit_MB": 99.9})
    assert job == Job(id="run_code", solution="print(input())", limits=Limits(wall_s=2.0, memory_mb=99),
                      coverage=False, stdin_tests=[StdinCase("hi")])
    assert s.job_from_run_code({"code": "x", "language": "python"}).limits == Limits(wall_s=10.0, memory_mb=1024)
    assert s.job_from_run_code({"code": "x", "stdin": None}).stdin_tests == [StdinCase("")]
    solution = base64.b64encode(b"def f():\n    return 1\n").decode()
    job = s.job_from_run_code({"code": "def test_f(): pass", "language": "pytest", "files": {"solution.py": solution},
                               "memory_limit_MB": 10**9})
    assert job == Job(id="run_code", solution="def f():\n    return 1\n", test="def test_f(): pass",
                      limits=Limits(wall_s=10.0, memory_mb=4096), coverage=False)
    assert s.job_from_run_code({"code": "def test_f(): pass", "language": "pytest"}).solution == ""


def test_a_body_that_cannot_become_a_job_is_refused_with_its_reason():
    s = server()
    for body, message in [
        ([], "the body must be a JSON object with a string 'code'"),
        ({"code": 1}, "the body must be a JSON object with a string 'code'"),
        ({"code": "x", "files": ["solution.py"]}, "'files' must map paths to base64 contents"),
        ({"code": "x", "files": {"solution.py": "%%%"}}, "files['solution.py'] is not base64 UTF-8 text: "),
        ({"code": "x", "files": {"solution.py": base64.b64encode(b"\xff\xfe").decode()}},
         "files['solution.py'] is not base64 UTF-8 text: "),
        ({"code": "x", "run_timeout": "soon"}, "run_timeout must be a number, not 'soon'"),
        ({"code": "x", "memory_limit_MB": False}, "memory_limit_MB must be a number, not False"),
    ]:
        with pytest.raises(ValueError) as e:
            s.job_from_run_code(body)
        assert str(e.value).startswith(message), (body, str(e.value))
    for body, message in [
        ({"code": "x", "fetch_files": ["out.txt"]}, "fetch_files is not supported: the job's files are not kept"),
        ({"code": "x", "files": {"data.csv": "", "solution.py": ""}},
         "files: only solution.py is supported, not ['data.csv']"),
        ({"code": "x", "language": "cpp"}, "unsupported language 'cpp': this sandbox runs python and pytest"),
    ]:
        response = s.job_from_run_code(body)
        assert response.status == 200 and body_of(response) == {
            "status": "SandboxError", "message": message, "compile_result": None, "run_result": None, "files": {}}


def test_admission_refuses_a_batch_beyond_capacity_and_asks_to_retry_when_busy():
    s = server()  # 2 workers + 3 queued
    assert s.capacity == 5 and s._full(5) is None
    too_big = s._full(6)
    assert too_big.status == 400 and body_of(too_big)["message"] == (
        "a batch of 6 jobs exceeds this server's capacity (5); split it")
    s.admitted = 4
    assert s._full(1) is None
    busy = s._full(2)
    assert busy.status == 503 and busy.headers["Retry-After"] == "7"
    assert body_of(busy) == {"status": "SandboxError",
                             "message": "busy: 4 jobs queued or running, capacity 5; retry later"}
    assert s.metrics.rejected == {"400": 1, "503": 1}


def test_latency_buckets_are_cumulative_and_every_request_is_counted():
    m = Metrics()
    for seconds in (0.005, 0.3, 0.3, 100.0):
        m.observe("/verify", seconds)
    counts = m.latency["/verify"]
    assert counts[0] == 1 and counts[4] == 1 and counts[5] == 3 and counts[-2] == 3 and counts[-1] == 4
    assert m.latency_sum["/verify"] == pytest.approx(100.605)
    m.observe("/verify", 0.01)  # an edge counts in its own bucket
    assert m.latency["/verify"][0] == 2


def _v(**kw) -> Verdict:
    return Verdict(**{"id": "run_code", "status": "pass", "wall_s": 0.123456, "stdout": "o", "stderr": "e", **kw})


def test_verdicts_in_sandboxfusions_response_shape():
    run = {"status": "Finished", "execution_time": 0.1235, "return_code": 0, "stdout": "o", "stderr": "e"}
    ok = {"status": "Success", "message": "", "compile_result": None, "run_result": run, "files": {}}
    assert run_code_response(_v(exit_code=0), "pytest") == ok
    assert run_code_response(_v(tests=[Outcome("case[0]", "passed", "exit 0")]), "python") == ok
    # pytest: its exit status, never 0 for a run that did not pass.
    failed = run_code_response(_v(status="fail", reason="1 of 1 tests failed", exit_code=1), "pytest")
    assert failed["status"] == "Failed" and failed["message"] == "1 of 1 tests failed"
    assert failed["run_result"]["return_code"] == 1
    skipped = run_code_response(_v(status="fail", reason="no test passed", exit_code=0), "pytest")
    assert skipped["run_result"]["return_code"] == 1 and skipped["status"] == "Failed"
    assert run_code_response(_v(status="fail", exit_code=5), "pytest")["run_result"]["return_code"] == 5
    # python: the program's own exit status and last line of stderr.
    crashed = run_code_response(_v(status="fail", reason="1 case failed",
                                   tests=[Outcome("case[0]", "failed", "exit 3: ValueError: bad")]), None)
    assert crashed["run_result"]["return_code"] == 3 and crashed["message"] == "the program exit 3: ValueError: bad"
    wrong = run_code_response(_v(status="fail", reason="wrong output",
                                 tests=[Outcome("case[0]", "failed", "expected 2, got 1")]), "python")
    assert wrong["run_result"]["return_code"] == 1 and wrong["message"] == "wrong output"
    slow = run_code_response(_v(status="timeout", reason="wall-clock limit of 2 s exceeded"), "python")
    assert slow["run_result"]["status"] == "TimeLimitExceeded" and slow["run_result"]["return_code"] is None
    assert slow["status"] == "Failed"
    assert run_code_response(_v(status="timeout"), "pytest")["run_result"]["return_code"] is None
    cut = run_code_response(_v(exit_code=0, truncated=True), "pytest")
    assert cut["status"] == "Success" and cut["message"] == "output truncated at the output limit"
    cut_fail = run_code_response(_v(status="fail", reason="r", exit_code=1, truncated=True), "pytest")
    assert cut_fail["message"] == "r; output truncated at the output limit"
    assert run_code_response(_v(status="fail", reason="x" * 3000, exit_code=1), "pytest")["message"] == "x" * 2000
    assert run_code_response(_v(status="sandbox_error", reason="pool down"), "pytest") == {
        "status": "SandboxError", "message": "pool down", "compile_result": None, "run_result": None, "files": {}}
