"""The child side of the sandbox: a warm zygote that forks one isolated, limited process tree per job.

Never imported by the parent (the pool starts it as `python -m sandbox.worker` under bubblewrap):

    pool (engine process)
      |  stdin/stdout: framed WorkerOptions, then Job / Verdict messages
      v
    bwrap  (new pid/net/ipc/uts/mount namespaces, read-only system, empty env)
      '-- waiter (drops to uid nobody, then creates a user + pid + mount namespace and stays
          |   behind only to pass on the exit status)                          startup.py
          '-- zygote (PID 1 of that namespace): pytest, coverage, numpy, ... imported once,
              |   pytest configured and its session started once, gc frozen,
              |   not dumpable              warmup.py (pytest_speedups.py: cheaper internals)
              |   per job: wipe + write the job area                              area.py
              |   unshare(NEWPID), fork, setns back, watch clock and pipes      supervise.py
              '-- job process (PID 1 of a fresh pid namespace; its own /proc where allowed): drops
                  every capability, sets rlimits, runs the untrusted code   job_unsafe.py
                  (pytest_unsafe.py, stdin_unsafe.py, rerun_unsafe.py), streams events back.
                  When it dies, the kernel kills everything it started.

Where the zygote cannot own a user namespace, a reaper process per job creates the job's
namespaces instead (two forks per job). The zygote never runs untrusted code; everything on
the job's side of the fork is `*_unsafe`.
"""
