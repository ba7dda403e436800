"""The child side of the sandbox: a supervisor that holds the jobs' data, and a warm zygote that
forks one isolated, limited process tree per job without ever reading a job's data.

Never imported by the parent (the pool starts it as `python -P -m sandbox.worker` under bubblewrap):

    pool (engine process)
      |  stdin/stdout: framed WorkerOptions, then Job / Verdict messages
      v
    bwrap  (new pid/net/ipc/uts/mount namespaces, read-only root and system, empty env)
      '-- supervisor (drops to uid nobody, creates the user + mount namespace the zygote will own,
          |   then keeps no capability): holds each job's data, writes its spec into a memfd,
          |   watches clock and pipes, compares stdin output, maps the verdict   supervise.py
          '-- zygote (PID 1 of its own pid namespace): pytest, coverage, numpy, ... imported once,
              |   pytest configured and its session started once, gc frozen, not dumpable
              |   warmup.py (pytest_speedups.py: cheaper internals)
              |   per job: fds in (SCM_RIGHTS), unshare(NEWPID), fork, setns back, wait  zygote.py
              '-- job process (PID 1 of a fresh pid namespace): reads its spec, gets private mount
                  and IPC namespaces with its own tmpfs, drops every capability, sets rlimits and
                  the seccomp filter, runs the untrusted code            job_unsafe.py
                  (pytest_unsafe.py with guard_unsafe.py's audit hooks, stdin_unsafe.py,
                  rerun_unsafe.py). When it dies, the kernel kills everything it started, and its
                  mounts and IPC objects go with it.

Neither the supervisor nor the zygote runs untrusted code; everything on the job's side of the
fork is `*_unsafe`.
"""
