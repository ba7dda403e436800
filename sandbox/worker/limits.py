"""rlimits for the job process. The wall-clock limit is the supervisor's job."""

from __future__ import annotations

import resource

from sandbox.protocol import Limits

MB = 1024 * 1024


def address_space_in_use() -> int:
    """Current virtual size of this process in bytes (the warm interpreter's baseline)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def apply_limits(limits: Limits, baseline_vm: int) -> None:
    """Set the job's rlimits. Memory is counted on top of the warm interpreter it forked from."""

    def set_limit(kind: int, soft: int, hard: int | None = None) -> None:
        hard = soft if hard is None else hard
        _, cur_hard = resource.getrlimit(kind)
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        resource.setrlimit(kind, (soft, hard))

    cpu = limits.cpu_limit_s()
    if cpu:
        # SIGXCPU at the soft limit, SIGKILL one second later if it is ignored.
        set_limit(resource.RLIMIT_CPU, cpu, cpu + 1)
    if limits.memory_mb:
        set_limit(resource.RLIMIT_AS, baseline_vm + limits.memory_mb * MB)
    if limits.max_processes:
        set_limit(resource.RLIMIT_NPROC, limits.max_processes)
    if limits.max_file_mb:
        set_limit(resource.RLIMIT_FSIZE, limits.max_file_mb * MB)
    if limits.max_open_files:
        set_limit(resource.RLIMIT_NOFILE, limits.max_open_files)
    set_limit(resource.RLIMIT_CORE, 0)
