"""Entry point of a worker: `python -m sandbox.worker`, options in the first frame on stdin."""

from __future__ import annotations

import os
import sys

from sandbox.protocol import (
    PROTOCOL_VERSION,
    JobRequest,
    Ready,
    Result,
    decode_options,
    decode_request,
    frame,
    frame_length,
    read_exact,
    write_all,
)
from sandbox.worker import namespaces as ns
from sandbox.worker import startup
from sandbox.worker.area import JobArea
from sandbox.worker.supervise import Supervisor
from sandbox.worker.warmup import preload_for, warm_pytest, warm_up


def main() -> None:
    ns.record_fork_hooks()  # before warm-up imports anything: see namespaces.light_fork
    # The protocol rides on stdin/stdout; move it off fds 0/1 so nothing we import can
    # print into it, and point 0/1 at harmless places.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.environ.pop("PYTHONPATH", None)  # it only served to find this package
    options = decode_options(read_exact(proto_in, frame_length(read_exact(proto_in, 4))))
    uid, gid = startup.drop_privileges(options)
    namespaced = startup.own_namespaces(uid, gid, (proto_in, proto_out))
    area = JobArea(options.root, private_tmp=options.namespaces, keep=options.keep)
    warm = warm_up(options, area)
    supervisor = Supervisor(warm, options, uid, gid, (proto_in, proto_out))
    supervisor.direct = namespaced and supervisor.probe_direct()
    supervisor.pidns = supervisor.direct or startup.can_nest_pid_namespaces(uid, gid)
    supervisor.fresh_proc = supervisor.direct and startup.can_mount_fresh_proc()
    # Jobs share the zygote's uid. Non-dumpable, its memory cannot be opened through
    # /proc/<pid>/mem by them (that needs CAP_SYS_PTRACE, which jobs never have). Forked
    # children that must write their own uid_map make themselves dumpable again.
    ns.prctl(ns.PR_SET_DUMPABLE, 0)
    if not supervisor.pidns:
        warm.warnings.append("per-job PID namespaces are unavailable: processes a job detaches with setsid() "
                             "are killed by process group only")
    write_all(proto_out, frame(Ready(v=PROTOCOL_VERSION, isolation=options.isolation, warnings=warm.warnings,
                                     preloaded=warm.preloaded)))
    while True:
        try:
            header = read_exact(proto_in, 4)
        except EOFError:
            return
        request: JobRequest = decode_request(read_exact(proto_in, frame_length(header)))
        if not warm.pytest_ready and request.job.stdin_tests is None:
            warm_pytest(warm, options)
        if warm.on_demand:  # filled by the pytest phase
            preload_for(warm, [request.job.solution, request.job.test or ""])
        verdict = supervisor.run(request.job)
        write_all(proto_out, frame(Result(v=PROTOCOL_VERSION, verdict=verdict)))
        # A job may leave files the zygote cannot remove; exiting lets the pool replace us.
        area.reset()


if __name__ == "__main__":
    sys.exit(main())
