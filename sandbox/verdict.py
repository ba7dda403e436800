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
"""

from __future__ import annotations

import signal

from sandbox.protocol import TestOutcome, Verdict

STATUSES = ("pass", "fail", "error", "timeout", "memory", "sandbox_error")

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
