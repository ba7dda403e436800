"""The job process: the last trusted steps before untrusted code, then the code itself.

Runs right after the fork, as PID 1 of the job's own PID namespace: new session, death with
the parent, its own /proc when the kernel allows it, every capability dropped, fds 0-3 set
(stdin /dev/null, stdout, stderr, result channel), rlimits applied. Then pytest, the stdin
cases, or (for a flakiness rerun) a fresh interpreter.
"""

from __future__ import annotations

import os
import signal

from sandbox.protocol import RESULT_FD, Job, WorkerOptions
from sandbox.worker import namespaces as ns
from sandbox.worker.limits import apply_limits
from sandbox.worker.pytest_unsafe import exec_fresh_rerun_unsafe, run_pytest_unsafe
from sandbox.worker.stdin_unsafe import run_stdin_cases_unsafe
from sandbox.worker.warmup import Warm


def job_process_unsafe(warm: Warm, options: WorkerOptions, job: Job, result_w: int, out_w: int, err_w: int, *,
                       own_proc: bool, token: bytes) -> int:
    """Set the job process up and run the job; returns the process's exit code.

    own_proc: mount a /proc of the job's PID namespace (in a mount namespace of its own), where
    start-up found the kernel allows it; otherwise the zygote's mounts serve as they are.
    """
    os.setsid()
    ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
    if own_proc:
        ns.unshare(ns.CLONE_NEWNS)
        ns.mount_proc()  # probed at start-up: a failure here is a broken job set-up, not ignored
    ns.drop_all_capabilities()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.dup2(result_w, RESULT_FD)
    _close_inherited_fds(warm.plugin_fds)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    area = warm.area
    os.environ["TMPDIR"] = area.tmp_dir
    os.chdir(area.job_dir)
    apply_limits(job.limits, warm.baseline_vm)
    if warm.reporter is not None:
        warm.reporter.fd = RESULT_FD
        warm.reporter.token = token
    if job.stdin_tests is not None:
        return run_stdin_cases_unsafe(job, area.job_dir, token)
    if job.rerun_seed is not None:
        exec_fresh_rerun_unsafe(job.rerun_seed, warm.pytest_args, options.blocked_imports, options.package_parent,
                                token)
    return run_pytest_unsafe(warm, job.coverage, job.solution)


def _close_inherited_fds(plugin_fds: dict[int, str]) -> None:
    """Close every fd above the result channel except those pytest's configured plugins hold.

    Those stay valid (a plugin writing to a closed number could hit a file the test opened
    later): copies of the zygote's stderr are re-pointed at the job's stderr, the rest (such as
    the logging plugin's /dev/null) are kept as they are.
    """
    start = RESULT_FD + 1
    for fd in sorted(plugin_fds):
        if fd < start:
            continue
        os.closerange(start, fd)
        if plugin_fds[fd] == "stderr":
            os.dup2(2, fd)
        start = fd + 1
    os.closerange(start, 65536)
