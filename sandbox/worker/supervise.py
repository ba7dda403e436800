"""Supervising one job: fork it, watch its clock and pipes, kill it, reap it, map the verdict.

    zygote ──fork──► job process (PID 1 of a fresh PID namespace: "direct" mode)
       │     or ───► reaper ──fork──► job process (reaper creates the namespaces: "reaper" mode)
       │
       ├── poll: result pipe (fd 3 of the job), stdout, stderr, pidfd of the child
       ├── wall clock: SIGKILL the job (its namespace dies with it), keep draining briefly
       └── wait4: exit status, CPU time, peak RSS  ──► verdict.map_verdict (pure)

The supervisor never runs untrusted code; what the job says on its result channel is decoded
defensively. Output beyond the caps is read and dropped, so a chatty job is never mistaken
for a hung one.
"""

from __future__ import annotations

import enum
import os
import select
import signal
import struct
import sys
import time

from sandbox.protocol import TOKEN_BYTES, Job, Verdict, WorkerOptions, write_all
from sandbox.verdict import JobEnd, map_verdict
from sandbox.worker import namespaces as ns
from sandbox.worker.job_unsafe import job_process_unsafe
from sandbox.worker.warmup import Warm

_PID = struct.Struct(">i")
MAX_RESULT_BYTES = 16 * 1024 * 1024
# After the job process is gone, how long stray writers may keep a pipe open.
_DRAIN_GRACE_S = 0.5
# After a kill, how long we wait for the reaper before giving up on it.
_KILL_GRACE_S = 5.0


class ChildExit(enum.IntEnum):
    """Exit codes the sandbox's own forked processes use when they fail (not the job's code)."""

    FORKED_CHILD_RAISED = 71  # an exception escaped the zygote's child before the job could report
    JOB_PROCESS_RAISED = 73  # reaper mode: an exception escaped the job process's set-up


class Supervisor:
    """Runs one job at a time from the warm zygote; every job is a fresh forked tree."""

    def __init__(self, warm: Warm, options: WorkerOptions, uid: int, gid: int, protocol_fds: tuple[int, ...]) -> None:
        self.warm = warm
        self.options = options
        self.uid, self.gid = uid, gid
        self.protocol_fds = protocol_fds  # closed in every forked child
        # direct: the zygote owns its user namespace, so each job is ONE fork into a fresh PID
        # namespace (unshare, fork, setns back). Otherwise a reaper process does the unshare.
        self.direct = False
        self.pidns = False  # jobs get their own PID namespace (direct or via the reaper)
        self.fresh_proc = False  # jobs can mount a /proc of their own PID namespace
        self.own_pidns = -1

    # ---- forking --------------------------------------------------------------------

    def fork_into_new_pidns(self) -> int:
        """fork() whose child is PID 1 of a fresh PID namespace; the zygote's own stays as it was."""
        ns.unshare(ns.CLONE_NEWPID)  # from here to the fork, nothing may start a process
        try:
            pid = ns.fork()
        except OSError:
            ns.setns(self.own_pidns, ns.CLONE_NEWPID)
            raise
        if pid != 0:
            ns.setns(self.own_pidns, ns.CLONE_NEWPID)
        return pid

    def probe_direct(self) -> bool:
        """Can this zygote start a job as PID 1 of a new namespace with a single fork?"""
        try:
            self.own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            for _ in range(2):  # twice: the second unshare only works if setns really reset us
                pid = self.fork_into_new_pidns()
                if pid == 0:
                    os._exit(0 if os.getpid() == 1 else 1)
                _, st = os.waitpid(pid, 0)
                if os.waitstatus_to_exitcode(st) != 0:
                    return False
            return True
        except OSError:
            return False

    # ---- one job --------------------------------------------------------------------

    def run(self, job: Job) -> Verdict:
        self.warm.area.write_job(job.solution, job.test)
        sys.stdout.flush()
        sys.stderr.flush()
        result_r, result_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid_r, pid_w = os.pipe()
        token = os.urandom(TOKEN_BYTES)  # what proves an event came from the sandbox's own code
        start = time.monotonic()
        if self.direct:  # one fork: the child is the job, PID 1 of a fresh namespace
            os.close(pid_w)
            pid_w = -1
            child = job_pid = self.fork_into_new_pidns()
        else:  # two forks: the child is a reaper that creates the job's namespaces
            child, job_pid = ns.fork(), None
        exit_now = os._exit  # bound before any job code runs: patching os._exit cannot keep the child here
        if child == 0:
            code = ChildExit.FORKED_CHILD_RAISED
            try:
                for fd in (result_r, out_r, err_r, pid_r, *self.protocol_fds):
                    os.close(fd)
                if self.direct:
                    code = self._job(job, result_w, out_w, err_w, token)
                else:
                    code = self._reaper(job, result_w, out_w, err_w, pid_w, token)
            except BaseException:  # noqa: BLE001 - nothing may escape a forked child
                code = ChildExit.FORKED_CHILD_RAISED
            finally:
                exit_now(code)
        for fd in (result_w, out_w, err_w, pid_w):
            if fd >= 0:
                os.close(fd)
        try:
            end = self._watch(job, child, start, result_r, out_r, err_r, pid_r, job_pid=job_pid, token=token)
        finally:
            for fd in (result_r, out_r, err_r, pid_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
        return map_verdict(job, end, self.options.isolation)

    def _job(self, job: Job, result_w: int, out_w: int, err_w: int, token: bytes) -> int:
        return job_process_unsafe(self.warm, self.options, job, result_w, out_w, err_w, own_proc=self.fresh_proc,
                                  token=token)

    def _reaper(self, job: Job, result_w: int, out_w: int, err_w: int, pid_w: int, token: bytes) -> int:
        """Fork #1: enter fresh namespaces, start the job process, report its end as an exit code."""
        if self.pidns:
            ns.prctl(ns.PR_SET_DUMPABLE, 1)  # this copy only: to write its uid_map
            ns.enter_job_namespaces(self.uid, self.gid)
        exit_now = os._exit
        pid = ns.fork()
        if pid == 0:
            code = ChildExit.JOB_PROCESS_RAISED
            try:
                os.close(pid_w)
                code = self._job(job, result_w, out_w, err_w, token)
            except BaseException:  # noqa: BLE001
                code = ChildExit.JOB_PROCESS_RAISED
            finally:
                exit_now(code)
        write_all(pid_w, _PID.pack(pid))
        os.close(pid_w)
        for fd in (result_w, out_w, err_w):
            os.close(fd)
        _, st = os.waitpid(pid, 0)
        if os.WIFSIGNALED(st):
            return 128 + os.WTERMSIG(st)
        return min(os.WEXITSTATUS(st), 127)

    def _watch(self, job: Job, reaper: int, start: float, result_r: int, out_r: int, err_r: int,
               pid_r: int, job_pid: int | None = None, token: bytes = b"") -> JobEnd:
        """Collect the job's output until it ends or its wall-clock limit expires.

        `reaper` is the child we wait for: the reaper process, or (direct mode) the job itself,
        whose pid is then known from the start.
        """
        limits = job.limits
        cap = limits.max_output_bytes
        buffers = {result_r: bytearray(), out_r: bytearray(), err_r: bytearray(), pid_r: bytearray()}
        caps = {result_r: MAX_RESULT_BYTES, out_r: cap, err_r: cap, pid_r: 4}
        pidfd = os.pidfd_open(reaper)
        poller = select.poll()
        for fd in buffers:
            poller.register(fd, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        open_fds = set(buffers)
        deadline = start + limits.wall_s if limits.wall_s else float("inf")
        timed_out = False
        flooded = False
        reaped = None
        drain_until = None
        try:
            while open_fds or reaped is None:
                now = time.monotonic()
                if reaped is None and not timed_out and now >= deadline:
                    timed_out = True
                    # Kill the job, not the reaper: the reaper's wait() is what accounts the
                    # job's CPU time and memory to us.
                    self._kill(job_pid, reaper if job_pid is None else None)
                    deadline = now + _KILL_GRACE_S
                elif reaped is None and timed_out and now >= deadline:
                    break  # the reaper did not exit after the kill; the finally block kills it
                if drain_until is not None and now >= drain_until:
                    break
                limit = min(deadline, drain_until or deadline) - now
                for fd, _ in poller.poll(max(0, int(limit * 1000)) + 1):
                    if fd == pidfd:
                        reaped = os.wait4(reaper, 0)
                        poller.unregister(pidfd)
                        drain_until = time.monotonic() + _DRAIN_GRACE_S
                        continue
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        poller.unregister(fd)
                        open_fds.discard(fd)
                        continue
                    buf = buffers[fd]
                    room = caps[fd] - len(buf)
                    if room > 0:
                        buf += chunk[:room]
                    elif fd == result_r and not flooded:
                        flooded = True
                        self._kill(job_pid, reaper if job_pid is None else None)
                    if fd == pid_r and len(buf) == 4:
                        (job_pid,) = _PID.unpack(bytes(buf))
        finally:
            if reaped is None:
                self._kill(job_pid, reaper)
                try:
                    reaped = os.wait4(reaper, 0)
                except ChildProcessError:
                    reaped = None
            if job_pid is not None and not self.pidns:
                _killpg(job_pid)
            os.close(pidfd)
        code = None
        cpu = rss = 0.0
        if reaped is not None:
            _, st, usage = reaped
            code = os.waitstatus_to_exitcode(st)
            if code < 0:  # direct mode: the job itself died from a signal; same encoding as the reaper's
                code = 128 - code
            cpu = usage.ru_utime + usage.ru_stime
            rss = usage.ru_maxrss / 1024
        return JobEnd(events=bytes(buffers[result_r]), stdout=bytes(buffers[out_r]), stderr=bytes(buffers[err_r]),
                      exit_code=code, cpu_s=cpu, peak_rss_mb=rss, wall_s=time.monotonic() - start,
                      timed_out=timed_out, flooded=flooded, token=token)

    def _kill(self, job_pid: int | None, reaper: int | None) -> None:
        # Killing the job process (PID 1 of its namespace) takes its whole namespace down;
        # the reaper then exits on its own. Without a namespace, the process group goes too.
        if job_pid is not None:
            if self.pidns:
                _signal(job_pid, signal.SIGKILL)
            else:
                _killpg(job_pid)
        if reaper is not None:
            _signal(reaper, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
