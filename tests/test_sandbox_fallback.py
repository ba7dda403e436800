"""Without isolation (asked for by name): jobs are plain forks of the zygote in a shared area.

The supervisor/zygote split, the verdict rules and the wipe of the shared area are the same code
as under bubblewrap; only the namespaces and the seccomp filter are missing.
"""

from sandbox import Job, Limits, SandboxConfig, verify_batch
from sandbox.protocol import StdinCase

JOBS = {
    "pass": Job(id="pass", solution="def f():\n    return 1\n",
                test="from solution import *\ndef test_a():\n    assert f() == 1\n"),
    "timeout": Job(id="timeout", solution="x = 1\n", test="def test_a():\n    while True:\n        pass\n",
                   limits=Limits(wall_s=1)),
    "segfault": Job(id="segfault", solution="x = 1\n", test="import ctypes\ndef test_a():\n    ctypes.string_at(0)\n"),
    "leftover": Job(id="leftover", solution="open('left.txt', 'w').write('x')\n",
                    stdin_tests=[StdinCase("")]),
    "clean": Job(id="clean", solution="import os\nprint(sorted(os.listdir('.')))\n", stdin_tests=[StdinCase("")]),
}


def test_without_isolation_the_same_verdicts_and_a_clean_area_for_each_job():
    v = {x.id: x for x in verify_batch(list(JOBS.values()), SandboxConfig(workers=1, isolation="none"))}
    assert (v["pass"].status, v["pass"].coverage, v["pass"].isolation) == ("pass", 100.0, "none")
    assert v["timeout"].status == "timeout" and v["segfault"].status == "fail"
    assert v["leftover"].status == "pass"
    assert v["clean"].stdout.strip() == "['solution.py']", v["clean"].stdout  # the leftover was wiped
