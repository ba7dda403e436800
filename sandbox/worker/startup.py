"""Start-up: the privilege drop, and probes of what jobs can get.

Order matters: drop to the unprivileged uid first (as root under bubblewrap), then create the
user + PID + mount namespace the zygote will own (while still single-threaded, before any import
can start a thread; see __main__.py), then warm up. The probes run after warm-up.
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
