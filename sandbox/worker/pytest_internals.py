"""Every private name of pytest the sandbox reaches for, in one place, with the versions it was checked on.

pytest's public API runs a whole session per call; the sandbox goes below it for three reasons:

* speed (the fast path): the zygote configures pytest and starts its session once
  (`start_session`), each job runs only the rest of pytest's `wrap_session` (`finish_session`),
  the assert rewriter is paused inside coverage's windows, and pytest_speedups.py replaces a few
  hot functions;
* trust: the objects between a test function and its report (GUARDED), the code a report must
  come through (`report_paths`), and which items are plain test functions;
* strict comparisons (opt-in): a pass of our own inside the assert rewriter (strict_unsafe.py).

`OLDEST` and `NEWEST` bound the pytest versions this code was checked against: CI runs the suite
on the newest pytest the project allows and the sandbox tests again on the oldest. On a pytest
outside that range `fast_path_problem()` says so; the worker then runs `pytest.main` per job
without any speed patch (the same verdicts, slower) and warns once. The trust checks are not
optional: if a name they need is gone, the worker does not start (a clear error), rather than
judge without them.
"""

from __future__ import annotations

import os
import re
import sys
from types import CodeType, ModuleType

OLDEST = (8, 0)  # major, minor
NEWEST = (9, 2)


def version(text: str | None = None) -> tuple[int, int]:
    """pytest's (major, minor), from `text` or the installed pytest's version."""
    if text is None:
        import pytest

        text = pytest.__version__
    m = re.match(r"(\d+)\.(\d+)", text)
    if m is None:
        raise ValueError(f"not a version: {text!r}")
    return int(m.group(1)), int(m.group(2))


def fast_path_problem(text: str | None = None) -> str:
    """'' when the installed pytest (or `text`) is inside the checked range, else the warning to give."""
    try:
        found = version(text)
    except (ValueError, ImportError) as e:
        return f"pytest's version cannot be read ({e})"
    if OLDEST <= found <= NEWEST:
        return ""
    return (f"pytest {found[0]}.{found[1]} is outside the versions the sandbox's fast path was checked on "
            f"({OLDEST[0]}.{OLDEST[1]} to {NEWEST[0]}.{NEWEST[1]}): running pytest.main per job without "
            "its speed-ups (the same verdicts, slower)")


# ---- modules whose functions are patched (speed-ups, coverage windows, strict comparisons)


def assertion_rewrite() -> ModuleType:
    from _pytest.assertion import rewrite

    return rewrite


def traceback_source() -> tuple[ModuleType, ModuleType]:
    """(the module that formats tracebacks, the one that finds a statement's lines)."""
    from _pytest._code import code, source

    return code, source


# ---- the fast path: one configured session in the zygote, the rest of wrap_session per job


def prepare_config(args: list[str], plugins: list[object]):  # noqa: ANN201 - a pytest Config
    """The Config a fresh `pytest args` would build, with `plugins` registered."""
    from _pytest.config import _prepareconfig

    return _prepareconfig(args, plugins=plugins)


def start_session(config):  # noqa: ANN001, ANN201 - a pytest Config in, its Session out
    """What `wrap_session` does before collection: configure, then pytest_sessionstart."""
    from _pytest.main import Session

    session = Session.from_config(config)
    config._do_configure()
    config.hook.pytest_sessionstart(session=session)
    return session


INTERNAL_ERROR_CAUSE: list[str] = []  # the exception that made the job's session end in an internal error


def finish_session(config, session) -> int:  # noqa: ANN001
    """The rest of pytest's `wrap_session` after pytest_sessionstart, which ran in the zygote.

    Mirrors `_pytest.main.wrap_session` (pytest OLDEST to NEWEST) from `initstate = 2` on, with
    the default protocol `_main`: the same exit codes, interrupt and internal-error handling,
    sessionfinish and unconfigure, so the verdict is the one a fresh `pytest` would give.
    """
    import _pytest._code
    from _pytest import timing
    from _pytest.main import ExitCode, _main
    from _pytest.outcomes import Exit, Failed
    from pytest import UsageError

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and hasattr(reporter, "_session_start"):
        reporter._session_start = timing.Instant()  # durations count from the job, not the warm-up
    session.exitstatus = ExitCode.OK
    try:
        try:
            session.exitstatus = _main(config, session) or 0
        except UsageError:
            session.exitstatus = ExitCode.USAGE_ERROR
        except Failed:
            session.exitstatus = ExitCode.TESTS_FAILED
        except (KeyboardInterrupt, Exit):
            excinfo = _pytest._code.ExceptionInfo.from_current()
            exitstatus = ExitCode.INTERRUPTED
            if isinstance(excinfo.value, Exit) and excinfo.value.returncode is not None:
                exitstatus = excinfo.value.returncode
            config.hook.pytest_keyboard_interrupt(excinfo=excinfo)
            session.exitstatus = exitstatus
        except BaseException as e:
            session.exitstatus = ExitCode.INTERNAL_ERROR
            INTERNAL_ERROR_CAUSE[:] = [type(e).__name__]
            excinfo = _pytest._code.ExceptionInfo.from_current()
            try:
                config.notify_exception(excinfo, config.option)
            except Exit as exc:
                if exc.returncode is not None:
                    session.exitstatus = exc.returncode
                sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
            else:
                if isinstance(excinfo.value, SystemExit):
                    sys.stderr.write("mainloop: caught unexpected SystemExit!\n")
    finally:
        excinfo = None
        os.chdir(session.startpath)
        try:
            config.hook.pytest_sessionfinish(session=session, exitstatus=session.exitstatus)
        except Exit as exc:
            if exc.returncode is not None:
                session.exitstatus = exc.returncode
            sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        config._ensure_unconfigure()
    return session.exitstatus


# ---- trust: what a report must come through, and what must not change while a job runs


# pytest's machinery between a test function and its report. Code that replaces any of these
# (a known reward hack: "make every report say passed") makes the job's passes untrustworthy.
GUARDED = (
    ("_pytest.python", "Function", "runtest"), ("_pytest.python", None, "pytest_pyfunc_call"),
    ("_pytest.python", "Module", "collect"), ("_pytest.main", "Session", "perform_collect"),
    ("_pytest.runner", "CallInfo", "from_call"), ("_pytest.runner", None, "call_and_report"),
    ("_pytest.runner", None, "call_runtest_hook"), ("_pytest.runner", None, "runtestprotocol"),
    ("_pytest.runner", None, "pytest_runtest_makereport"), ("_pytest.runner", None, "check_interactive_exception"),
    ("_pytest.reports", "TestReport", "from_item_and_call"), ("_pytest.reports", "BaseReport", "passed"),
    ("_pytest.reports", "BaseReport", "failed"), ("_pytest.reports", "BaseReport", "skipped"),
    ("pluggy._callers", None, "_multicall"), ("pluggy._hooks", "HookCaller", "__call__"),
)


def guarded_objects() -> dict[str, object]:
    """The objects of GUARDED as they are now, by dotted name (names a version lacks are left out)."""
    found = {}
    for module, owner, name in GUARDED:
        mod = sys.modules.get(module) or __import__(module, fromlist=["_"])
        holder = getattr(mod, owner, None) if owner else mod
        value = vars(holder).get(name, getattr(holder, name, None)) if holder is not None else None
        if value is not None:
            found[f"{module}.{owner + '.' if owner else ''}{name}"] = value
    return found


def report_paths() -> tuple[CodeType, CodeType, CodeType]:
    """The code objects a session's start, its collection and its test reports come through:
    (main.wrap_session, Session.perform_collect, runner.call_and_report). Raises if one is gone:
    the job guard cannot be built without them."""
    from _pytest.main import Session, wrap_session
    from _pytest.runner import call_and_report

    return wrap_session.__code__, Session.perform_collect.__code__, call_and_report.__code__


def is_plain_function(item) -> bool:  # noqa: ANN001 - a pytest Item
    """A plain test function (pytest's own Function), not a unittest or doctest item."""
    return type(item).__name__ == "Function" and type(item).__module__ == "_pytest.python"
