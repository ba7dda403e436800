"""Namespaces: the bubblewrap command a worker starts in, and the per-job namespace calls.

Two layers:

* Each worker (a warm "zygote" interpreter) runs under bubblewrap: new PID, network,
  IPC, UTS and mount namespaces, a read-only view of only the directories Python
  needs, a private tmpfs for /tmp and for the job area, no environment, and, when
  started as root, an unprivileged uid.
* Each job forks from the zygote into a fresh user + PID + mount namespace, so the
  job's process is PID 1 of its own namespace: when it dies, the kernel kills every
  process it left behind, including ones that called setsid() or double-forked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
import sysconfig
from functools import cache

# Fixed paths inside the bubblewrap sandbox. A fixed job path lets the zygote
# prepare pytest's configuration (rootdir, ini lookup) once for every job.
SANDBOX_ROOT = "/sandbox"
SANDBOX_UID = 65534  # nobody

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38

_ETC_FILES = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd",
    "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/mime.types", "/etc/ssl", "/etc/alternatives",
    "/etc/fonts", "/etc/matplotlibrc",
)
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@cache
def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@cache
def bwrap_works() -> tuple[bool, str]:
    """Whether bubblewrap can create the namespaces we need on this machine (probed once)."""
    path = bwrap_path()
    if path is None:
        return False, "bubblewrap (bwrap) is not installed; install the Debian package 'bubblewrap'"
    cmd = bwrap_command([sys.executable, "-c", "pass"], python_paths=())
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bwrap failed to start: {e}"
    if r.returncode != 0:
        return False, f"bwrap cannot create namespaces here: {r.stderr.decode(errors='replace').strip()}"
    return True, ""


def _python_dirs(extra: tuple[str, ...]) -> list[str]:
    """Directories the worker interpreter needs to read: prefixes, stdlib, site-packages, sys.path."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            dirs.add(p)
    import site

    dirs.update(site.getsitepackages())
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        dirs.add(site.getusersitepackages())
    # Only interpreter and site directories: a project checkout on sys.path stays invisible.
    dirs.update(extra)
    existing = sorted({os.path.realpath(d) for d in dirs if os.path.exists(d)} | {d for d in dirs if os.path.exists(d)})
    # Drop paths already covered by a parent in the list, and anything under /usr etc.
    out: list[str] = []
    for d in existing:
        if any(d == s or d.startswith(s + "/") for s in _SYSTEM_DIRS):
            continue
        if any(d.startswith(o + "/") for o in out):
            continue
        out.append(d)
    return out


def bwrap_command(argv: list[str], python_paths: tuple[str, ...] = (), tmpfs_mb: int = 1024,
                  binds: tuple[tuple[str, str], ...] = (), env: dict[str, str] | None = None) -> list[str]:
    """The bubblewrap command line that runs `argv` as an isolated worker.

    `binds` are extra (source, destination) read-only mounts; `env` is the whole
    environment inside (on top of PATH, HOME, TMPDIR and LANG).
    """
    cmd = [bwrap_path() or "bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if os.geteuid() != 0:
        # Unprivileged: bubblewrap needs a user namespace to do anything. As root we skip it,
        # so that the zygote can switch to a real unprivileged uid instead.
        cmd.append("--unshare-user")
    for d in _SYSTEM_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            cmd += ["--ro-bind", d, d]
        elif os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
    for f in _ETC_FILES:
        if os.path.exists(f):
            cmd += ["--ro-bind", f, f]
    made: set[str] = set()
    for d in _python_dirs(python_paths):
        # bwrap would create missing parents with the host's modes (e.g. /root is 0700),
        # which the unprivileged uid could not traverse.
        parts = d.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/" + "/".join(parts[:i])
            if parent not in made:
                made.add(parent)
                cmd += ["--perms", "0755", "--dir", parent]
        cmd += ["--ro-bind", d, d]
    for src, dst in binds:
        cmd += ["--ro-bind", src, dst]
    size = str(tmpfs_mb * 1024 * 1024)
    cmd += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", size, "--perms", "1777", "--tmpfs", "/tmp",
        "--size", size, "--perms", "1777", "--tmpfs", SANDBOX_ROOT,
        "--clearenv",
        "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
        "--setenv", "HOME", SANDBOX_ROOT,
        "--setenv", "TMPDIR", "/tmp",
        "--setenv", "LANG", "C.UTF-8",
        "--chdir", SANDBOX_ROOT,
    ]
    for key, value in (env or {}).items():
        cmd += ["--setenv", key, value]
    if os.geteuid() == 0:
        # Root may switch to nobody inside; the zygote drops to it after start-up.
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    cmd += ["--", *argv]
    return cmd


# ---- per-job calls, used by the child side only ---------------------------------------

_libc = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


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
