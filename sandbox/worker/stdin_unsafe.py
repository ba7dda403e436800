"""The job side, stdin mode: run the solution once as a program, its stdin the case's input.

The job process was given only the input: the expected output stays with the supervisor, which
reads the program's stdout from a pipe and compares (sandbox/worker/supervise.py). The program
runs in the job process itself, PID 1 of its namespace; code that might signal itself
(protocol.signals_itself) runs in a child instead, because PID 1 does not receive the signals a
process sends itself, and the job process then exits as the child did (128 + signal for a signal).
"""

from __future__ import annotations

import io
import os
import sys
import traceback

from sandbox.protocol import RESULT_FD
from sandbox.worker import namespaces as ns


def run_program_unsafe(solution: str, path: str, own_fork: bool) -> int:
    os.close(RESULT_FD)  # a program has nothing to report: its exit status and output are the outcome
    sys.stdout.flush()
    if own_fork:
        pid = ns.fork()
        if pid == 0:
            os._exit(_run(solution, path))
        _, st = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(st)
        return code if code >= 0 else 128 - code
    return _run(solution, path)


def _run(solution: str, path: str) -> int:
    """Run the solution as __main__; returns its exit status."""
    try:
        code_obj = compile(solution, path, "exec")
        sys.stdin = io.TextIOWrapper(io.FileIO(0, closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=False)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", write_through=True)
        sys.argv = [path]
        exec(code_obj, {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__})  # noqa: S102
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        code = code or 1
    return code & 0xFF
