"""Kernel calls the worker makes for itself and its jobs: unshare, setns, prctl, capabilities.

Thin ctypes wrappers; each raises OSError with errno on failure.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MNT_DETACH = 0x2
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38

_libc = None
# PyDLL: the GIL stays held across fork(), as os.fork() holds it. dlopen(NULL) finds libc's fork
# without find_library, which runs a program: nothing may run between unshare(CLONE_NEWPID) and
# the fork that is meant to be the new namespace's first process.
_fork = ctypes.PyDLL(None, use_errno=True).fork


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def single_threaded() -> bool:
    """Does this process run exactly one thread (Python's or any library's)?"""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


# After-fork hooks registered (os.register_at_fork) once the worker started recording: the child
# of light_fork() runs them itself, except those that only re-create locks another thread might
# have held, which a single-threaded parent never holds across fork().
_child_hooks: list = []


def _not_needed_by_light_child(hook) -> bool:  # noqa: ANN001
    """Hooks that only re-create a lock, and random's reseed (light_fork reseeds it in any case)."""
    name = f"{getattr(hook, '__module__', None)}.{getattr(hook, '__qualname__', '')}"
    return (getattr(hook, "__name__", "") == "_at_fork_reinit"  # a lock's own re-init (concurrent.futures)
            or name in ("threading._after_fork", "logging._after_at_fork_child_reinit_locks", "random.Random.seed"))


def record_fork_hooks() -> None:
    """From now on, keep a list of the after-fork hooks imported modules register (see light_fork)."""
    real = os.register_at_fork

    def register_at_fork(*, before=None, after_in_child=None, after_in_parent=None) -> None:  # noqa: ANN001
        real(**{k: v for k, v in (("before", before), ("after_in_child", after_in_child),
                                  ("after_in_parent", after_in_parent)) if v is not None})
        if after_in_child is not None and not _not_needed_by_light_child(after_in_child):
            _child_hooks.append(after_in_child)

    register_at_fork.real = real
    os.register_at_fork = register_at_fork


def light_fork() -> int:
    """fork() without Python's own after-fork work: the child's pid, or 0 in the child.

    os.fork() also re-creates the interpreter's locks and runs every after-fork hook, and the
    threading module's hook walks its thread tables. That Python code touches a few hundred pages
    the child then has to copy: ~0.3 ms per job. None of it is needed when no other thread could
    hold a lock, so the caller must check single_threaded() first. What a job could notice is
    kept: `random` gets a fresh seed, and the hooks record_fork_hooks() saw run in order (those
    registered during interpreter start-up, before recording began, are not known and do not run).
    """
    pid = _fork()
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fork: {os.strerror(err)}")
    if pid == 0:
        os.register_at_fork = getattr(os.register_at_fork, "real", os.register_at_fork)
        rnd = sys.modules.get("random")
        if rnd is not None:
            rnd.seed()
        for hook in _child_hooks:
            try:
                hook()
            except Exception:  # noqa: BLE001 - as after os.fork(), a failing hook does not stop the child
                pass
    return pid


def fork() -> int:
    """light_fork() where it is safe (one thread), os.fork() otherwise."""
    return light_fork() if single_threaded() else os.fork()


def unshare(flags: int) -> None:
    _check(_lib().unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_lib().setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def prctl(option: int, arg: int) -> None:
    _check(_lib().prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                        ctypes.c_ulong(0)), "prctl")


def mount_proc(target: str = "/proc") -> None:
    _check(_lib().mount(b"proc", target.encode(), b"proc", ctypes.c_ulong(MS_NOSUID | MS_NODEV | MS_NOEXEC), None),
           "mount proc")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda v: v.encode() if v is not None else None)  # noqa: E731
    _check(_lib().mount(enc(source), target.encode(), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def umount(target: str) -> None:
    _check(_lib().umount2(target.encode(), ctypes.c_int(MNT_DETACH)), f"umount {target}")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_seccomp(program: bytes) -> None:
    """Install a compiled seccomp BPF program (8-byte instructions) on the calling process, for good.

    Needs no_new_privs (drop_all_capabilities sets it). Children and exec'd programs inherit it.
    """
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(_lib().prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                        ctypes.c_void_p(ctypes.addressof(prog)), ctypes.c_ulong(0), ctypes.c_ulong(0)), "seccomp")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_all_capabilities() -> None:
    """Clear every capability of the calling process (in whatever user namespace it is in)."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_lib().capset(ctypes.byref(header), ctypes.byref(data)), "capset")
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def enter_job_namespaces(uid: int, gid: int) -> None:
    """Give the caller new user, PID and mount namespaces; its next child is PID 1 there.

    The caller keeps its uid (mapped to itself) and gets every capability inside the new user
    namespace, which is what lets a zygote create one PID namespace per job later on.
    """
    unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")
