"""Verdict statuses and how raw outcomes map onto them.

status      meaning
--------    -------------------------------------------------------------
pass        pytest exited 0, at least one test ran and passed
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

import signal
from dataclasses import dataclass

from sandbox.protocol import Collected, Done, Job, TestEvent, TestOutcome, Verdict, decode_events, runs_in_place

STATUSES = ("pass", "fail", "error", "timeout", "memory", "sandbox_error", "flaky")

# pytest.ExitCode values, spelled out so the parent never imports pytest.
PYTEST_OK = 0
PYTEST_TESTS_FAILED = 1


def status_from_pytest(exit_code: int, tests: list[TestOutcome], memory_error: bool) -> tuple[str, str]:
    """Map a finished pytest session onto (status, reason)."""
    if memory_error and exit_code != PYTEST_OK:
        return "memory", "MemoryError raised: the job exceeded its memory allowance"
    if exit_code == PYTEST_OK:
        if any(t.outcome in ("passed", "xpassed") for t in tests):
            return "pass", ""
        return "fail", "no test passed (every collected test was skipped or xfailed)"
    if exit_code == PYTEST_TESTS_FAILED:
        bad = [t for t in tests if t.outcome in ("failed", "error")]
        return "fail", f"{len(bad)} of {len(tests)} tests failed" if tests else "tests failed"
    names = {2: "collection error or interrupted", 3: "pytest internal error", 4: "pytest usage error",
             5: "no tests collected"}
    return "error", names.get(exit_code, f"pytest exited with code {exit_code}")


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


def failed_case(nodeid: str, rc: int, stderr: str) -> tuple[TestOutcome, bool]:
    """A stdin case whose program exited with rc != 0 (a signal as -signum): the outcome, with the
    exit code and the last line of stderr, and whether that line is a MemoryError."""
    last = stderr.strip().splitlines()[-1:] or [describe_wait_status(rc if rc >= 0 else 128 - rc)]
    return TestOutcome(nodeid, "failed", f"exit {rc}: {last[0][:250]}"), last[0].startswith("MemoryError")


def in_place_outcome(end: JobEnd) -> list[TestEvent | Done]:
    """The events of a program that ran in the job process (protocol.runs_in_place), from its exit.

    The same outcome the fork-per-case path reports: passed on exit 0, else failed with the
    exit code and the last line of stderr (a signal as a negative code).
    """
    code = end.exit_code or 0
    if code == 0:
        return [TestEvent(TestOutcome("case[0]", "passed", "exit 0")), Done(exit_code=0)]
    outcome, memory_error = failed_case("case[0]", code if code <= 128 else 128 - code,
                                        end.stderr.decode("utf-8", "replace"))
    return [TestEvent(outcome), Done(exit_code=1, memory_error=memory_error)]


def map_verdict(job: Job, end: JobEnd, isolation: str) -> Verdict:
    """The verdict for a job, from what its supervisor saw. Never raises for any input."""
    events, problem = decode_events(end.events, end.token)
    if (runs_in_place(job) and not problem and end.exit_code is not None and not end.timed_out
            and any(isinstance(e, Collected) for e in events) and not any(isinstance(e, Done) for e in events)):
        events += in_place_outcome(end)
    tests = [e.test for e in events if isinstance(e, TestEvent)]
    collected = any(isinstance(e, Collected) for e in events)
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
            status, reason = status_from_pytest(done.exit_code, tests, memory_error)
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
    return Verdict(
        id=job.id, status=status, reason=reason, tests=tests, coverage=coverage, cpu_s=round(end.cpu_s, 4),
        wall_s=round(end.wall_s, 4), peak_rss_mb=round(end.peak_rss_mb, 1),
        stdout=end.stdout.decode("utf-8", "replace"),  # pragma: no mutate - codec names ignore case
        stderr=end.stderr.decode("utf-8", "replace"),  # pragma: no mutate
        isolation=isolation, exit_code=code)


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
