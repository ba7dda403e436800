"""The job side, pytest mode: runs the untrusted tests and streams events on fd 3.

Everything here executes in the job process, after the fork, with the untrusted code in the
same interpreter; nothing here may be trusted by the supervisor (it decodes the events
defensively). The zygote only builds the plugins once, before any job.
"""

from __future__ import annotations

import os
import random
import sys

import msgspec
from pluggy import HookimplMarker

from sandbox.protocol import RESULT_FD, Collected, Done, SessionStarted, TestEvent, TestOutcome, encode
from sandbox.worker import pytest_internals as internals
from sandbox.worker.guard_unsafe import EMIT


class Reporter:
    """pytest plugin, registered once in the zygote, active only in job processes.

    Besides streaming outcomes it checks them: a "passed" call report for a test whose function
    never ran, or that raised, or any change to pytest's reporting machinery (internals.GUARDED, captured
    here in the zygote) turns the outcome into a failure with the reason. Those are the ways a
    solution can make failing tests look passed from inside the process.
    """

    def __init__(self) -> None:
        # Events go out through sys.audit(EMIT, ...): the audit hook that writes them to the result
        # channel (guard_unsafe.install, in the job process) holds the token and checks the caller.
        self.memory_error = False
        self.order_seed: int | None = None
        self._outcomes: dict[str, TestOutcome] = {}
        self._pristine = internals.guarded_objects()
        self._calls: dict[str, str] = {}  # nodeid -> "returned" | "raised <type>"
        self._plain: set[str] = set()  # plain test functions (not unittest or doctest items)
        self.tampered = ""

    def _changed(self) -> str:
        if not self.tampered:
            now = internals.guarded_objects()
            changed = sorted(k for k, v in self._pristine.items() if now.get(k) is not v)
            if changed:
                self.tampered = f"pytest internals were replaced during the run ({', '.join(changed)[:300]})"
        return self.tampered

    def pytest_runtest_call(self, item) -> None:  # noqa: ANN001
        # Only plain functions go through pytest_pyfunc_call (unittest and doctest items do not).
        if internals.is_plain_function(item):
            self._plain.add(item.nodeid)

    @HookimplMarker("pytest")(wrapper=True)  # pytest.hookimpl, without importing pytest here
    def pytest_pyfunc_call(self, pyfuncitem):  # noqa: ANN001, ANN201
        self._calls[pyfuncitem.nodeid] = "running"
        try:
            result = yield
        except BaseException as e:
            self._calls[pyfuncitem.nodeid] = f"raised {type(e).__name__}"
            raise
        self._calls[pyfuncitem.nodeid] = "returned"
        return result

    def _check_pass(self, nodeid: str) -> str:
        """'' when a reported pass is real, else why not."""
        tampered = self._changed()
        if tampered:
            return tampered
        call = self._calls.get(nodeid)
        if nodeid not in self._plain and call is None:
            return ""  # a unittest or doctest item: its own machinery ran it
        if call is None or call == "running":
            return "reported passed, but the test function never ran to the end: pytest was tampered with"
        if call.startswith("raised"):
            return f"reported passed, but the test {call}: pytest's reporting was tampered with"
        return ""

    def _send(self, event: msgspec.Struct) -> None:
        sys.audit(EMIT, encode(event))

    def emit_callers(self, extra: tuple = ()) -> dict:
        """For guard_unsafe.install: who may send events, and from which pytest call path."""
        start, collect, report = internals.report_paths()
        cls = type(self)
        callers = {cls.pytest_sessionstart.__code__: frozenset({start}),
                   cls.pytest_collection_finish.__code__: frozenset({collect}),
                   cls.pytest_runtest_logreport.__code__: frozenset({report}),
                   cls.pytest_collectreport.__code__: None}
        callers.update((code, None) for code in extra)
        return callers

    def pytest_collection_modifyitems(self, session, config, items) -> None:  # noqa: ANN001 - pytest hook
        if self.order_seed is not None:  # flakiness reruns: another test order
            random.Random(self.order_seed).shuffle(items)

    @HookimplMarker("pytest")(trylast=True)  # after pytest's own (the fixture manager registers itself there)
    def pytest_sessionstart(self, session) -> None:  # noqa: ANN001
        # With pytest.main per job: the job guard fingerprints the session's plugins now, before
        # the job's code is imported (in the zygote, where the fast path starts its session, no
        # guard is listening yet).
        self._send(SessionStarted())

    def pytest_internalerror(self, excrepr, excinfo) -> None:  # noqa: ANN001
        # The session ended in an internal error: remember what raised, for the verdict's reason
        # (finish_session records it first on the fast path; pytest.main gets here only).
        if not internals.INTERNAL_ERROR_CAUSE and excinfo is not None:
            internals.INTERNAL_ERROR_CAUSE[:] = [type(excinfo.value).__name__]

    def pytest_collection_finish(self, session) -> None:  # noqa: ANN001
        self._send(Collected(count=len(session.items)))

    def pytest_exception_interact(self, node, call, report) -> None:  # noqa: ANN001
        if call.excinfo is not None and call.excinfo.errisinstance(MemoryError):
            self.memory_error = True

    def pytest_collectreport(self, report) -> None:  # noqa: ANN001
        if report.failed:
            self._send(TestEvent(TestOutcome(report.nodeid or "<module>", "error", short_message(report))))

    def pytest_runtest_logreport(self, report) -> None:  # noqa: ANN001
        wasxfail = hasattr(report, "wasxfail")
        outcome = None
        if report.when == "setup" and not report.passed:
            outcome = "error" if report.failed else ("xfailed" if wasxfail else "skipped")
        elif report.when == "call":
            problem = self._check_pass(report.nodeid) if report.passed else ""
            if problem:
                self._outcomes[report.nodeid] = TestOutcome(report.nodeid, "failed", problem[:300])
                outcome = None
            elif report.passed:
                outcome = "xpassed" if wasxfail else "passed"
            elif report.failed:
                outcome = "failed"
            else:
                outcome = "xfailed" if wasxfail else "skipped"
        elif report.when == "teardown" and report.failed:
            outcome = "error"
        if outcome is not None:
            prev = self._outcomes.get(report.nodeid)
            if prev is None or outcome == "error":
                self._outcomes[report.nodeid] = TestOutcome(report.nodeid, outcome, short_message(report),
                                                            skip_origin(report) if outcome == "skipped" else "")
        if report.when == "teardown" and report.nodeid in self._outcomes:
            self._send(TestEvent(self._outcomes.pop(report.nodeid)))


def skip_origin(report) -> str:  # noqa: ANN001
    """'test' when a skip was raised in the test file (a skip marker, or pytest.skip() in a test)."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3 and os.path.basename(str(longrepr[0])) == "test_solution.py":
        return "test"
    return ""


def short_message(report) -> str:  # noqa: ANN001
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # skip: (path, lineno, reason)
        return str(longrepr[2])[:300]
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return crash.message[:300]
    text = str(longrepr).strip().splitlines()
    return (text[-1] if text else "")[:300]


def coverage_windows_plugin():  # noqa: ANN201 - built in the zygote, where pytest is imported
    """pytest plugin: measure coverage only while test or solution code can run.

    coverage's tracer slows everything it watches about threefold, pytest's own machinery
    included, while start() and stop() cost microseconds. So coverage runs only around:

    * the collection of each collector (the test module's import, and so the solution's), with
      a pause while pytest rewrites the test module's asserts (pure pytest work);
    * each fixture's execution (`pytest_fixture_setup`: fixtures and xunit setup functions,
      the only user code of the setup phase);
    * each test call, and each teardown (finalizers run inside pytest's teardown).

    The lines measured are the same as with coverage on for the whole session; the agreement
    test checks coverage against the reference's `pytest --cov` on real trials.
    """
    import pytest

    _pause_while_rewriting()

    class CoverageWindows:
        cov = None

        def _window(self):  # noqa: ANN202
            if self.cov is None or _TRACING[0] is not None:
                return (yield)
            self.cov.start()
            _TRACING[0] = self.cov
            try:
                return (yield)
            finally:
                _TRACING[0] = None
                self.cov.stop()

        @pytest.hookimpl(wrapper=True)
        def pytest_make_collect_report(self, collector):  # noqa: ANN001, ANN201
            return (yield from self._window())

        @pytest.hookimpl(wrapper=True)
        def pytest_fixture_setup(self, fixturedef, request):  # noqa: ANN001, ANN201
            return (yield from self._window())

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_call(self, item):  # noqa: ANN001, ANN201
            return (yield from self._window())

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_teardown(self, item, nextitem):  # noqa: ANN001, ANN201
            return (yield from self._window())

    return CoverageWindows()


_TRACING: list = [None]  # the Coverage object while a window is open, else None


def _pause_while_rewriting() -> None:
    """Patch pytest's assert rewriter (once) to run untraced inside a coverage window."""
    rewrite = internals.assertion_rewrite()
    original = getattr(rewrite, "_rewrite_test", None)
    if not callable(original) or hasattr(original, "__wrapped__"):
        return

    def _rewrite_test(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        cov = _TRACING[0]
        if cov is None:
            return original(*args, **kwargs)
        cov.stop()  # pytest's own work, not the test's
        try:
            return original(*args, **kwargs)
        finally:
            cov.start()

    _rewrite_test.__wrapped__ = original
    rewrite._rewrite_test = _rewrite_test


def run_pytest_unsafe(warm, coverage_on: bool, solution: str, box: list,  # noqa: ANN001 - a warmup.Warm
                      strict: bool = False) -> int:
    """Run the prepared pytest session on the job area; send Done on fd 3. Returns 0.

    `box` holds the job's token; guard_unsafe.install takes it out before any job code runs.
    """
    from sandbox.worker import guard_unsafe

    cov = warm.coverage if coverage_on else None
    reporter = warm.reporter
    guard_unsafe.install(RESULT_FD, box, warm.config,
                         type(reporter)._send.__code__, reporter.emit_callers((run_pytest_unsafe.__code__,)),
                         strict_mode=strict)
    code = 3
    reason = ""
    # With a started session, coverage runs in windows (see coverage_windows_plugin);
    # on the slow path it runs for the whole session.
    whole_session = cov is not None and warm.session is None
    if warm.coverage_windows is not None:
        warm.coverage_windows.cov = cov
    try:
        if whole_session:
            cov.start()
        try:
            if warm.session is not None:
                if warm.capman is not None:
                    # The state a fresh pytest is in after parsing its arguments:
                    # global capture started, then suspended until the session runs.
                    warm.capman.start_global_capturing()
                    warm.capman.suspend_global_capture()
                code = int(internals.finish_session(warm.config, warm.session))
            else:
                import pytest

                code = int(pytest.main(list(warm.pytest_args), plugins=[reporter]))
        finally:
            if whole_session:
                cov.stop()
    except MemoryError:
        reporter.memory_error = True
    except BaseException as e:  # noqa: BLE001 - a test may raise anything at session level
        reason = f"pytest session aborted: {type(e).__name__}: {e}"[:500]
    pct = line_coverage(cov, warm.area.solution_path, solution) if cov else None
    if reporter._changed() and code == 0:
        code, reason = 1, reporter.tampered  # whatever the reports said, this run proves nothing
    if code == 3 and not reason and internals.INTERNAL_ERROR_CAUSE:
        cause = internals.INTERNAL_ERROR_CAUSE[0]
        if cause == "MemoryError":
            reporter.memory_error = True  # the job's memory ran out inside pytest's own code: still "memory"
        elif cause in ("RecursionError", "SystemError"):
            code = 1  # the interpreter gave out under the job's code (its stack or memory): a failure
        elif cause == "SystemExit":
            reason = ("SystemExit raised outside any test (at import, or in a fixture): pytest stopped with an "
                      "internal error")
        else:
            reason = f"pytest internal error ({cause})"
    sys.stdout.flush()
    sys.stderr.flush()
    reporter._send(Done(exit_code=code, coverage=pct, memory_error=reporter.memory_error, reason=reason))
    return 0


def warm_line_coverage(cov, path: str) -> None:  # noqa: ANN001
    """Run the analysis below once in the zygote: its regexes and lazy imports then come warm to every job."""
    from coverage.parser import PythonParser

    source = '''"""Doc."""\nimport os\n\n\ndef f(x):  # pragma: no cover\n    if x:\n        return (1,\n                2)\n    return os.sep\n'''
    parser = PythonParser(text=source, filename=path, exclude=cov._exclude_regex("exclude"))
    parser.parse_source()
    parser.translate_lines({1, 2, 5, 6, 7})


def line_coverage(cov, path: str, source: str) -> float | None:  # noqa: ANN001
    """Statement coverage of solution.py, as coverage.py reports it; None if it was never imported.

    coverage's public analysis2() first copies the tracer's data into its SQLite store (~4 ms
    per job); reading the tracer's line sets and parsing the source directly gives the same
    statements and executed lines in well under a millisecond. Falls back to analysis2() if the
    internals are not what this coverage version is known to have.
    """
    try:
        from coverage.parser import PythonParser

        raw: set[int] = set()
        for filename, lines in cov._collector.data.items():
            if filename == path or os.path.realpath(filename) == path:
                raw |= set(lines)
        if not raw:
            return None
        parser = PythonParser(text=source, filename=path, exclude=cov._exclude_regex("exclude"))
        parser.parse_source()
        statements = parser.statements
        missing = statements - parser.translate_lines(raw)
    except Exception:  # noqa: BLE001 - unknown coverage internals, or a source it cannot parse
        try:
            _, statements, _, missing, _ = cov.analysis2(path)
        except Exception:  # noqa: BLE001
            return None
    return 100.0 if not statements else round(100.0 * (len(statements) - len(missing)) / len(statements), 2)


def exec_fresh_rerun_unsafe(seed: int, args: list[str], blocked: list[str], package_parent: str, spec_fd: int) -> None:
    """Replace the job process with a fresh interpreter for a flakiness rerun.

    A fresh interpreter is the only way to get another PYTHONHASHSEED: every job forked from a
    zygote shares its hash secret. The new process keeps the job's namespaces, rlimits and fds.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONHASHSEED=str(seed), PYTHONPATH=package_parent, PYTHONDONTWRITEBYTECODE="1",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    # The job's spec (with its token) stays on an inherited fd: a command line is readable in /proc.
    spec = msgspec.json.encode({"seed": seed, "args": args, "blocked": blocked, "spec_fd": spec_fd}).decode()
    os.execve(sys.executable, [sys.executable, "-m", "sandbox.worker.rerun_unsafe", spec], env)
