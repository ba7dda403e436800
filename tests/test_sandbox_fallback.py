"""The reaper path: where the zygote cannot own a user namespace, each job is two forks.

It runs in a subprocess (warming up changes a process: imports, gc.freeze, cwd), as the pool
would run it, but without bubblewrap and without the zygote's own namespaces.
"""

import json
import subprocess
import sys

from tests.conftest import ROOT, stray_processes

SCRIPT = r'''
import json, os, sys, tempfile
from sandbox.protocol import Job, Limits, WorkerOptions
from sandbox.worker import startup
from sandbox.worker.area import JobArea
from sandbox.worker.supervise import Supervisor
from sandbox.worker.warmup import warm_up

options = WorkerOptions(root=tempfile.mkdtemp(), preload=["pytest", "coverage"], isolation="none")
area = JobArea(options.root, private_tmp=False)
warm = warm_up(options, area)  # startup.own_namespaces() not called: the reaper path
z = Supervisor(warm, options, os.getuid(), os.getgid(), ())
z.pidns = startup.can_nest_pid_namespaces(os.getuid(), os.getgid())
jobs = {
    "pass": Job(solution="def f():\n    return 1\n", test="from solution import *\ndef test_a():\n    assert f() == 1\n"),
    "timeout": Job(solution="x = 1\n", test="def test_a():\n    while True:\n        pass\n", limits=Limits(wall_s=1)),
    "daemon": Job(solution="x = 1\n", test=(
        "import os, subprocess, sys, time\n"
        "def test_a():\n"
        "    subprocess.Popen([sys.executable, '-c', 'import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n"
        "    time.sleep(300)  # kodcode-fallback-marker'], start_new_session=True)\n"
        "    time.sleep(0.3)\n")),
    "segfault": Job(solution="x = 1\n", test="import ctypes\ndef test_a():\n    ctypes.string_at(0)\n"),
}
out = {}
for name, job in jobs.items():
    v = z.run(job)
    area.reset()
    out[name] = [v.status, v.coverage]
print(json.dumps({"direct": z.direct, "pidns": z.pidns, "verdicts": out}))
'''


def test_reaper_path_gives_the_same_verdicts_and_leaves_nothing_behind():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["direct"] is False
    v = result["verdicts"]
    assert v["pass"] == ["pass", 100.0]
    assert v["timeout"][0] == "timeout" and v["segfault"][0] == "fail" and v["daemon"][0] == "pass"
    if result["pidns"]:  # per-job PID namespaces (root, or unprivileged user namespaces allowed)
        assert stray_processes("kodcode-fallback-marker") == []
