"""The zygote: a warm interpreter that forks job processes and never reads a job's data.

    supervisor ──(unix socket: commands, the job's fds)──► zygote ──fork──► job process
        ▲                                                    │  (PID 1 of a fresh PID namespace)
        └──────────── "ended": exit code, CPU, peak RSS ◄────┘  wait4

The supervisor (sandbox/worker/supervise.py) holds every job's data: it writes the job's spec
into a memfd, and makes the pipes for the job's output. The zygote receives only those file
descriptors (SCM_RIGHTS) and forks; the job process reads its spec after the fork. So no job's
solution, tests, inputs, outputs or token ever pass through the zygote's memory, and every job
starts as a copy of a process that never held another job's data.

Commands (one datagram each): b"S" spawn (with fds: spec, stdout, stderr, result channel),
b"K" kill the running job, b"W" run the pytest phase of the warm-up, b"L" + names: import these
on-demand modules (each must be one the options allow). Replies are msgpack maps.
"""

from __future__ import annotations

import importlib
import os
import select
import signal
import socket
import sys

import msgspec

from sandbox.protocol import WorkerOptions
from sandbox.worker import namespaces as ns
from sandbox.worker import startup
from sandbox.worker.warmup import Warm, _freeze, _imports_outside, warm_pytest

SPAWN, KILL, WARM_PYTEST, PRELOAD = b"S", b"K", b"W", b"L"
SPAWN_FDS = 4  # spec, stdout, stderr, result channel
FORKED_CHILD_RAISED = 71  # an exception escaped the job process's set-up (the sandbox's fault, not the job's)


def send(sock: socket.socket, message: dict) -> None:
    sock.send(msgspec.msgpack.encode(message))


def receive(sock: socket.socket) -> dict:
    data = sock.recv(1 << 16)
    if not data:
        raise EOFError("the other side of the worker closed its socket")
    return msgspec.msgpack.decode(data)


class Zygote:
    def __init__(self, warm: Warm, options: WorkerOptions, sock: socket.socket, private: bool) -> None:
        self.warm = warm
        self.options = options
        self.sock = sock
        # private: jobs get their own PID, mount and IPC namespaces and private tmpfs mounts
        # (under bubblewrap); otherwise (isolation "none") they are plain forks in a session.
        self.private = private
        self.own_pidns = -1
        self.fresh_proc = False

    def status(self) -> dict:
        w = self.warm
        return {"warnings": w.warnings, "preloaded": w.preloaded, "pytest_ready": w.pytest_ready,
                "pending": sorted(w.on_demand)}

    # ---- start-up probes -----------------------------------------------------------

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

    def probe(self) -> str:
        """'' when jobs can get their namespaces here, else what is missing (the worker cannot isolate)."""
        if not self.private:
            return ""
        try:
            self.own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            for _ in range(2):  # twice: the second unshare only works if setns really reset us
                pid = self.fork_into_new_pidns()
                if pid == 0:
                    os._exit(0 if os.getpid() == 1 else 1)
                _, st = os.waitpid(pid, 0)
                if os.waitstatus_to_exitcode(st) != 0:
                    return "a job cannot be PID 1 of a PID namespace of its own"
        except OSError as e:
            return f"per-job PID namespaces are unavailable ({e})"

        def private_mounts() -> bool:
            ns.unshare(ns.CLONE_NEWNS | ns.CLONE_NEWIPC)
            ns.mount("tmpfs", self.warm.area.root, "tmpfs", ns.MS_NOSUID | ns.MS_NODEV, "size=1m")
            return True

        if not startup.probe_in_child(private_mounts):
            return "a job cannot get private mount and IPC namespaces with its own tmpfs"
        self.fresh_proc = startup.can_mount_fresh_proc()
        return ""

    # ---- the command loop ----------------------------------------------------------

    def serve(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, SPAWN_FDS)
            except (EOFError, ConnectionError):
                return
            if not data:
                return
            kind = data[:1]
            if kind == SPAWN and len(fds) == SPAWN_FDS:
                self.spawn(fds)
                continue
            for fd in fds:
                os.close(fd)
            if kind == WARM_PYTEST:
                if not self.warm.pytest_ready:
                    warm_pytest(self.warm, self.options)
                send(self.sock, self.status())
            elif kind == PRELOAD:
                self.preload(data[1:].decode("ascii", "replace").split(","))
                send(self.sock, self.status())
            elif kind == KILL:
                continue  # a kill that crossed the job's own end: nothing is running
            else:
                return  # not a command of ours: the supervisor is broken; stop

    def preload(self, names: list[str]) -> None:
        """Import on-demand modules the supervisor saw named in a job (only names the options list)."""
        wanted = [n for n in names if n in self.warm.on_demand]
        if not wanted:
            return
        with _imports_outside(self.warm.area):
            for name in wanted:
                del self.warm.on_demand[name]
                try:
                    importlib.import_module(name)
                    self.warm.preloaded.append(name)
                except Exception:  # noqa: BLE001 - then the job imports it (and fails) as it would anyway
                    pass
        if self.warm.coverage is not None:
            self.warm.coverage.start()
            self.warm.coverage.stop()
        _freeze(self.warm)

    def spawn(self, fds: list[int]) -> None:
        from sandbox.worker.job_unsafe import job_process_unsafe

        sys.stdout.flush()  # nothing of the zygote's own may reach a job's output
        sys.stderr.flush()
        exit_now = os._exit  # bound before any job code runs: patching os._exit cannot keep the child here
        child = self.fork_into_new_pidns() if self.private else ns.fork()
        if child == 0:
            code = FORKED_CHILD_RAISED
            try:
                self.sock.close()
                code = job_process_unsafe(self.warm, self.options, fds, private=self.private,
                                          own_proc=self.fresh_proc)
            except BaseException:  # noqa: BLE001 - nothing may escape a forked child
                code = FORKED_CHILD_RAISED
            finally:
                exit_now(code)
        for fd in fds:
            os.close(fd)
        self.watch(child)

    def watch(self, child: int) -> None:
        """Wait for the job while taking kill commands; then report how it ended."""
        pidfd = os.pidfd_open(child)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(self.sock, select.POLLIN)
        supervisor_gone = False
        try:
            while True:
                ready = {fd for fd, _ in poller.poll()}
                if self.sock.fileno() in ready and not supervisor_gone:
                    try:
                        data = self.sock.recv(16)
                    except ConnectionError:
                        data = b""
                    if data == KILL or not data:
                        self.kill(child)
                    if not data:
                        supervisor_gone = True
                        poller.unregister(self.sock)
                if pidfd in ready:
                    _, st, usage = os.wait4(child, 0)
                    break
        finally:
            os.close(pidfd)
        code = os.waitstatus_to_exitcode(st)
        if code < 0:
            code = 128 - code  # killed by a signal: the shell's encoding
        if not self.private:
            _killpg(child)  # whatever it left behind in its session
        if supervisor_gone:
            raise EOFError("the supervisor went away")
        send(self.sock, {"code": code, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024})

    def kill(self, child: int) -> None:
        # The job is PID 1 of its namespace: killing it takes every process it started with it.
        # Without namespaces, its session's process group goes too.
        if self.private:
            _signal(child, signal.SIGKILL)
        else:
            _killpg(child)
            _signal(child, signal.SIGKILL)


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
