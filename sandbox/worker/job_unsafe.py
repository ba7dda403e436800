"""The job process: the last trusted steps before untrusted code, then the code itself.

Runs right after the zygote's fork, as PID 1 of the job's own PID namespace. In order:

1. read the job's spec from the memfd the supervisor filled (the zygote never read it);
2. new mount and IPC namespaces: a private tmpfs holds the job area, /tmp and /dev/shm (the
   interpreter's directories mounted under /tmp are bound into it again, read-only), a /proc of
   its own where the kernel allows it. Whatever the job writes, and any System V or POSIX IPC
   object it makes, dies with it: nothing is left for the next job, and nothing needs wiping;
3. the job's files written into that area; every capability dropped (no_new_privs set);
4. fds 0-3 (stdin, stdout, stderr, result channel), rlimits, then the seccomp filter;
5. pytest, a flakiness rerun (a fresh interpreter), or one run of a stdin program.
"""

from __future__ import annotations

import os
import signal

from sandbox.protocol import RESULT_FD, WorkerOptions, decode_spec
from sandbox.worker import namespaces as ns
from sandbox.worker.area import JobArea, write_text
from sandbox.worker.limits import apply_limits
from sandbox.worker.warmup import Warm


def job_process_unsafe(warm: Warm, options: WorkerOptions, fds: list[int], *, private: bool, own_proc: bool) -> int:
    """Set the job process up and run the job; returns the process's exit code."""
    spec_fd, out_w, err_w, result_w = fds
    os.setsid()
    ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
    spec = decode_spec(read_fd(spec_fd))
    area = warm.area
    if private:
        ns.unshare(ns.CLONE_NEWNS | ns.CLONE_NEWIPC)
        private_area(area, options)
        if own_proc:
            ns.mount_proc()  # probed at start-up: a failure here is a broken job set-up, not ignored
    area.prepare()
    area.write_job(spec.job.solution, spec.job.test if spec.mode != "program" else None)
    ns.drop_all_capabilities()
    stdin = os.open(os.devnull, os.O_RDONLY)
    if spec.mode == "program":
        path = os.path.join(area.job_dir, ".stdin")
        write_text(path, spec.stdin)
        stdin = os.open(path, os.O_RDONLY)
        os.unlink(path)
    os.dup2(stdin, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.dup2(result_w, RESULT_FD)
    keep = spec_fd if spec.mode == "rerun" else -1  # the fresh interpreter reads its spec from it
    if keep >= 0:
        os.lseek(keep, 0, os.SEEK_SET)
        keep = os.dup2(keep, RESULT_FD + 1)
        os.set_inheritable(keep, True)
    _close_inherited_fds({} if keep >= 0 else warm.plugin_fds, keep)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.environ["TMPDIR"] = area.tmp_dir
    os.chdir(area.job_dir)
    apply_limits(spec.job.limits, warm.baseline_vm)
    if options.seccomp_bpf:
        ns.load_seccomp(options.seccomp_bpf)
    if spec.mode == "program":
        from sandbox.worker.stdin_unsafe import run_program_unsafe

        return run_program_unsafe(spec.job.solution, area.solution_path, own_fork=spec.own_fork)
    if spec.mode == "rerun":
        from sandbox.worker.pytest_unsafe import exec_fresh_rerun_unsafe

        exec_fresh_rerun_unsafe(spec.job.rerun_seed or 0, warm.pytest_args, options.blocked_imports,
                                options.package_parent, keep)
    from sandbox.worker.pytest_unsafe import run_pytest_unsafe

    box = [spec.token]  # emptied by the result channel's audit hook, the one place the token lives on
    job = spec.job
    del spec
    return run_pytest_unsafe(warm, job.coverage, job.solution, box, options.strict_compare)


def private_area(area: JobArea, options: WorkerOptions) -> None:
    """One fresh tmpfs (size-capped) at the area's root; /tmp and /dev/shm are directories in it.

    Interpreter directories that live under /tmp (a venv in /tmp) are read-only binds of
    bubblewrap's: they are bound again inside the new /tmp before it covers the old one.
    """
    flags = ns.MS_NOSUID | ns.MS_NODEV
    ns.mount("tmpfs", area.root, "tmpfs", flags, f"size={max(1, options.job_tmpfs_mb)}m,mode=0755")
    tmp, shm = os.path.join(area.root, ".tmp"), os.path.join(area.root, ".shm")
    for d in (tmp, shm):
        os.mkdir(d)
        os.chmod(d, 0o1777)
    for kept in options.keep:
        if kept.startswith("/tmp/"):
            inside = os.path.join(tmp, kept[len("/tmp/"):])
            os.makedirs(inside, exist_ok=True)
            ns.mount(kept, inside, None, ns.MS_BIND | ns.MS_REC)
    ns.mount(tmp, "/tmp", None, ns.MS_BIND | ns.MS_REC)
    if os.path.isdir("/dev/shm"):
        ns.mount(shm, "/dev/shm", None, ns.MS_BIND)


def read_fd(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _close_inherited_fds(plugin_fds: dict[int, str], keep: int = -1) -> None:
    """Close every fd above the result channel except those pytest's configured plugins hold.

    Those stay valid (a plugin writing to a closed number could hit a file the test opened
    later): copies of the zygote's stderr are re-pointed at the job's stderr, the rest (such as
    the logging plugin's /dev/null) are kept as they are.
    """
    start = RESULT_FD + 1
    for fd in sorted(set(plugin_fds) | ({keep} if keep >= 0 else set())):
        if fd < start:
            continue
        os.closerange(start, fd)
        if plugin_fds.get(fd) == "stderr":
            os.dup2(2, fd)
        start = fd + 1
    os.closerange(start, 65536)

