"""Verdict statuses and how raw outcomes map onto them.

status      meaning
--------    -------------------------------------------------------------
pass        pytest exited 0, every collected test passed (none skipped, xfailed or
            missing), every test the test file declares was collected, and the job
            process itself exited 0
fail        a test failed, or the job died while tests were running
error       syntax/import/collection error, no test collected, or the job
            died before any test ran
timeout     the wall-clock or CPU-time limit expired
memory      the job ran out of its memory allowance (MemoryError)
sandbox_error  the sandbox itself failed twice on this job (never the code's fault)
flaky       passed once, but a rerun (other hash seed, other test order) did not

`map_verdict` is the whole mapping from how a job ended to its verdict: a pure function, so
the worker only collects facts (exit status, events, timings) and this module decides.
"""

from __future__ import annotations

import ast
import signal
from dataclasses import dataclass

from sandbox.protocol import Collected, Done, Job, TestEvent, TestOutcome, Verdict, decode_events

STATUSES = ("pass", "fail", "error", "timeout", "memory", "sandbox_error", "flaky")

# pytest.ExitCode values, spelled out so the parent never imports pytest.
PYTEST_OK = 0
PYTEST_TESTS_FAILED = 1


def status_from_pytest(exit_code: int, tests: list[TestOutcome], memory_error: bool, collected: int | None = None,
                       declared: Declared | None = None) -> tuple[str, str]:
    """Map a finished pytest session onto (status, reason).

    A pass needs evidence, not only pytest's exit status: every collected test reported, at least
    one passed and every other one was skipped or xfailed by the test file itself (a marker in its
    source, or a skip raised in it), and every test the file declares (`declared_tests`) among
    them. A session that says "all good" while its own outcomes disagree (a skip, xfail or exit
    raised from the solution, a status rewritten, tests deselected or never reported) is a failure.
    """
    if memory_error and exit_code != PYTEST_OK:
        return "memory", "MemoryError raised: the job exceeded its memory allowance"
    if exit_code == PYTEST_OK:
        problem = missing_evidence(tests, collected, declared)
        return ("fail", problem) if problem else ("pass", "")
    if exit_code == PYTEST_TESTS_FAILED:
        bad = [t for t in tests if t.outcome in ("failed", "error")]
        return "fail", f"{len(bad)} of {len(tests)} tests failed" if tests else "tests failed"
    names = {2: "collection error or interrupted", 3: "pytest internal error", 4: "pytest usage error",
             5: "no tests collected"}
    return "error", names.get(exit_code, f"pytest exited with code {exit_code}")


def missing_evidence(tests: list[TestOutcome], collected: int | None, declared: Declared | None) -> str:
    """'' when the outcomes prove a pass; else why they do not."""
    declared = declared or Declared()
    passed = [t for t in tests if t.outcome == "passed"]
    if not passed:
        return "no test passed (every collected test was skipped or xfailed)"
    others = [t for t in tests if t.outcome != "passed" and not declared.excuses(t)]
    if others:
        kinds = sorted({t.outcome for t in others})
        return (f"{len(others)} of {len(tests)} tests did not pass ({', '.join(kinds)}: {others[0].nodeid}); "
                "a pass needs every collected test to pass")
    if collected is not None and len(tests) != collected:
        return (f"{len(tests)} of {collected} collected tests reported an outcome: the session ended before "
                "the rest ran")
    missing = sorted(declared.names - {test_name(t.nodeid) for t in tests})
    if missing:
        return f"tests in the test file were never run: {', '.join(missing)[:300]}"
    return ""


def test_name(nodeid: str) -> str:
    """'test_solution.py::TestX::test_y[1-2]' -> 'TestX::test_y'."""
    name = nodeid.partition("::")[2] or nodeid
    return name.partition("[")[0]


@dataclass(frozen=True, slots=True)
class Declared:
    """What a test file's source says, read outside the job: its tests, and which carry skip/xfail marks."""

    names: frozenset[str] = frozenset()
    marked: frozenset[str] = frozenset()  # tests (or "*": the whole module) with a skip/skipif/xfail mark

    def excuses(self, t: TestOutcome) -> bool:
        """A non-pass the test file asked for: a marked test, or a skip raised in the test file."""
        if t.outcome not in ("skipped", "xfailed", "xpassed"):
            return False
        name = test_name(t.nodeid)
        if "*" in self.marked or name in self.marked or name.split("::")[0] in self.marked:
            return True
        return t.outcome == "skipped" and t.origin == "test"


def _sets_pytestmark(node: ast.stmt) -> bool:
    """`pytestmark = ...` (or annotated): a mark for every test of the module or class."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets)


def _has_mark(decorators: list[ast.expr]) -> bool:
    return any(word in ast.unparse(d) for d in decorators for word in ("skip", "xfail"))


def declared_tests(source: str | None) -> Declared:
    """The tests a test file declares at its top level, as pytest collects them by default.

    `def test_*` (and async) functions, and `test_*` methods of `Test*` classes without
    `__init__` or `__new__` (or of classes deriving from a `...TestCase`). Read from the source
    outside the job, so nothing the job does can change what is expected of it. Tests made at
    run time (in loops, under conditions) are not declared, only required to pass if collected.
    """
    if not source:
        return Declared()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return Declared()
    names = set()
    marked = set()
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if _sets_pytestmark(node):
            marked.add("*")
        if isinstance(node, functions) and node.name.startswith("test"):
            names.add(node.name)
            if _has_mark(node.decorator_list):
                marked.add(node.name)
        elif isinstance(node, ast.ClassDef):
            unittest = any((isinstance(b, ast.Attribute) and b.attr.endswith("TestCase"))
                           or (isinstance(b, ast.Name) and b.id.endswith("TestCase")) for b in node.bases)
            methods = [m for m in node.body if isinstance(m, functions)]
            if not (node.name.startswith("Test") or unittest):
                continue
            if not unittest and any(m.name in ("__init__", "__new__") for m in methods):
                continue
            names.update(f"{node.name}::{m.name}" for m in methods if m.name.startswith("test"))
            if _has_mark(node.decorator_list) or any(_sets_pytestmark(b) for b in node.body):
                marked.add(node.name)
            marked.update(f"{node.name}::{m.name}" for m in methods if _has_mark(m.decorator_list))
    return Declared(frozenset(names), frozenset(marked))


def describe_wait_status(code: int) -> str:
    """Human text for the job process's end, as encoded by the child (128+signal for signals)."""
    if code > 128:
        try:
            return f"killed by {signal.Signals(code - 128).name}"
        except ValueError:
            return f"killed by signal {code - 128}"
    return f"exited with code {code}"


def reference_label(verdict: Verdict) -> str:
    """The KodCode reference's three-way label for a verdict."""
    if verdict.status == "pass":
        return "Pass"
    if verdict.status == "timeout":
        return "Fail - Timed Out"
    return "Fail"


@dataclass(frozen=True, slots=True)
class JobEnd:
    """Everything the supervisor observed about one finished (or killed) job."""

    events: bytes  # the raw result channel
    stdout: bytes
    stderr: bytes
    exit_code: int | None  # 128+signal for a signal; None if the job's status was never reaped
    cpu_s: float
    peak_rss_mb: float
    wall_s: float
    timed_out: bool  # the wall clock ran out and the supervisor killed the job
    flooded: bool  # the job wrote more than the result channel may hold
    token: bytes = b""  # the job's token: every event frame must start with it
    # Events the supervisor itself produced (stdin mode: it ran each case and compared the
    # output), used instead of decoding the result channel.
    trusted: tuple | None = None
    truncated: bool = False  # stdout or stderr was cut at the output limit


def failed_case(nodeid: str, rc: int, stderr: str) -> tuple[TestOutcome, bool]:
    """A stdin case whose program exited with rc != 0 (a signal as -signum): the outcome, with the
    exit code and the last line of stderr, and whether that line is a MemoryError."""
    last = stderr.strip().splitlines()[-1:] or [describe_wait_status(rc if rc >= 0 else 128 - rc)]
    return TestOutcome(nodeid, "failed", f"exit {rc}: {last[0][:250]}"), last[0].startswith("MemoryError")


def map_verdict(job: Job, end: JobEnd, isolation: str) -> Verdict:
    """The verdict for a job, from what its supervisor saw. Never raises for any input."""
    if end.trusted is not None:
        events, problem = list(end.trusted), ""
    else:
        events, problem = decode_events(end.events, end.token)
    tests = [e.test for e in events if isinstance(e, TestEvent)]
    collected_event = next((e for e in events if isinstance(e, Collected)), None)
    collected = collected_event is not None
    done = next((e for e in events if isinstance(e, Done)), None)
    code = end.exit_code
    cpu_limit = job.limits.cpu_limit_s()
    memory_error = bool(done and done.memory_error) or any(
        t.message.startswith("MemoryError") for t in tests if t.outcome in ("failed", "error"))
    if end.timed_out:
        status, reason = "timeout", f"wall-clock limit of {job.limits.wall_s:g} s exceeded"
    elif code is not None and (code == 128 + signal.SIGXCPU or
                               (code == 128 + signal.SIGKILL and cpu_limit and end.cpu_s >= cpu_limit)):
        status, reason = "timeout", f"CPU-time limit of {cpu_limit} s exceeded"
    elif end.flooded:
        status, reason = "error", "the job flooded its result channel"
    elif done is not None and not problem:
        if done.reason:
            status, reason = "error", done.reason
        else:
            declared = declared_tests(job.test) if job.stdin_tests is None else None
            status, reason = status_from_pytest(done.exit_code, tests, memory_error,
                                                collected_event.count if collected_event else None, declared)
            if status == "pass" and code != 0:
                how = describe_wait_status(code) if code is not None else "vanished"
                status, reason = "fail", f"the job process {how} after a passing session"
    else:
        how = describe_wait_status(code) if code is not None else "vanished"
        if problem:
            how += f"; {problem}"
        if memory_error:
            status = "memory"
        elif collected or tests:
            status = "fail"
        else:
            status = "error"
        reason = f"the job process {how} before reporting a result"
    coverage = done.coverage if done is not None and not problem else None
    if done is not None and not problem and end.trusted is None and code == 0:
        code = done.exit_code  # pytest's own exit status, as a fresh `pytest` would have exited
    return Verdict(
        id=job.id, status=status, reason=reason, tests=tests, coverage=coverage, cpu_s=round(end.cpu_s, 4),
        wall_s=round(end.wall_s, 4), peak_rss_mb=round(end.peak_rss_mb, 1),
        stdout=end.stdout.decode("utf-8", "replace"),  # pragma: no mutate - codec names ignore case
        stderr=end.stderr.decode("utf-8", "replace"),  # pragma: no mutate
        isolation=isolation, exit_code=code, truncated=end.truncated)


def combine_reruns(first: Verdict, reruns: list[Verdict]) -> Verdict:
    """A passing verdict and its reruns: still `pass` if every rerun passed, else `flaky`."""
    statuses = [v.status for v in reruns]
    first.reruns = statuses
    if any(s == "sandbox_error" for s in statuses):
        bad = next(v for v in reruns if v.status == "sandbox_error")
        first.status, first.reason = "sandbox_error", f"a flakiness rerun failed in the sandbox: {bad.reason}"
    elif any(s != "pass" for s in statuses):
        bad = next(v for v in reruns if v.status != "pass")
        disagree = sum(s != "pass" for s in statuses)
        first.status = "flaky"
        first.reason = (f"passed, then {disagree} of {len(statuses)} reruns with other hash seeds and test "
                        f"orders did not ({', '.join(statuses)}); first: {bad.status}: {bad.reason}")[:2000]
    return first
