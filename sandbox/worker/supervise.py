"""The supervisor: the worker's trusted process. It holds every job's data; job code cannot reach it.

    pool ──frames──► supervisor ──"spawn" + fds──► zygote ──fork──► job process
                        │  ▲                                         │
                        │  └──── result channel, stdout, stderr ◄────┘ (pipes)
                        └── wall clock, output caps, stdin comparison, verdict mapping

The supervisor writes each job's spec into a memfd and hands the zygote only file descriptors,
so the zygote (and every job forked from it) never holds another job's data. It is not a parent
of any job process, runs no job code, is not dumpable, holds no capabilities, and sits outside
the jobs' PID namespaces: a job can neither see, signal, trace nor read it.

pytest mode: one job; its events (on the result channel, each frame carrying the job's token)
are decoded defensively and mapped by sandbox.verdict.map_verdict. stdin mode: one job per case,
each a fresh fork of the zygote that is given only the case's input; the expected output stays
here, where the comparison happens. Output beyond the caps is read and dropped, so a chatty job
is never mistaken for a hung one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import select
import socket
import time

import msgspec

from sandbox.protocol import (
    TOKEN_BYTES,
    Collected,
    Done,
    Job,
    JobSpec,
    TestEvent,
    TestOutcome,
    Verdict,
    WorkerOptions,
    encode,
    signals_itself,
)
from sandbox.stdio import outputs_match
from sandbox.verdict import JobEnd, failed_case, map_verdict
from sandbox.worker.area import JobArea
from sandbox.worker.zygote import KILL, PRELOAD, SPAWN, WARM_PYTEST, receive

MAX_RESULT_BYTES = 16 * 1024 * 1024
# A stdin case's output is compared whole up to this size; a larger output fails the case.
MAX_COMPARED_BYTES = 16 * 1024 * 1024
# After the job process is gone, how long stray writers may keep a pipe open.
_DRAIN_GRACE_S = 0.5
# After a kill, how long the zygote may take to report the job's end before the worker gives up.
_KILL_GRACE_S = 5.0


class WorkerBroken(Exception):
    """The zygote stopped answering or went away: the worker exits and the pool replaces it."""


class Supervisor:
    def __init__(self, options: WorkerOptions, sock: socket.socket, status: dict) -> None:
        self.options = options
        self.sock = sock
        self.private = options.namespaces
        # Without namespaces the job area is a shared directory, wiped here after each job.
        self.area = JobArea(options.root, private_tmp=False, keep=options.keep)
        self._status(status)

    def _status(self, status: dict) -> None:
        self.pytest_ready = bool(status.get("pytest_ready"))
        self.on_demand = {name: re.compile(rf"\b{re.escape(name)}\b") for name in status.get("pending", [])}
        self.warnings = list(status.get("warnings", []))
        self.preloaded = list(status.get("preloaded", []))

    def _command(self, message: bytes) -> None:
        try:
            self.sock.send(message)
            self._status(receive(self.sock))
        except (OSError, EOFError, msgspec.DecodeError) as e:
            raise WorkerBroken(f"the zygote did not answer: {e}") from e

    # ---- one job --------------------------------------------------------------------

    def run(self, job: Job) -> tuple[Verdict, bool]:
        """The job's verdict, and whether this worker must retire before its next job."""
        if job.stdin_tests is None and not self.pytest_ready:
            self._command(WARM_PYTEST)
        texts = [job.solution, job.test or ""]
        wanted = [name for name, pattern in self.on_demand.items() if any(pattern.search(t) for t in texts if t)]
        if wanted:
            self._command(PRELOAD + ",".join(wanted).encode())
        verdict = self._program(job) if job.stdin_tests is not None else self._pytest(job)
        retire = False
        if not self.private:
            retire = not self.area.reset()
        return verdict, retire

    def _pytest(self, job: Job) -> Verdict:
        token = os.urandom(TOKEN_BYTES)  # what proves an event came from the sandbox's own code
        start = time.monotonic()
        deadline = start + job.limits.wall_s if job.limits.wall_s else float("inf")
        spec = JobSpec(job=job, mode="rerun" if job.rerun_seed is not None else "pytest", token=token)
        end = self.spawn_and_watch(spec, start, deadline, job.limits.max_output_bytes, job.limits.max_output_bytes)
        return map_verdict(job, dataclasses.replace(end, token=token), self.options.isolation)

    def _program(self, job: Job) -> Verdict:
        """stdin mode: each case a fresh job given only its input; the comparison happens here."""
        start = time.monotonic()
        deadline = start + job.limits.wall_s if job.limits.wall_s else float("inf")
        cases = job.stdin_tests or []

        def verdict(events: list, **end: object) -> Verdict:
            fields = dict(events=b"", stdout=b"", stderr=b"", exit_code=0, cpu_s=0.0, peak_rss_mb=0.0,
                          timed_out=False, flooded=False)
            fields.update(end)
            return map_verdict(job, JobEnd(wall_s=time.monotonic() - start, trusted=tuple(events), **fields),
                               self.options.isolation)

        try:
            compile(job.solution, self.area.solution_path, "exec")
        except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as e:
            return verdict([Done(exit_code=2, reason=f"solution does not compile: {type(e).__name__}: {e}"[:500])])
        bare = msgspec.structs.replace(job, stdin_tests=None, test=None)
        own_fork = signals_itself(job.solution)
        events: list = [Collected(count=len(cases))]
        failed = 0
        memory_error = False
        cpu = rss = 0.0
        out = bytearray()
        err = bytearray()
        truncated = False
        last_code = 0
        cap = job.limits.max_output_bytes
        for i, case in enumerate(cases):
            run_only = case.output is None
            spec = JobSpec(job=bare, mode="program", stdin=case.input, own_fork=own_fork)
            end = self.spawn_and_watch(spec, start, deadline, cap if run_only else MAX_COMPARED_BYTES, cap)
            cpu += end.cpu_s
            rss = max(rss, end.peak_rss_mb)
            rc = end.exit_code if end.exit_code is not None else 128 + 9
            if run_only:
                room = max(0, cap - len(out))
                out += end.stdout[:room]
                err += end.stderr[:max(0, cap - len(err))]
                truncated = truncated or end.truncated or len(end.stdout) > room
            cpu_limit = job.limits.cpu_limit_s()
            if end.timed_out or rc == 128 + 24 or (rc == 128 + 9 and cpu_limit and end.cpu_s >= cpu_limit):
                return verdict(events, stdout=bytes(out), stderr=bytes(err), exit_code=rc, cpu_s=cpu,
                               peak_rss_mb=rss, timed_out=end.timed_out, truncated=truncated)
            nodeid = f"case[{i}]"
            last_code = rc
            if rc != 0:
                failed += 1
                outcome, out_of_memory = failed_case(nodeid, rc if rc <= 128 else 128 - rc,
                                                     end.stderr.decode("utf-8", "replace"))
                memory_error = memory_error or out_of_memory
            elif run_only:
                outcome = TestOutcome(nodeid, "passed", "exit 0")
            elif end.truncated:
                failed += 1
                outcome = TestOutcome(nodeid, "failed", f"output larger than {MAX_COMPARED_BYTES} bytes")
            else:
                ok, diff = outputs_match(end.stdout.decode("utf-8", "replace"), case.output, job.float_tolerance)
                failed += not ok
                outcome = TestOutcome(nodeid, "passed" if ok else "failed", diff)
            events.append(TestEvent(outcome))
        events.append(Done(exit_code=1 if failed else (0 if cases else 5), memory_error=memory_error))
        return verdict(events, stdout=bytes(out), stderr=bytes(err), cpu_s=cpu, peak_rss_mb=rss,
                       exit_code=last_code if len(cases) == 1 else 0, truncated=truncated)

    # ---- spawning and watching -----------------------------------------------------

    def spawn_and_watch(self, spec: JobSpec, start: float, deadline: float, out_cap: int, err_cap: int) -> JobEnd:
        """Have the zygote fork a job for `spec`; collect its output until it ends or the deadline passes."""
        spec_fd = os.memfd_create("kodcode-job", os.MFD_CLOEXEC)
        pipes = [os.pipe() for _ in range(3)]  # stdout, stderr, result channel
        try:
            data = encode(spec)
            view = memoryview(data)
            while view:
                view = view[os.write(spec_fd, view):]
            os.lseek(spec_fd, 0, os.SEEK_SET)
            socket.send_fds(self.sock, [SPAWN], [spec_fd, *(w for _, w in pipes)])
        except OSError as e:
            for r, w in pipes:
                os.close(r)
                os.close(w)
            raise WorkerBroken(f"cannot hand the job to the zygote: {e}") from e
        finally:
            os.close(spec_fd)
        for _, w in pipes:
            os.close(w)
        (out_r, _), (err_r, _), (result_r, _) = pipes
        try:
            return self._watch(start, deadline, out_r, err_r, result_r, out_cap, err_cap)
        finally:
            for r, _ in pipes:
                os.close(r)

    def _watch(self, start: float, deadline: float, out_r: int, err_r: int, result_r: int, out_cap: int,
               err_cap: int) -> JobEnd:
        buffers = {result_r: bytearray(), out_r: bytearray(), err_r: bytearray()}
        caps = {result_r: MAX_RESULT_BYTES, out_r: out_cap, err_r: err_cap}
        poller = select.poll()
        for fd in buffers:
            poller.register(fd, select.POLLIN)
        sock = self.sock.fileno()
        poller.register(sock, select.POLLIN)
        open_fds = set(buffers)
        timed_out = flooded = truncated = False
        ended: dict | None = None
        drain_until = None
        kill_by = None
        while open_fds or ended is None:
            now = time.monotonic()
            if ended is None and not timed_out and now >= deadline:
                timed_out = True
                self._kill()
                kill_by = now + _KILL_GRACE_S
            if ended is None and kill_by is not None and now >= kill_by:
                raise WorkerBroken("the zygote did not report the end of a killed job")
            if drain_until is not None and now >= drain_until:
                break
            limit = min(x for x in (deadline if not timed_out else float("inf"), kill_by or float("inf"),
                                    drain_until or float("inf"))) - now
            timeout = -1 if limit == float("inf") else max(0, int(limit * 1000)) + 1
            for fd, _ in poller.poll(timeout):
                if fd == sock:
                    try:
                        ended = receive(self.sock)
                    except (OSError, EOFError, msgspec.DecodeError) as e:
                        raise WorkerBroken(f"the zygote went away: {e}") from e
                    poller.unregister(sock)
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
                if len(chunk) > room:
                    if fd == result_r and not flooded:
                        flooded = True
                        self._kill()
                        kill_by = time.monotonic() + _KILL_GRACE_S
                    elif fd != result_r:
                        truncated = True
        assert ended is not None  # the loop ends only after the zygote reported (or raises WorkerBroken)
        return JobEnd(events=bytes(buffers[result_r]), stdout=bytes(buffers[out_r]), stderr=bytes(buffers[err_r]),
                      exit_code=int(ended["code"]), cpu_s=float(ended["cpu"]), peak_rss_mb=float(ended["rss"]),
                      wall_s=time.monotonic() - start, timed_out=timed_out, flooded=flooded, truncated=truncated)

    def _kill(self) -> None:
        try:
            self.sock.send(KILL)
        except OSError as e:
            raise WorkerBroken(f"cannot reach the zygote: {e}") from e
