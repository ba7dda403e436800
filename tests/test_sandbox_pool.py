"""Pool behaviour: pytest semantics, stdin mode, worker death and hangs, backpressure, clean shutdown."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from sandbox import Job, Limits, SandboxConfig, SandboxPool, StdinCase, verify_batch
from tests.conftest import ROOT, is_bwrap_label, zombie_children

SOL = textwrap.dedent('''
    class Stack:
        def __init__(self):
            self.items = []
        def push(self, x):
            self.items.append(x)
        def pop(self):
            if not self.items:
                raise IndexError("empty")
            return self.items.pop()

    def double(x):
        print("doubling", x)
        return 2 * x
''')

RICH_TEST = textwrap.dedent('''
    import pytest
    from solution import Stack, double

    @pytest.fixture
    def stack():
        s = Stack()
        s.push(1)
        return s

    @pytest.mark.parametrize("x,want", [(1, 2), (0, 0), (-3, -6)])
    def test_double(x, want):
        assert double(x) == want

    class TestStack:
        def test_pop(self, stack):
            assert stack.pop() == 1

        def test_empty_raises(self):
            with pytest.raises(IndexError):
                Stack().pop()

    def test_tmp_path(tmp_path):
        (tmp_path / "f.txt").write_text("hi")
        assert (tmp_path / "f.txt").read_text() == "hi"

    def test_capsys(capsys):
        double(2)
        assert "doubling 2" in capsys.readouterr().out

    def test_monkeypatch(monkeypatch):
        import solution
        monkeypatch.setattr(solution, "double", lambda x: 0)
        assert solution.double(5) == 0

    @pytest.mark.skip(reason="not today")
    def test_skipped():
        pass

    @pytest.mark.xfail
    def test_xfail():
        assert False
''')


def test_real_pytest_semantics_and_per_test_outcomes(isolated):
    (v,) = verify_batch([Job(id="rich", solution=SOL, test=RICH_TEST)], SandboxConfig(workers=1))
    assert v.status == "pass", (v.reason, v.stdout)
    outcomes = {t.nodeid.split("::", 1)[1]: t.outcome for t in v.tests}
    assert outcomes["test_double[1-2]"] == "passed" and outcomes["TestStack::test_pop"] == "passed"
    assert outcomes["test_skipped"] == "skipped" and outcomes["test_xfail"] == "xfailed"
    assert len(outcomes) == 10 and v.coverage == 100.0 and is_bwrap_label(v.isolation)
    assert v.cpu_s > 0 and v.wall_s > 0 and v.peak_rss_mb > 0


def test_failure_messages_and_error_kinds(isolated):
    jobs = [
        Job(id="fail", solution="def f():\n    return 1\n", test="from solution import f\ndef test_f():\n    assert f() == 2\n"),
        Job(id="syntax", solution="def f(:\n", test="from solution import f\ndef test_f():\n    pass\n"),
        Job(id="no-tests", solution="x = 1\n", test="from solution import x\n"),
        Job(id="all-skipped", solution="x = 1\n", test="import pytest\n@pytest.mark.skip\ndef test_a():\n    pass\n"),
        Job(id="nocov", solution="x = 1\n", test="def test_a():\n    pass\n", coverage=False),
    ]
    fail, syntax, none, skipped, nocov = verify_batch(jobs, SandboxConfig(workers=2))
    assert fail.status == "fail" and "assert 1 == 2" in fail.tests[0].message
    assert syntax.status == "error" and syntax.tests[0].outcome == "error"
    assert none.status == "error" and "no tests collected" in none.reason
    assert skipped.status == "fail" and "skipped" in skipped.reason
    assert nocov.status == "pass" and nocov.coverage is None


def test_stdin_mode(isolated):
    cases = [StdinCase("1 2\n", "3\n"), StdinCase("5 5", "10"), StdinCase("2 2", "5")]
    ok = Job(id="sum", solution="a, b = map(int, input().split())\nprint(a + b)\n", stdin_tests=cases)
    crash = Job(id="crash", solution="raise SystemExit(3)\n", stdin_tests=cases[:1])
    floats = Job(id="floats", solution="print(1 / 3)\n", stdin_tests=[StdinCase("", "0.333333")], float_tolerance=1e-5)
    bad = Job(id="bad", solution="def (:\n", stdin_tests=cases[:1])
    v_ok, v_crash, v_floats, v_bad = verify_batch([ok, crash, floats, bad], SandboxConfig(workers=2))
    assert v_ok.status == "fail" and [t.outcome for t in v_ok.tests] == ["passed", "passed", "failed"]
    assert "expected '5', got '4'" in v_ok.tests[2].message
    assert v_crash.status == "fail" and "exit 3" in v_crash.tests[0].message
    assert v_floats.status == "pass"
    assert v_bad.status == "error" and "does not compile" in v_bad.reason


FORGE = ("import os, struct\nimport msgspec\n"
         "for fd in range(3, 64):\n    try:\n        os.open(f'/proc/1/fd/{fd}', os.O_WRONLY)\n"
         "        print('reopened', fd)\n    except OSError:\n        pass\n"
         "def frame(event):\n    body = msgspec.msgpack.encode(event)\n    return struct.pack('>I', len(body)) + body\n"
         "try:\n    os.write(3, frame(dict(type='collected', count=1)) + frame(dict(type='test', test=dict("
         "nodeid='case[0]', outcome='passed', message=''))) + frame(dict(type='done', exit_code=0)))\n"
         "except OSError as e:\n    print('channel:', e.strerror)\n"
         "print('wrong answer')\n")


def test_a_stdin_program_cannot_write_or_reopen_the_result_channel(isolated):
    job = Job(id="forge", solution=FORGE, stdin_tests=[StdinCase("", "right answer")])
    (v,) = verify_batch([job], SandboxConfig(workers=1))
    assert v.status == "fail" and [t.outcome for t in v.tests] == ["failed"], (v.reason, v.tests)
    # Its first line of output: nothing could be reopened through /proc/1/fd (the job process), and
    # the write failed.
    assert v.tests[0].message == "line 1: expected 'right answer', got 'channel: Bad file descriptor'", v.tests


def test_a_single_run_only_case_runs_in_the_job_process_and_still_cannot_forge(isolated):
    # /run_code's python mode: no fork per case, the job process (PID 1 of its namespace) is the
    # program. Code that names a way to signal itself gets a fork of its own (PID 2).
    in_place = Job(id="in-place", solution="import os\nprint(os.getpid())\n", stdin_tests=[StdinCase("")])
    forked = Job(id="forked", solution="import os, signal\nprint(os.getpid())\n", stdin_tests=[StdinCase("")])
    forge = Job(id="forge", solution=FORGE + "raise SystemExit(1)\n", stdin_tests=[StdinCase("")])
    memory = Job(id="memory", solution="x = bytearray(2**40)\n", stdin_tests=[StdinCase("")])
    echo = Job(id="echo", solution="import sys\nprint(sys.stdin.read().upper(), end='')\n",
               stdin_tests=[StdinCase("abc\n")])
    a, b, c, d, e = verify_batch([in_place, forked, forge, memory, echo], SandboxConfig(workers=2))
    assert (a.status, a.stdout, b.status, b.stdout) == ("pass", "1\n", "pass", "2\n"), (a, b)
    assert c.status == "fail" and c.tests[0].message == "exit 1: exited with code 1", c
    assert c.stdout.splitlines()[0] == "channel: Bad file descriptor" and "reopened" not in c.stdout, c.stdout
    assert d.status == "memory" and d.tests[0].message.startswith("exit 1: MemoryError"), d
    assert e.status == "pass" and e.stdout == "ABC\n" and e.tests[0].message == "exit 0", e


def test_jobs_forked_without_pythons_after_fork_work_still_get_fresh_random_seeds_and_working_threads(isolated):
    # The zygote forks jobs with libc's fork (namespaces.light_fork): `random` must still be
    # reseeded in every job, in every mode, and threads, executors and forks must work in the job.
    draw = "import random\nprint(random.getrandbits(64))\n"
    in_place = Job(id="in-place", solution=draw, stdin_tests=[StdinCase("")])
    per_case = Job(id="per-case", solution=draw, stdin_tests=[StdinCase(""), StdinCase("")])
    pytest_job = Job(id="pytest", solution="import random\n", coverage=False, test=(
        "import os, random, threading\nfrom concurrent.futures import ThreadPoolExecutor\n\n"
        "def test_threads_and_fork():\n"
        "    assert threading.current_thread() is threading.main_thread()\n"
        "    with ThreadPoolExecutor(2) as ex:\n        assert list(ex.map(abs, [-1, -2])) == [1, 2]\n"
        "    pid = os.fork()\n    if pid == 0:\n        os._exit(7)\n"
        "    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7\n\n"
        "def test_draw():\n    assert random.getrandbits(64) < 0\n"))  # fails, showing the number
    draws = []
    for v in verify_batch([in_place, in_place, per_case, pytest_job, pytest_job], SandboxConfig(workers=1)):
        if v.id == "pytest":
            assert [t.outcome for t in v.tests] == ["passed", "failed"], (v.reason, v.tests)
            draws += [int(re.search(r"assert (\d+) < 0", v.tests[1].message).group(1))]
        else:
            assert v.status == "pass", (v.id, v.reason, v.tests, v.stdout)
            draws += [int(line) for line in v.stdout.split()]
    assert len(draws) == 6 and len(set(draws)) == 6, draws


def test_light_fork_runs_the_hooks_modules_registered_and_reseeds_random():
    # In a process of its own, so this test process keeps its os.register_at_fork.
    code = textwrap.dedent("""
        import os, random, threading
        from sandbox.worker import namespaces as ns
        ns.record_fork_hooks()
        r, w = os.pipe()
        os.register_at_fork(after_in_child=lambda: os.write(w, b"hook;"))
        os.register_at_fork(after_in_child=threading.Lock()._at_fork_reinit)  # a lock's re-init: skipped
        state = random.getstate()
        pid = ns.light_fork()
        if pid == 0:
            builtin = type(os.register_at_fork).__name__ == "builtin_function_or_method"
            os.write(w, f"{random.getrandbits(64)};{builtin}".encode())
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        random.setstate(state)
        print(os.read(r, 1000).decode(), random.getrandbits(64), ns.single_threaded())
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    hook, child_draw, builtin_again, parent_draw, single = out.stdout.replace(";", " ").split()
    assert (hook, builtin_again, single) == ("hook", "True", "True"), out.stdout
    assert child_draw != parent_draw, "the child kept the parent's random state"


def test_a_worker_can_prepare_pytest_at_its_first_pytest_job(isolated):
    # serve's workers: stdin programs run in a light zygote until the first pytest job arrives,
    # which then gets the same verdict (coverage included) as from a worker warmed at start-up.
    probe = Job(id="probe", solution="import sys\nprint('_pytest' in sys.modules)\n", stdin_tests=[StdinCase("")])
    rich = Job(id="rich", solution=SOL, test=RICH_TEST)

    async def main():
        async with SandboxPool(SandboxConfig(workers=1, warm_pytest_at_start=False)) as pool:
            return [await pool.verify(job) for job in (probe, rich, probe)]

    before, v, after = asyncio.run(main())
    assert (before.status, before.stdout, after.status, after.stdout) == ("pass", "False\n", "pass", "True\n")
    assert v.status == "pass" and v.coverage == 100.0 and len(v.tests) == 10, (v.reason, v.tests)


def test_numpy_is_imported_by_the_zygote_only_once_a_job_names_it(isolated):
    # The module name is spelled in pieces where a job must not name it.
    probe = "import sys\n\ndef test_loaded():\n    assert ('num' + 'py' in sys.modules) is {}\n"
    plain = Job(id="plain", solution="x = 1\n", test=probe.format(False), coverage=False)
    uses = Job(id="uses", solution="import numpy as np\n\ndef total(n):\n    return int(np.arange(n).sum())\n",
               test="from solution import total\n\ndef test_total():\n    assert total(4) == 6\n")
    # numpy's import grows the address space by ~125 MB (BLAS buffers): the memory limit must be
    # counted from the zygote's new baseline, or this 200 MB buffer would not fit under 256 MB.
    after = Job(id="after", solution="x = 1\n", limits=Limits(wall_s=60, memory_mb=256), coverage=False,
                test=probe.format(True) + "\ndef test_room():\n    assert len(bytearray(200 * 2**20)) == 200 * 2**20\n")

    async def main():
        async with SandboxPool(SandboxConfig(workers=1)) as pool:
            return [await pool.verify(job) for job in (plain, uses, after)]

    for v in asyncio.run(main()):
        assert v.status == "pass", (v.id, v.reason, v.tests)


def test_worker_killed_mid_job_is_replaced_and_the_job_retried(isolated):
    async def main():
        async with SandboxPool(SandboxConfig(workers=1)) as pool:
            victim = pool.pids()[0]
            job = Job(id="slow", solution="x = 1\n", test="import time\ndef test_a():\n    time.sleep(1.5)\n")
            task = asyncio.create_task(pool.verify(job))
            await asyncio.sleep(0.7)
            os.killpg(victim, signal.SIGKILL)
            verdict = await task
            return verdict, pool.restarts, pool.retries, pool.pids()

    verdict, restarts, retries, pids = asyncio.run(main())
    assert verdict.status == "pass" and restarts == 1 and retries == 1 and len(pids) == 1
    assert zombie_children() == []


def test_cancelling_pool_start_up_leaves_no_worker_behind(isolated):
    async def main():
        pool = SandboxPool(SandboxConfig(workers=2))
        task = asyncio.create_task(pool.start())
        # Cancel once worker processes exist (seen in the process tree) but before they are warm.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not _zygotes_under(os.getpid()) and loop.time() < deadline:  # noqa: ASYNC110 - polls the process tree
            await asyncio.sleep(0.005)
        started = _zygotes_under(os.getpid())
        assert started and not task.done(), "no worker process to catch before the pool was warm"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Checked while this loop still runs: asyncio itself kills leftover children only when
        # the loop closes, which would hide a leak. The workers' namespaces die with bwrap.
        deadline = loop.time() + 5
        while _zygotes_under(os.getpid()) and loop.time() < deadline:  # noqa: ASYNC110 - polls the process tree
            await asyncio.sleep(0.05)
        return started, _zygotes_under(os.getpid())

    started, left = asyncio.run(main())
    assert started and left == [], left
    assert zombie_children() == []


def _zygotes_under(pid: int) -> list[int]:
    """PIDs of sandbox zygotes (python -m sandbox.worker) below process `pid`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            todo.append(c)
            try:
                argv = open(f"/proc/{c}/cmdline", "rb").read().split(b"\0")
                if b"sandbox.worker" in argv and not argv[0].endswith(b"bwrap"):
                    found.append(c)
            except OSError:
                pass
    return found


def test_hung_worker_is_replaced_and_the_job_retried(isolated):
    async def main():
        async with SandboxPool(SandboxConfig(workers=1, grace_s=0.5)) as pool:
            zygotes = _zygotes_under(pool.pids()[0])
            assert zygotes
            for pid in zygotes:
                os.kill(pid, signal.SIGSTOP)  # a worker that never answers
            # wall 3 s + grace 0.5 s: the stopped worker is given up on after 3.5 s; the retry on a
            # fresh worker then has 3 s for a trivial test, plenty even on a loaded machine.
            job = Job(id="j", solution="x = 1\n", test="def test_a():\n    pass\n", limits=Limits(wall_s=3))
            verdict = await pool.verify(job)
            return verdict, pool.restarts, pool.retries

    verdict, restarts, retries = asyncio.run(main())
    assert verdict.status == "pass" and restarts == 1 and retries == 1


def test_a_job_whose_worker_dies_twice_gets_sandbox_error(isolated):
    async def main():
        async with SandboxPool(SandboxConfig(workers=1)) as pool:
            job = Job(id="twice", solution="x = 1\n", test="import time\ndef test_a():\n    time.sleep(2)\n")
            task = asyncio.create_task(pool.verify(job))
            killed = []
            deadline = asyncio.get_running_loop().time() + 60  # a pool that stops retrying must not hang us
            while len(killed) < 2 and not task.done():
                assert asyncio.get_running_loop().time() < deadline, f"killed {len(killed)} workers in 60 s"
                pids = pool.pids()
                if pids and pids[0] not in killed and pool.busy:
                    await asyncio.sleep(0.5)
                    os.killpg(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                await asyncio.sleep(0.05)
            verdict = await task
            counts = (len(killed), pool.retries, pool.restarts)
            after = await pool.verify(Job(id="after", solution="x = 1\n", test="def test_a():\n    pass\n"))
            return verdict, after, counts

    verdict, after, (killed, retries, restarts) = asyncio.run(main())
    # Two workers died under the same job: it was retried once, on a fresh worker, then given up.
    assert (killed, retries, restarts) == (2, 1, 1)
    assert verdict.status == "sandbox_error" and "failed twice" in verdict.reason
    assert is_bwrap_label(verdict.isolation)
    assert after.status == "pass"


def test_verify_waits_for_a_free_worker(isolated):
    async def main():
        async with SandboxPool(SandboxConfig(workers=2)) as pool:
            job = Job(id="s", solution="x = 1\n", test="import time\ndef test_a():\n    time.sleep(0.5)\n")
            peak = 0

            async def watch():
                nonlocal peak
                while True:
                    peak = max(peak, pool.busy)
                    await asyncio.sleep(0.01)

            watcher = asyncio.create_task(watch())
            verdicts = await asyncio.gather(*(pool.verify(job) for _ in range(6)))
            watcher.cancel()
            return verdicts, peak

    verdicts, peak = asyncio.run(main())
    assert all(v.status == "pass" for v in verdicts) and peak == 2


def test_without_isolation_verdicts_say_so():
    (v,) = verify_batch([Job(solution="x = 1\n", test="def test_a():\n    pass\n")],
                        SandboxConfig(workers=1, isolation="none"))
    assert v.status == "pass" and v.isolation == "none"
