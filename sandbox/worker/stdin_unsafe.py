"""The job side, stdin mode: run the solution as a program once per case and compare output.

Each case is one more fork of the job process, so a case that crashes or pollutes the
interpreter cannot affect the next; the comparison rules are in sandbox/stdio.py. A single
run-only case (`/run_code`'s python mode, see protocol.runs_in_place) needs no fork: the job
process closes the result channel and becomes the program, and the verdict mapping reads the
outcome from its exit.
"""

from __future__ import annotations

import io
import os
import sys
import traceback

from sandbox.protocol import (
    RESULT_FD,
    Collected,
    Done,
    Job,
    TestEvent,
    TestOutcome,
    event_frame,
    runs_in_place,
    write_all,
)
from sandbox.stdio import outputs_match
from sandbox.verdict import failed_case
from sandbox.worker import namespaces as ns


def run_stdin_cases_unsafe(job: Job, job_dir: str, token: bytes) -> int:
    path = os.path.join(job_dir, "solution.py")
    try:
        code_obj = compile(job.solution, path, "exec")
    except (SyntaxError, ValueError) as e:
        write_all(RESULT_FD, event_frame(token, Done(exit_code=2,
                                                    reason=f"solution does not compile: {type(e).__name__}: {e}")))
        return 0
    cases = job.stdin_tests or []
    write_all(RESULT_FD, event_frame(token, Collected(count=len(cases))))
    if runs_in_place(job):
        in_path = os.path.join(job_dir, ".case0.in")
        with open(in_path, "w", encoding="utf-8") as f:
            f.write(cases[0].input)
        sys.stdout.flush()
        return run_program_unsafe(code_obj, path, in_path)  # closes the channel first
    failed = 0
    memory_error = False
    for i, case in enumerate(cases):
        in_path = os.path.join(job_dir, f".case{i}.in")
        out_path = os.path.join(job_dir, f".case{i}.out")
        err_path = os.path.join(job_dir, f".case{i}.err")
        with open(in_path, "w", encoding="utf-8") as f:
            f.write(case.input)
        sys.stdout.flush()
        pid = ns.fork()
        if pid == 0:
            os._exit(run_program_unsafe(code_obj, path, in_path, out_path, err_path))
        _, st = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(st)
        got = read_text(out_path)
        err_text = read_text(err_path)
        nodeid = f"case[{i}]"
        if case.output is None:  # run only: hand the program's output on as the job's own
            write_all(1, got.encode("utf-8", "replace"))
            write_all(2, err_text.encode("utf-8", "replace"))
        if rc != 0:
            failed += 1
            outcome, out_of_memory = failed_case(nodeid, rc, err_text)
            memory_error = memory_error or out_of_memory
        elif case.output is None:
            outcome = TestOutcome(nodeid, "passed", "exit 0")
        else:
            ok, diff = outputs_match(got, case.output, job.float_tolerance)
            failed += not ok
            outcome = TestOutcome(nodeid, "passed" if ok else "failed", diff)
        write_all(RESULT_FD, event_frame(token, TestEvent(outcome)))
    write_all(RESULT_FD, event_frame(token, Done(exit_code=1 if failed else (0 if cases else 5),
                                                memory_error=memory_error)))
    return 0


def run_program_unsafe(code_obj, path: str, in_path: str, out_path: str | None = None,  # noqa: ANN001
                       err_path: str | None = None) -> int:
    """One case: run the solution as __main__ with the case's stdin (its own fork, or in place).

    Output goes to out_path and err_path, or (None) to the job's own stdout and stderr.

    The result channel is closed first: the program cannot write events, and it cannot reopen
    the channel through /proc (the job process is not dumpable, and has no capabilities).
    """
    try:
        os.close(RESULT_FD)
        fd = os.open(in_path, os.O_RDONLY)
        os.dup2(fd, 0)
        os.close(fd)
        for target, out in ((1, out_path), (2, err_path)):
            if out is not None:
                fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(fd, target)
                os.close(fd)
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


def read_text(path: str, limit: int = 16 * 1024 * 1024) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""
