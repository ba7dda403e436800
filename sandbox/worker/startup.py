"""Start-up: privilege drop, the zygote's own namespaces, and probing what jobs can get.

Order matters: drop to the unprivileged uid first (as root under bubblewrap), then move into a
user + PID + mount namespace the zygote owns (while still single-threaded, before any import
can start a thread), then warm up. The probes run after warm-up, with the heap in place.
"""

from __future__ import annotations

import os

from sandbox.protocol import WorkerOptions
from sandbox.worker import namespaces as ns


def drop_privileges(options: WorkerOptions) -> tuple[int, int]:
    """Started as root inside bubblewrap: become the unprivileged sandbox uid for good."""
    if options.drop_to_uid is not None and os.geteuid() == 0:
        uid = options.drop_to_uid
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        # setuid() made us non-dumpable, which would make /proc/self/uid_map unwritable
        # for the user namespaces created next.
        ns.prctl(ns.PR_SET_DUMPABLE, 1)
    return os.getuid(), os.getgid()


def own_namespaces(uid: int, gid: int, protocol_fds: tuple[int, ...]) -> bool:
    """Move the zygote into new user + PID + mount namespaces that it controls.

    Must run while the process has a single thread. The original process stays behind as a
    waiter; the caller continues as PID 1 of the new namespace, with capabilities there only,
    so each job can later be one fork into its own PID namespace. Returns False, changing
    nothing, if not possible.
    """
    try:
        ns.enter_job_namespaces(uid, gid)
    except OSError:
        return False
    pid = os.fork()
    if pid == 0:
        return True
    # Jobs run under the same uid: a dumpable process of that uid would let a job open its
    # memory through /proc/<pid>/mem. The waiter has nothing to steal, but still.
    ns.prctl(ns.PR_SET_DUMPABLE, 0)
    for fd in protocol_fds:  # the zygote holds the channel now
        os.close(fd)
    _, st = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(st)
    os._exit(code if code >= 0 else 128 - code)


def probe_in_child(check) -> bool:  # noqa: ANN001 - a callable run in a forked child
    """Run `check()` in a forked child; True if it returned True without raising."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if check() else 1
        finally:
            os._exit(code)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st) == 0


def can_nest_pid_namespaces(uid: int, gid: int) -> bool:
    """Reaper mode: can a forked child create a user + PID namespace and be PID 1's parent?"""

    def check() -> bool:
        ns.enter_job_namespaces(uid, gid)
        inner = os.fork()
        if inner == 0:
            os._exit(0 if os.getpid() == 1 else 1)
        _, st = os.waitpid(inner, 0)
        return os.waitstatus_to_exitcode(st) == 0

    return probe_in_child(check)


def can_mount_fresh_proc() -> bool:
    """Can a job (new mount namespace) mount a /proc of its own PID namespace over bubblewrap's?"""

    def check() -> bool:
        ns.unshare(ns.CLONE_NEWNS | ns.CLONE_NEWPID)
        inner = os.fork()
        if inner == 0:
            try:
                ns.mount_proc()
                os._exit(0)
            except OSError:
                os._exit(1)
        _, st = os.waitpid(inner, 0)
        return os.waitstatus_to_exitcode(st) == 0

    return probe_in_child(check)
