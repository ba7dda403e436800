"""Defences inside a pytest job: two audit hooks (PEP 578), installed before the solution is imported.

A solution runs in the same interpreter as the tests that judge it, so nothing in that process is
out of its reach in principle; the verdict's rules live outside, in the supervisor
(sandbox/verdict.py). These hooks make the in-process ways to forge a result hard to reach:

* The result channel's writer. Its token exists only inside this hook's closure (no attribute, no
  module global, no frame while job code runs). Events are written only when the sandbox's
  reporter calls `sys.audit(EMIT, ...)` from pytest's own call path: a collection result only from
  `Session.perform_collect`, a test result only from `call_and_report` for an item collected by
  that session whose test function still has its original code. A "passed" result is turned into
  a failure when pytest's registered hook implementations differ from the ones the job started
  with (a plugin added by the solution can answer for any test).
* The guard. Denied for job code: ctypes (raw memory and foreign calls), gc's object walks,
  opening a process's `mem` file, new audit hooks (which could watch this one), setting a trace or
  profile function (except coverage's, and threading's start of a thread), replacing a function's `__code__`, and
  changing classes of pytest, pluggy, coverage or the sandbox.

What remains possible (README, threat model): a solution can still call the reporter's own
hooks with results it made up from within pytest's call path, or change objects the tests
compare against; those are outside what an in-process check can prove.
"""

from __future__ import annotations

import os
import re
import struct
import sys

import msgspec

from sandbox.protocol import Collected, Done, JobEvent, SessionStarted, TestEvent, TestOutcome

EMIT = "kodcode.sandbox.event"
_PROTECTED_MODULES = ("_pytest", "pytest", "pluggy", "coverage", "sandbox")
_PROC_MEM = re.compile(r"^/proc/(self|thread-self|\d+)(/task/\d+)?/(mem|pagemap)$")
_DENIED = frozenset({"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys._current_frames"})


def install(fd: int, box: list, config, sender, callers: dict, strict_mode: bool = False) -> None:  # noqa: ANN001
    """Install the emitter and the guard. `box` holds the token and is emptied here.

    sender: the code object of the function that calls sys.audit(EMIT, payload) (Reporter._send).
    callers: code object of a function allowed to call the sender -> code objects one of which
    must be the first frame outside pluggy above it (None: no such requirement, e.g. the end of
    the session, or results that can only hurt the job).
    """
    import pluggy
    from pluggy import HookCaller

    # Everything the hooks call is bound here, while builtins and modules are as the zygote left
    # them: a solution that later replaces builtins.len or os.write cannot run code inside them.
    _len, _type, _id, _isinstance, _getattr, _sorted, _vars, _tuple, _list, _str = (
        len, type, id, isinstance, getattr, sorted, vars, tuple, list, str)
    basename, realpath, fsdecode = os.path.basename, os.path.realpath, os.fsdecode
    import doctest
    import threading

    # Callers that only hand a thread the tracer coverage registered, or put it back: threading
    # starting a thread, and doctest restoring the tracer it found around its examples.
    allowed_tracers = frozenset({threading.Thread._bootstrap_inner.__code__, doctest.DocTestRunner.run.__code__})
    token = box.pop()
    getframe = sys._getframe
    write = os.write
    pack = struct.Struct(">I").pack
    encode = msgspec.msgpack.Encoder().encode
    decode = msgspec.msgpack.Decoder(JobEvent | SessionStarted).decode
    pluggy_dir = os.path.dirname(pluggy.__file__) + os.sep

    def hook_fingerprint(config) -> tuple:  # noqa: ANN001
        """Every hook's implementations, by identity: a plugin registered by the solution changes it."""
        return _tuple((name, _tuple(_id(impl.function) for impl in caller.get_hookimpls()))
                      for name, caller in _sorted(_vars(config.pluginmanager.hook).items())
                      if _isinstance(caller, HookCaller))

    # With a session started in the zygote, its plugins are known now; with pytest.main per job
    # (config None), when the job's session starts (SessionStarted, before any job code is imported).
    state = {"done": False, "tampered": "", "config": config,
             "start_hooks": hook_fingerprint(config) if config is not None else None}
    collected: dict[int, tuple] = {}  # id(item) -> (item, its test function's code)

    def tampered() -> str:
        if not state["tampered"]:
            config, start_hooks = state["config"], state["start_hooks"]
            if config is None:  # fail closed: a pass cannot be trusted without the plugins' fingerprint
                state["tampered"] = "the job's pytest session was not seen starting: its plugins cannot be checked"
                return state["tampered"]
            now = hook_fingerprint(config)
            if now != start_hooks:
                changed = [name for (name, impls) in now if (name, impls) not in start_hooks]
                state["tampered"] = ("pytest's hook implementations were changed during the run (a plugin was added: "
                                     + ", ".join(changed)[:200] + ")")
        return state["tampered"]

    def anchor_frame(method_frame) -> object:  # noqa: ANN001
        f = method_frame.f_back
        while f is not None and f.f_code.co_filename.startswith(pluggy_dir):
            f = f.f_back
        return f

    def function_code(item) -> object:  # noqa: ANN001
        obj = _getattr(item, "obj", None) if _type(item).__name__ == "Function" else None
        return _getattr(obj, "__code__", None)

    strict = sys.modules.get("sandbox.worker.strict_unsafe")
    helper = (strict.HELPER, strict.strict_compare) if strict is not None and strict_mode else None

    def check_test(event: TestEvent, anchor) -> TestEvent:  # noqa: ANN001
        outcome = event.test
        if outcome.outcome not in ("passed", "xpassed"):
            return event
        problem = tampered()
        if not problem and helper is not None:
            module = sys.modules.get("test_solution")
            if module is None or _vars(module).get(helper[0]) is not helper[1]:
                problem = "strict mode's comparison helper was replaced during the run"
        item = anchor.f_locals.get("item") if anchor is not None else None
        known = collected.get(_id(item))
        if not problem and (known is None or known[0] is not item or _getattr(item, "nodeid", None) != outcome.nodeid):
            problem = "a result was reported for a test this session did not collect"
        if not problem and function_code(item) is not known[1]:
            problem = "the test function's code was replaced during the run"
        if problem:
            return TestEvent(TestOutcome(outcome.nodeid, "failed", problem))
        return event

    def emitter(event: str, args: tuple) -> None:
        if event != EMIT:
            return
        f = getframe(1)
        if f.f_code is not sender or _len(args) != 1 or _type(args[0]) is not bytes:
            return
        method = f.f_back
        if method is None or method.f_code not in callers:
            return
        anchors = callers[method.f_code]
        anchor = anchor_frame(method)
        if anchors is not None and (anchor is None or anchor.f_code not in anchors):
            return
        try:
            message = decode(args[0])
        except msgspec.DecodeError:
            return
        if _isinstance(message, SessionStarted):
            session = anchor.f_locals.get("session") if anchor is not None else None
            started = _getattr(session, "config", None)
            if state["config"] is None and started is not None:
                state["config"], state["start_hooks"] = started, hook_fingerprint(started)
            return  # for the guard only
        if _isinstance(message, Collected):
            session = anchor.f_locals.get("self") if anchor is not None else None
            items = _list(_getattr(session, "items", None) or [])
            collected.clear()
            collected.update((_id(i), (i, function_code(i))) for i in items)
            message = Collected(count=_len(items))
        elif _isinstance(message, TestEvent):
            message = check_test(message, anchor)
        elif _isinstance(message, Done):
            if state["done"]:
                return
            state["done"] = True
            problem = tampered()
            if problem and message.exit_code == 0:
                message = Done(exit_code=1, coverage=message.coverage, memory_error=message.memory_error,
                               reason=problem)
        body = encode(message)
        write(fd, pack(_len(token) + _len(body)) + token + body)

    def guard(event: str, args: tuple) -> None:
        if _type(event) is not _str:
            return
        if event.startswith("ctypes.") or event in _DENIED:
            raise PermissionError(f"the sandbox does not allow {event} in a job")
        if event == "sys.addaudithook":
            raise RuntimeError("the sandbox does not allow new audit hooks in a job")
        if event in ("sys.settrace", "sys.setprofile"):
            # coverage's tracer, and threading handing a new thread the hook coverage registered
            # (a trace function in another thread never sees the main thread's frames).
            f = getframe(1)
            if f is None or not ("/coverage/" in f.f_code.co_filename or f.f_code in allowed_tracers):
                raise PermissionError(f"the sandbox does not allow {event} in a job")
        elif event in ("object.__setattr__", "object.__delattr__") and _len(args) >= 2:
            obj, name = args[0], args[1]
            if name == "__code__":
                raise PermissionError("the sandbox does not allow replacing a function's code in a job")
            if _isinstance(obj, _type):
                module = _vars(obj).get("__module__")
                if _type(module) is _str and module.partition(".")[0] in _PROTECTED_MODULES:
                    raise PermissionError(f"the sandbox does not allow changing {module}.{obj.__name__} in a job")
        elif event == "open" and args:
            path = args[0]
            if _isinstance(path, int):
                return
            try:
                text = fsdecode(path)
            except Exception:  # noqa: BLE001 - not a path the hook can read; open() will say so
                return
            if basename(text) in ("mem", "pagemap") and (
                    not text.startswith("/") or _PROC_MEM.match(realpath(text))):
                raise PermissionError("the sandbox does not allow opening process memory in a job")

    sys.addaudithook(emitter)
    sys.addaudithook(guard)
