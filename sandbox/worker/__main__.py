"""Entry point of a worker: `python -P -m sandbox.worker`, options in the first frame on stdin.

One worker is two processes inside its bubblewrap sandbox:

* the supervisor (this process, after the fork): speaks the protocol with the pool, holds every
  job's data, watches jobs and decides verdicts (supervise.py);
* the zygote (the child): warms up, then forks a job process whenever the supervisor asks,
  without ever reading a job's data (zygote.py).

As set up here, the zygote is PID 1 of a PID namespace of its own and owns a user and mount
namespace, which lets it make each job PID 1 of a fresh PID namespace with private mounts.
"""

from __future__ import annotations

import os
import socket
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
    problem = ""
    if options.namespaces:
        try:
            ns.enter_job_namespaces(uid, gid)  # the zygote, forked next, is PID 1 of the new PID namespace
        except OSError as e:
            problem = f"the worker cannot create a user namespace for its jobs ({e})"
    sup_sock, zyg_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sup_sock.close()
            for fd in (proto_in, proto_out):
                os.close(fd)
            zygote_main(options, zyg_sock, problem)
            code = 0
        finally:
            os._exit(code)
    zyg_sock.close()
    # The supervisor needs no privilege: not dumpable (jobs share its uid), no capabilities.
    ns.prctl(ns.PR_SET_DUMPABLE, 0)
    if options.namespaces and not problem:
        ns.drop_all_capabilities()
    supervisor_main(options, sup_sock, proto_in, proto_out)


def zygote_main(options, sock: socket.socket, problem: str) -> None:  # noqa: ANN001 - WorkerOptions
    from sandbox.worker.area import JobArea
    from sandbox.worker.warmup import warm_up
    from sandbox.worker.zygote import Zygote, send

    area = JobArea(options.root, private_tmp=options.namespaces, keep=options.keep)
    warm = warm_up(options, area)
    zygote = Zygote(warm, options, sock, private=options.namespaces)
    problem = problem or zygote.probe()
    # Jobs share the zygote's uid. Non-dumpable, its memory cannot be opened through
    # /proc/<pid>/mem by them (that needs CAP_SYS_PTRACE, which jobs never have).
    ns.prctl(ns.PR_SET_DUMPABLE, 0)
    if problem:
        send(sock, {"fatal": problem})
        return
    send(sock, zygote.status())
    zygote.serve()


def supervisor_main(options, sock: socket.socket, proto_in: int, proto_out: int) -> None:  # noqa: ANN001
    from sandbox.worker.supervise import Supervisor, WorkerBroken
    from sandbox.worker.zygote import receive

    try:
        status = receive(sock)
    except (OSError, EOFError) as e:
        sys.exit(f"sandbox worker: the zygote died while warming up ({e})")
    if "fatal" in status:
        sys.exit(f"sandbox worker cannot isolate jobs: {status['fatal']}")
    supervisor = Supervisor(options, sock, status)
    write_all(proto_out, frame(Ready(v=PROTOCOL_VERSION, isolation=options.isolation, warnings=supervisor.warnings,
                                     preloaded=supervisor.preloaded)))
    while True:
        try:
            header = read_exact(proto_in, 4)
        except EOFError:
            return
        request: JobRequest = decode_request(read_exact(proto_in, frame_length(header)))
        try:
            verdict, retire = supervisor.run(request.job)
        except WorkerBroken as e:
            sys.exit(f"sandbox worker: {e}")
        write_all(proto_out, frame(Result(v=PROTOCOL_VERSION, verdict=verdict, retire=retire)))


if __name__ == "__main__":
    sys.exit(main())
