"""The jobs' seccomp filter, compiled once in the parent (sandbox side: loaded by each job process).

Jobs never need the kernel calls below, and each one has been a way out of a sandbox or around its
limits: io_uring (its own path to the file and network calls), keyrings (shared across namespaces),
userfaultfd, new namespaces of any kind and mounts (a user namespace would give the job
capabilities back), ptrace and cross-process memory access, kernel modules, kexec, bpf,
perf_event_open, memfd_create (memory outside RLIMIT_AS) and System V shared memory and message
queues (memory that outlives the process that made it). Everything else is allowed, so real
trials (threads, subprocesses, multiprocessing, sockets that fail in an empty network namespace)
behave as on a normal machine. A blocked call fails with EPERM (clone3 with ENOSYS, so that glibc
falls back to clone, whose flags a filter can read).

The BPF program is built with libseccomp (through `pyseccomp`) in the parent and handed to the
worker in its options; the job process loads it with prctl after its own set-up (mounts,
namespaces) and after dropping every capability, right before untrusted code runs. The worker side
needs neither libseccomp nor pyseccomp.
"""

from __future__ import annotations

import errno
import os
from functools import cache

CLONE_NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000, "CLONE_NEWTIME": 0x00000080,
}

BLOCKED = (
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key",
    "userfaultfd",
    "unshare", "setns",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "bpf", "perf_event_open", "fanotify_init", "name_to_handle_at", "open_by_handle_at",
    "memfd_create", "memfd_secret",
    "shmget", "msgget",
    "acct", "swapon", "swapoff", "reboot", "syslog", "quotactl", "vhangup",
)


class SeccompUnavailable(RuntimeError):
    """libseccomp cannot be loaded here, so the jobs' filter cannot be built."""


@cache
def job_filter() -> bytes:
    """The compiled filter (a sequence of 8-byte sock_filter instructions). Raises SeccompUnavailable."""
    try:
        import pyseccomp as sc
    except Exception as e:  # noqa: BLE001 - ImportError, or OSError when libseccomp.so.2 is missing
        raise SeccompUnavailable(f"cannot load libseccomp through pyseccomp ({type(e).__name__}: {e}); "
                                 "install your distribution's libseccomp2 package") from e
    deny = sc.ERRNO(errno.EPERM)
    f = sc.SyscallFilter(defaction=sc.ALLOW)
    try:
        f.set_attr(sc.Attr.CTL_OPTIMIZE, 2)  # a binary tree of syscall numbers: fewer instructions per call
    except (OSError, ValueError, RuntimeError):  # an older libseccomp: the linear filter is as correct
        pass
    for name in BLOCKED:
        try:
            f.add_rule(deny, name)
        except (OSError, ValueError, RuntimeError):  # a call this kernel's headers do not know: nothing to block
            continue
    for flag in CLONE_NAMESPACE_FLAGS.values():
        f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    r, w = os.pipe()
    try:
        with os.fdopen(w, "wb", closefd=True) as out:
            f.export_bpf(out)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
    program = b"".join(chunks)
    if not program or len(program) % 8:
        raise SeccompUnavailable(f"libseccomp produced a filter of {len(program)} bytes")
    return program
