"""Worker side: a warm zygote that forks one isolated, limited process tree per job.

    pool (engine process)
      |  stdin/stdout: framed Job / Verdict messages
      v
    bwrap  (new pid/net/ipc/uts/mount namespaces, read-only system, empty env)
      '-- waiter (the process bwrap started: drops to uid nobody, then creates a user + pid
          |   + mount namespace and stays behind only to pass on the exit status)
          '-- zygote (PID 1 of that namespace, this module's Zygote): pytest, coverage, numpy,
              |   ... imported once, pytest config prepared once for the fixed job path, gc
              |   frozen, not dumpable. Per job: wipe + write /sandbox/job, unshare(NEWPID),
              |   fork, setns back, watch the clock and the pipes.
              '-- job process (PID 1 of a fresh pid namespace, own mount namespace): drops
                  every capability, sets rlimits, runs pytest or the stdin cases on the
                  untrusted code, streams events back on a pipe. When it dies, the kernel
                  kills everything it started, setsid() daemons and double forks included.

Where the zygote cannot own a user namespace, a reaper process per job creates the job's
namespaces instead (two forks per job; see _reaper). The zygote never runs untrusted code; it
only schedules, times out and maps exit status (STYLE rule 5). Everything on the job's side of
the fork is `*_unsafe`.
"""

from __future__ import annotations

import gc
import importlib
import io
import os
import select
import shutil
import signal
import stat
import struct
import sys
import time
import traceback

import msgspec

from sandbox import isolation
from sandbox.limits import address_space_in_use, apply_limits, cpu_limit_s
from sandbox.protocol import (
    PROTOCOL_VERSION,
    Collected,
    Done,
    Job,
    JobRequest,
    Ready,
    Result,
    TestEvent,
    TestOutcome,
    Verdict,
    decode_events,
    decode_request,
    frame,
    frame_length,
    read_exact,
    write_all,
)
from sandbox.stdio import outputs_match
from sandbox.verdict import describe_wait_status, status_from_pytest

_PID = struct.Struct(">i")
MAX_RESULT_BYTES = 16 * 1024 * 1024
# After the job process is gone, how long stray writers may keep a pipe open.
_DRAIN_GRACE_S = 0.5
# After a kill, how long we wait for the reaper before giving up on it.
_KILL_GRACE_S = 5.0


class WorkerOptions(msgspec.Struct, frozen=True):
    root: str
    preload: list[str] = []
    pytest_plugins: list[str] = []
    isolation: str = "none"
    drop_to_uid: int | None = None
    blocked_imports: list[str] = []


class _BlockedImports:
    """Meta-path finder that makes chosen top-level packages unimportable in jobs.

    For emulating a reference test environment (say, one without scipy) on a machine that has more.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path=None, target=None):  # noqa: ANN001, ANN201
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


class _Reporter:
    """pytest plugin, registered once in the zygote, active only in job processes."""

    def __init__(self) -> None:
        self.fd = -1
        self.memory_error = False
        self._outcomes: dict[str, TestOutcome] = {}

    def _send(self, event: msgspec.Struct) -> None:
        if self.fd >= 0:
            write_all(self.fd, frame(event))

    def pytest_collection_finish(self, session) -> None:  # noqa: ANN001 - pytest hook
        self._send(Collected(count=len(session.items)))

    def pytest_exception_interact(self, node, call, report) -> None:  # noqa: ANN001
        if call.excinfo is not None and call.excinfo.errisinstance(MemoryError):
            self.memory_error = True

    def pytest_collectreport(self, report) -> None:  # noqa: ANN001
        if report.failed:
            self._send(TestEvent(TestOutcome(report.nodeid or "<module>", "error", _short_message(report))))

    def pytest_runtest_logreport(self, report) -> None:  # noqa: ANN001
        wasxfail = hasattr(report, "wasxfail")
        outcome = None
        if report.when == "setup" and not report.passed:
            outcome = "error" if report.failed else ("xfailed" if wasxfail else "skipped")
        elif report.when == "call":
            if report.passed:
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
                self._outcomes[report.nodeid] = TestOutcome(report.nodeid, outcome, _short_message(report))
        if report.when == "teardown" and report.nodeid in self._outcomes:
            self._send(TestEvent(self._outcomes.pop(report.nodeid)))


def _short_message(report) -> str:  # noqa: ANN001
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


def _coverage_windows_plugin():  # noqa: ANN202 - built in the zygote, where pytest is imported
    """pytest plugin: measure coverage only while test or solution code can run.

    Tracing pytest's own machinery costs ~10 ms per job, while start() and stop() cost
    microseconds; so coverage runs only around collection (the import of the test module, and
    so of the solution) and around each test's setup, call and teardown.
    """
    import pytest

    class CoverageWindows:
        cov = None

        def _window(self):  # noqa: ANN202
            if self.cov is None:
                return (yield)
            self.cov.start()
            try:
                return (yield)
            finally:
                self.cov.stop()

        @pytest.hookimpl(wrapper=True)
        def pytest_make_collect_report(self, collector):  # noqa: ANN001, ANN201
            return (yield from self._window())

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_setup(self, item):  # noqa: ANN001, ANN201
            return (yield from self._window())

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_call(self, item):  # noqa: ANN001, ANN201
            return (yield from self._window())

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_teardown(self, item, nextitem):  # noqa: ANN001, ANN201
            return (yield from self._window())

    return CoverageWindows()


class Zygote:
    """The warm parent. One job at a time; every job runs in a fresh forked tree."""

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.root = options.root
        self.job_dir = os.path.join(options.root, "job")
        self.private_tmp = options.isolation != "none"
        self.tmp_dir = "/tmp" if self.private_tmp else os.path.join(options.root, "tmp")
        self.warnings: list[str] = []
        self.preloaded: list[str] = []
        self.reporter = _Reporter()
        self.coverage_windows = None  # pytest plugin, see _coverage_windows_plugin
        self.config = None  # a prepared pytest Config, or None for the slow path
        self.capman = None
        self.coverage = None
        self.baseline_vm = 0
        self.pidns = False
        # direct: the zygote owns its user namespace, so each job is ONE fork into a fresh PID
        # namespace (unshare, fork, setns back). Otherwise a reaper process does the unshare.
        self.direct = False
        self.own_pidns = -1
        self.namespaced = False  # own_namespaces() succeeded
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.protocol_fds: tuple[int, ...] = ()  # closed in every forked child

    # ---- start-up -------------------------------------------------------------------

    def drop_privileges(self) -> None:
        """Started as root inside bubblewrap: become the unprivileged sandbox uid for good."""
        if self.options.drop_to_uid is not None and os.geteuid() == 0:
            uid = self.options.drop_to_uid
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            self.uid = self.gid = uid
            # setuid() made us non-dumpable, which would make /proc/self/uid_map unwritable
            # for the user namespaces created next.
            isolation.prctl(isolation.PR_SET_DUMPABLE, 1)

    def own_namespaces(self) -> bool:
        """Move the zygote into new user + PID + mount namespaces that it controls.

        Must run while the process has a single thread (before imports start any). The original
        process stays behind as a waiter; the caller continues as PID 1 of the new namespace,
        with capabilities there only, so each job can later be one fork into its own PID
        namespace (see _fork_into_new_pidns). Returns False, changing nothing, if not possible.
        """
        try:
            isolation.enter_job_namespaces(self.uid, self.gid)
        except OSError:
            return False
        pid = os.fork()
        if pid == 0:
            return True
        # Jobs run under the same uid: a dumpable process of that uid would let a job open its
        # memory through /proc/<pid>/mem. The waiter has nothing to steal, but still.
        isolation.prctl(isolation.PR_SET_DUMPABLE, 0)
        for fd in self.protocol_fds:  # the zygote holds the channel now
            os.close(fd)
        _, st = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(st)
        os._exit(code if code >= 0 else 128 - code)

    def warm_up(self) -> None:
        os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        for name in self.options.preload:
            try:
                importlib.import_module(name)
                self.preloaded.append(name)
            except Exception as e:  # noqa: BLE001 - a missing optional library is a warning
                self.warnings.append(f"could not preload {name}: {type(e).__name__}: {e}")
        if self.options.blocked_imports:
            for name in list(sys.modules):
                if name.partition(".")[0] in self.options.blocked_imports:
                    del sys.modules[name]
            sys.meta_path.insert(0, _BlockedImports(self.options.blocked_imports))
        self._reset_area()
        self._prepare_pytest()
        self.direct = self.namespaced and self._probe_direct()
        self.pidns = self.direct or self._probe_pidns()
        # Jobs share the zygote's uid. Non-dumpable, its memory cannot be opened through
        # /proc/<pid>/mem by them (that needs CAP_SYS_PTRACE, which jobs never have). Forked
        # children that must write their own uid_map make themselves dumpable again.
        isolation.prctl(isolation.PR_SET_DUMPABLE, 0)
        if not self.pidns:
            self.warnings.append(
                "per-job PID namespaces are unavailable: processes a job detaches with setsid() "
                "are killed by process group only")
        import inspect

        # inspect.getmodule() realpath()s every module in sys.modules the first time a failure
        # is formatted (~40 ms with numpy and pandas loaded); pay it once here.
        inspect.getmodule(compile("0", "<warm-up>", "eval"))
        if self.coverage is not None:
            # The first start() computes stdlib/third-party path tables for every module;
            # do it here, once. Nothing is measured: only solution.py is included.
            self.coverage.start()
            self.coverage.stop()
        gc.collect()
        # Objects that exist now are never collected or moved by the job's gc runs; pytest
        # calls gc.collect() five times per session, which otherwise walks the whole warm heap.
        gc.freeze()
        self.baseline_vm = address_space_in_use()

    def _prepare_pytest(self) -> None:
        import pytest  # noqa: F401 - imported for its side effects in the warm heap

        args = [os.path.join(self.job_dir, "test_solution.py"), "-q", "--tb=short", "-p", "no:cacheprovider",
                "--rootdir", self.job_dir, "-c", os.path.join(self.root, "pytest.ini")]
        for plugin in self.options.pytest_plugins:
            args += ["-p", plugin]
        self.pytest_args = args
        try:
            import coverage

            self.coverage = coverage.Coverage(data_file=None, include=[os.path.join(self.job_dir, "solution.py")],
                                              config_file=False)
            # A solution that never gets imported is reported as coverage None, not as a warning.
            self.coverage.set_option("run:disable_warnings", ["no-data-collected", "module-not-imported",
                                                              "module-not-measured"])
        except Exception as e:  # noqa: BLE001
            self.warnings.append(f"coverage unavailable: {e}")
        try:
            from _pytest.config import _prepareconfig

            self._write(os.path.join(self.root, "pytest.ini"), "[pytest]\n")
            self._write(os.path.join(self.job_dir, "test_solution.py"), "def test_placeholder():\n    pass\n")
            os.chdir(self.job_dir)
            self.coverage_windows = _coverage_windows_plugin()
            config = _prepareconfig(list(args), plugins=[self.reporter, self.coverage_windows])
            capman = config.pluginmanager.getplugin("capturemanager")
            if capman is not None:
                # Capture started while parsing; each job starts its own on fresh temp files.
                capman.stop_global_capturing()
            self.config, self.capman = config, capman
        except Exception as e:  # noqa: BLE001 - fall back to a full pytest.main per job
            self.warnings.append(f"prepared pytest config unavailable ({type(e).__name__}: {e}); "
                                 "running pytest.main per job, which is slower")
        finally:
            os.chdir(self.root)
            self._reset_area()

    def _probe_direct(self) -> bool:
        """Can this zygote start a job as PID 1 of a new namespace with a single fork?"""
        try:
            self.own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            for _ in range(2):  # twice: the second unshare only works if setns really reset us
                pid = self._fork_into_new_pidns()
                if pid == 0:
                    os._exit(0 if os.getpid() == 1 else 1)
                _, st = os.waitpid(pid, 0)
                if os.waitstatus_to_exitcode(st) != 0:
                    return False
            return True
        except OSError:
            return False

    def _fork_into_new_pidns(self) -> int:
        """fork() whose child is PID 1 of a fresh PID namespace; the zygote's own stays as it was."""
        isolation.unshare(isolation.CLONE_NEWPID)
        try:
            pid = os.fork()
        except OSError:
            isolation.setns(self.own_pidns, isolation.CLONE_NEWPID)
            raise
        if pid != 0:
            isolation.setns(self.own_pidns, isolation.CLONE_NEWPID)
        return pid

    def _probe_pidns(self) -> bool:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                isolation.enter_job_namespaces(self.uid, self.gid)
                inner = os.fork()
                if inner == 0:
                    os._exit(0 if os.getpid() == 1 else 1)
                _, st = os.waitpid(inner, 0)
                code = os.waitstatus_to_exitcode(st)
            finally:
                os._exit(code)
        _, st = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(st) == 0

    # ---- the job area ---------------------------------------------------------------

    @staticmethod
    def _write(path: str, text: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    def _reset_area(self) -> None:
        """Empty everything a job could have written, then recreate the job directory."""
        places = [self.root]
        if self.private_tmp:
            places += ["/tmp", "/dev/shm"]
        for place in places:
            if not os.path.isdir(place):
                continue
            for name in os.listdir(place):
                _remove_tree(os.path.join(place, name))
        os.makedirs(self.job_dir, exist_ok=True)
        os.makedirs(self.tmp_dir, exist_ok=True)

    # ---- one job --------------------------------------------------------------------

    def run(self, job: Job) -> Verdict:
        self._write(os.path.join(self.job_dir, "solution.py"), job.solution)
        if job.test is not None:
            self._write(os.path.join(self.job_dir, "test_solution.py"), job.test)
        sys.stdout.flush()
        sys.stderr.flush()
        result_r, result_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid_r, pid_w = os.pipe()
        start = time.monotonic()
        if self.direct:  # one fork: the child is the job, PID 1 of a fresh namespace
            os.close(pid_w)
            pid_w = -1
            child = job_pid = self._fork_into_new_pidns()
        else:  # two forks: the child is a reaper that creates the job's namespaces
            child, job_pid = os.fork(), None
        if child == 0:
            code = 70
            try:
                for fd in (result_r, out_r, err_r, pid_r, *self.protocol_fds):
                    os.close(fd)
                if self.direct:
                    code = self._job_process_unsafe(job, result_w, out_w, err_w)
                else:
                    code = self._reaper(job, result_w, out_w, err_w, pid_w)
            except BaseException:  # noqa: BLE001 - nothing may escape a forked child
                code = 71
            finally:
                os._exit(code)
        for fd in (result_w, out_w, err_w, pid_w):
            if fd >= 0:
                os.close(fd)
        try:
            return self._watch(job, child, start, result_r, out_r, err_r, pid_r, job_pid=job_pid)
        finally:
            for fd in (result_r, out_r, err_r, pid_r):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _reaper(self, job: Job, result_w: int, out_w: int, err_w: int, pid_w: int) -> int:
        """Fork #1: enter fresh namespaces, start the job process, report its end as an exit code."""
        if self.pidns:
            isolation.prctl(isolation.PR_SET_DUMPABLE, 1)  # this copy only: to write its uid_map
            isolation.enter_job_namespaces(self.uid, self.gid)
        pid = os.fork()
        if pid == 0:
            code = 72
            try:
                os.close(pid_w)
                code = self._job_process_unsafe(job, result_w, out_w, err_w)
            except BaseException:  # noqa: BLE001
                code = 73
            finally:
                os._exit(code)
        write_all(pid_w, _PID.pack(pid))
        os.close(pid_w)
        for fd in (result_w, out_w, err_w):
            os.close(fd)
        _, st = os.waitpid(pid, 0)
        if os.WIFSIGNALED(st):
            return 128 + os.WTERMSIG(st)
        return min(os.WEXITSTATUS(st), 127)

    def _watch(self, job: Job, reaper: int, start: float, result_r: int, out_r: int, err_r: int,
               pid_r: int, job_pid: int | None = None) -> Verdict:
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
        wall = time.monotonic() - start
        return self._verdict(job, buffers[result_r], buffers[out_r], buffers[err_r], reaped, wall, timed_out,
                             flooded)

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

    def _verdict(self, job: Job, result: bytearray, out: bytearray, err: bytearray,
                 reaped: tuple[int, int, object] | None, wall: float, timed_out: bool, flooded: bool) -> Verdict:
        events, problem = decode_events(bytes(result))
        tests = [e.test for e in events if isinstance(e, TestEvent)]
        collected = any(isinstance(e, Collected) for e in events)
        done = next((e for e in events if isinstance(e, Done)), None)
        code = None
        cpu = rss = 0.0
        if reaped is not None:
            _, st, usage = reaped
            code = os.waitstatus_to_exitcode(st)
            if code < 0:  # direct mode: the job itself died from a signal; same encoding as the reaper's
                code = 128 - code
            cpu = usage.ru_utime + usage.ru_stime
            rss = usage.ru_maxrss / 1024
        cpu_limit = cpu_limit_s(job.limits)
        memory_error = bool(done and done.memory_error) or bool(tests and any(
            t.message.startswith("MemoryError") for t in tests if t.outcome in ("failed", "error")))
        if timed_out:
            status, reason = "timeout", f"wall-clock limit of {job.limits.wall_s:g} s exceeded"
        elif code is not None and (code == 128 + signal.SIGXCPU or
                                   (code == 128 + signal.SIGKILL and cpu_limit and cpu >= cpu_limit)):
            status, reason = "timeout", f"CPU-time limit of {cpu_limit} s exceeded"
        elif flooded:
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
            id=job.id, status=status, reason=reason, tests=tests, coverage=coverage, cpu_s=round(cpu, 4),
            wall_s=round(wall, 4), peak_rss_mb=round(rss, 1), stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"), isolation=self.options.isolation, exit_code=code)

    # ---- everything below runs untrusted code -----------------------------------------

    def _job_process_unsafe(self, job: Job, result_w: int, out_w: int, err_w: int) -> int:
        """PID 1 of the job's namespace. Drop privileges, limit, run."""
        os.setsid()
        isolation.prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
        if self.pidns:
            try:
                if self.direct:
                    isolation.unshare(isolation.CLONE_NEWNS)
                isolation.mount_proc()
            except OSError:
                pass  # the job still cannot signal anything outside its namespace
        isolation.drop_all_capabilities()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(result_w, 3)
        os.closerange(4, 65536)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.environ["TMPDIR"] = self.tmp_dir
        os.chdir(self.job_dir)
        apply_limits(job.limits, self.baseline_vm)
        self.reporter.fd = 3
        if job.stdin_tests is not None:
            return self._run_stdin_cases_unsafe(job)
        return self._run_pytest_unsafe(job)

    def _run_pytest_unsafe(self, job: Job) -> int:
        cov = self.coverage if job.coverage else None
        code = 3
        reason = ""
        # With a prepared config, coverage runs in windows (see _coverage_windows_plugin);
        # on the slow path it runs for the whole session.
        whole_session = cov is not None and self.config is None
        if self.coverage_windows is not None:
            self.coverage_windows.cov = cov
        try:
            if whole_session:
                cov.start()
            try:
                if self.config is not None:
                    if self.capman is not None:
                        # The state a fresh pytest is in after parsing its arguments:
                        # global capture started, then suspended until the session runs.
                        self.capman.start_global_capturing()
                        self.capman.suspend_global_capture()
                    code = int(self.config.hook.pytest_cmdline_main(config=self.config))
                else:
                    import pytest

                    code = int(pytest.main(list(self.pytest_args), plugins=[self.reporter]))
            finally:
                if whole_session:
                    cov.stop()
        except MemoryError:
            self.reporter.memory_error = True
        except BaseException as e:  # noqa: BLE001 - a test may raise anything at session level
            reason = f"pytest session aborted: {type(e).__name__}: {e}"[:500]
        pct = _line_coverage(cov, os.path.join(self.job_dir, "solution.py"), job.solution) if cov else None
        sys.stdout.flush()
        sys.stderr.flush()
        write_all(3, frame(Done(exit_code=code, coverage=pct, memory_error=self.reporter.memory_error,
                                reason=reason)))
        return 0

    def _run_stdin_cases_unsafe(self, job: Job) -> int:
        path = os.path.join(self.job_dir, "solution.py")
        try:
            code_obj = compile(job.solution, path, "exec")
        except (SyntaxError, ValueError) as e:
            write_all(3, frame(Done(exit_code=2, reason=f"solution does not compile: {type(e).__name__}: {e}")))
            return 0
        write_all(3, frame(Collected(count=len(job.stdin_tests or []))))
        failed = 0
        memory_error = False
        for i, case in enumerate(job.stdin_tests or []):
            in_path = os.path.join(self.job_dir, f".case{i}.in")
            out_path = os.path.join(self.job_dir, f".case{i}.out")
            err_path = os.path.join(self.job_dir, f".case{i}.err")
            with open(in_path, "w", encoding="utf-8") as f:
                f.write(case.input)
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                os._exit(_run_program_unsafe(code_obj, path, in_path, out_path, err_path))
            _, st = os.waitpid(pid, 0)
            rc = os.waitstatus_to_exitcode(st)
            got = _read_text(out_path)
            err_text = _read_text(err_path)
            nodeid = f"case[{i}]"
            if rc != 0:
                failed += 1
                last = err_text.strip().splitlines()[-1:] or [describe_wait_status(rc if rc >= 0 else 128 - rc)]
                memory_error = memory_error or last[0].startswith("MemoryError")
                outcome = TestOutcome(nodeid, "failed", f"exit {rc}: {last[0][:250]}")
            else:
                ok, diff = outputs_match(got, case.output, job.float_tolerance)
                failed += not ok
                outcome = TestOutcome(nodeid, "passed" if ok else "failed", diff)
            write_all(3, frame(TestEvent(outcome)))
        write_all(3, frame(Done(exit_code=1 if failed else (0 if job.stdin_tests else 5), memory_error=memory_error)))
        return 0


def _line_coverage(cov, path: str, source: str) -> float | None:  # noqa: ANN001
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


def _run_program_unsafe(code_obj, path: str, in_path: str, out_path: str, err_path: str) -> int:  # noqa: ANN001
    """Fork #3 (stdin mode): run the solution as __main__ with the case's stdin."""
    try:
        fd = os.open(in_path, os.O_RDONLY)
        os.dup2(fd, 0)
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 2)
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


def _read_text(path: str, limit: int = 16 * 1024 * 1024) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _remove_tree(path: str) -> None:
    def make_writable_and_retry(func, p, _exc) -> None:  # noqa: ANN001
        parent = os.path.dirname(p)
        for target in (parent, p):
            try:
                os.chmod(target, stat.S_IRWXU)
            except OSError:
                pass
        func(p)

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, onerror=make_writable_and_retry)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


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


def main() -> None:
    # The protocol rides on stdin/stdout; move it off fds 0/1 so nothing we import can
    # print into it, and point 0/1 at harmless places.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.environ.pop("PYTHONPATH", None)  # it only served to find this module
    options = msgspec.json.decode(sys.argv[1].encode(), type=WorkerOptions)
    zygote = Zygote(options)
    zygote.protocol_fds = (proto_in, proto_out)
    zygote.drop_privileges()
    zygote.namespaced = zygote.own_namespaces()
    zygote.warm_up()
    write_all(proto_out, frame(Ready(v=PROTOCOL_VERSION, isolation=options.isolation, warnings=zygote.warnings,
                                     preloaded=zygote.preloaded)))
    while True:
        try:
            header = read_exact(proto_in, 4)
        except EOFError:
            return
        request: JobRequest = decode_request(read_exact(proto_in, frame_length(header)))
        verdict = zygote.run(request.job)
        write_all(proto_out, frame(Result(v=PROTOCOL_VERSION, verdict=verdict)))
        # A job may leave files the zygote cannot remove; exiting lets the pool replace us.
        zygote._reset_area()


if __name__ == "__main__":
    main()
