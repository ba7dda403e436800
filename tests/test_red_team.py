"""Our own red-team corpus: one or more attacks per class of issue 23, each a job run in the real sandbox.

Classes: (1) poisoning the worker for later jobs, (2) forging a pass from solution code inside
the test process, (3) a stdin program reading its expected output, (4) one job reaching another's
data (inherited memory, IPC objects, files), (5) the kernel's surface (seccomp), (6) breaking the
worker for the next, innocent job. `serve`'s input validation (7) is in tests/test_serve.py.

Every job here runs through the same pool as real work. The module runs in CI as root and, for
the sandbox tests, again as an ordinary user (see .ci/run): bubblewrap behaves differently for each.
"""

from __future__ import annotations

import textwrap

import pytest

from sandbox import Job, Limits, SandboxConfig, verify_batch
from sandbox.protocol import StdinCase

LIMITS = Limits(wall_s=20, memory_mb=512)
SOL = "def add(a, b):\n    return a + b\n"
TESTS = ("from solution import *\n\n"
         "def test_small():\n    assert add(1, 2) == 3\n\n"
         "def test_large():\n    assert add(10, 20) == 30\n\n"
         "def test_negative():\n    assert add(-1, -2) == -3\n")
CONFIG_FINDER = (
    "import sys\n"
    "def _config():\n"
    "    for finder in sys.meta_path:\n"
    "        if getattr(finder, 'config', None) is not None:\n"
    "            return finder.config\n")


def run(*jobs: Job, workers: int = 1, **config) -> list:
    return verify_batch(list(jobs), SandboxConfig(workers=workers, **config))


def wrong(body: str) -> str:
    """A wrong `add` whose module also carries the attack."""
    return textwrap.dedent(body) + "\ndef add(a, b):\n    _attack()\n    return 0\n"


FORGERIES = {
    "pytest_exit_zero": "import pytest\ndef _attack():\n    pytest.exit('done', returncode=0)\n",
    "skip_from_solution": "import pytest\ndef _attack():\n    pytest.skip('not today')\n",
    "xfail_from_solution": "import pytest\ndef _attack():\n    pytest.xfail('known')\n",
    "plugin_answers_pyfunc_call": CONFIG_FINDER + (
        "class _Plugin:\n"
        "    def pytest_pyfunc_call(self, pyfuncitem):\n"
        "        return True\n"
        "_config().pluginmanager.register(_Plugin(), 'helper')\n"
        "def _attack():\n    pass\n"),
    "plugin_rewrites_exit_status": CONFIG_FINDER + (
        "import pytest\n"
        "class _Plugin:\n"
        "    @pytest.hookimpl(trylast=True)\n"
        "    def pytest_sessionfinish(self, session, exitstatus):\n"
        "        session.exitstatus = 0\n"
        "_config().pluginmanager.register(_Plugin(), 'helper')\n"
        "def _attack():\n    pass\n"),
    "plugin_deselects_tests": CONFIG_FINDER + (
        "class _Plugin:\n"
        "    def pytest_collection_modifyitems(self, items):\n"
        "        del items[1:]\n"
        "_config().pluginmanager.register(_Plugin(), 'helper')\n"
        "def _attack():\n    pass\n"
        "def add(a, b):\n    return 3\n"),  # right for the first test only
    "swap_test_code": (
        "import sys\n"
        "def _attack():\n"
        "    module = sys.modules['test_solution']\n"
        "    for name, fn in list(vars(module).items()):\n"
        "        if name.startswith('test'):\n"
        "            try:\n"
        "                fn.__code__ = (lambda: None).__code__\n"
        "            except Exception:\n"
        "                pass\n"),
    "token_from_frames": (
        "import os, struct, sys\n"
        "import msgspec\n"
        "def _attack():\n"
        "    found, f = [], sys._getframe()\n"
        "    while f is not None:\n"
        "        for v in list(f.f_locals.values()):\n"
        "            for x in (v if isinstance(v, (list, tuple)) else [v]):\n"
        "                if isinstance(x, bytes) and len(x) == 16:\n"
        "                    found.append(x)\n"
        "        f = f.f_back\n"
        "    names = [n for n in vars(sys.modules['test_solution']) if n.startswith('test')]\n"
        "    for token in found:\n"
        "        events = [{'type': 'collected', 'count': len(names)}]\n"
        "        events += [{'type': 'test', 'test': {'nodeid': 'test_solution.py::' + n, 'outcome': 'passed'}}\n"
        "                   for n in names]\n"
        "        events.append({'type': 'done', 'exit_code': 0})\n"
        "        for e in events:\n"
        "            body = msgspec.msgpack.encode(e)\n"
        "            os.write(3, struct.pack('>I', len(token) + len(body)) + token + body)\n"
        "    os._exit(0)\n"),
    "token_from_gc": (
        "import gc, os\n"
        "def _attack():\n"
        "    for obj in gc.get_objects():\n"
        "        pass\n"
        "    os._exit(0)\n"),
    "ctypes_memory": (
        "import ctypes\n"
        "def _attack():\n"
        "    ctypes.string_at(id(_attack), 64)\n"
        "    ctypes.memset(0, 0, 0)\n"),
    "proc_self_mem": (
        "import os\n"
        "def _attack():\n"
        "    fd = os.open('/proc/self', os.O_RDONLY)\n"
        "    os.open('mem', os.O_RDWR, dir_fd=fd)\n"),
    "new_audit_hook": (
        "import sys, os\n"
        "def _seen(event, args):\n"
        "    if event == 'kodcode.sandbox.event':\n"
        "        os._exit(0)\n"
        "sys.addaudithook(_seen)\n"
        "def _attack():\n    pass\n"),
    "trace_function": (
        "import sys\n"
        "def _tracer(frame, event, arg):\n"
        "    return _tracer\n"
        "def _attack():\n"
        "    sys.settrace(_tracer)\n"),
    "patch_sandbox_reporter": (
        "import sandbox.worker.pytest_unsafe as p\n"
        "p.Reporter.pytest_runtest_logreport = lambda self, report: None\n"
        "def _attack():\n    pass\n"),
    "call_reporter_with_fake_report": CONFIG_FINDER + (
        "import os\n"
        "def _attack():\n"
        "    from _pytest.reports import TestReport\n"
        "    cfg = _config()\n"
        "    reporter = next(p for p in cfg.pluginmanager.get_plugins() if type(p).__name__ == 'Reporter')\n"
        "    for name in ('test_small', 'test_large', 'test_negative'):\n"
        "        for when in ('setup', 'call', 'teardown'):\n"
        "            r = TestReport('test_solution.py::' + name, ('x', 0, name), {}, 'passed', None, when)\n"
        "            cfg.hook.pytest_runtest_logreport(report=r)\n"
        "            reporter.pytest_runtest_logreport(r)\n"
        "    os._exit(0)\n"),
}


@pytest.fixture(scope="module")
def forged(isolated):
    jobs = [Job(id=name, solution=wrong(body), test=TESTS, limits=LIMITS) for name, body in FORGERIES.items()]
    jobs.append(Job(id="honest", solution=SOL, test=TESTS, limits=LIMITS))
    return {v.id: v for v in run(*jobs, workers=2)}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_wrong_solution_cannot_make_itself_pass(forged, name):
    v = forged[name]
    assert v.status != "pass", (v.status, v.reason, [t.outcome for t in v.tests])
    assert v.status != "sandbox_error", v.reason


def test_the_honest_solution_still_passes(forged):
    assert forged["honest"].status == "pass", forged["honest"].reason


def test_a_skip_written_in_the_test_file_is_still_allowed(isolated):
    test = TESTS + "\nimport pytest\n\n@pytest.mark.skip(reason='later')\ndef test_later():\n    assert 0\n"
    (v,) = run(Job(id="marked", solution=SOL, test=test, limits=LIMITS))
    assert v.status == "pass", v.reason


# ---- (3) stdin: the program never holds the expected output -------------------------------

SEARCH_MEMORY = textwrap.dedent('''
    import gc, re, sys
    pattern = re.compile("EXPECTED" + "-[0-9a-z]{6}")  # never spelled whole here: the source must not match
    found = set()
    def look(value):
        if isinstance(value, str):
            found.update(pattern.findall(value))
    for obj in gc.get_objects():
        for value in (list(vars(obj).values()) if hasattr(obj, "__dict__") else [obj]):
            look(value)
    f = sys._getframe()
    while f is not None:
        for value in list(f.f_locals.values()):
            look(value)
        f = f.f_back
    import ctypes
    raw = re.compile(pattern.pattern.encode())
    with open("/proc/self/maps") as maps:  # every readable page of this process, read directly
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "r" not in fields[1] or end - start > 1 << 28 or (len(fields) > 5 and fields[5].startswith("[v")):
                continue
            found.update(m.decode() for m in raw.findall(ctypes.string_at(start, end - start)))
    print(sorted(found)[0] if found else "nothing")
''')



def test_a_stdin_program_cannot_find_its_expected_output(isolated):
    cases = [StdinCase("1\n", "EXPECTED-abc123\n"), StdinCase("2\n", "EXPECTED-def456\n")]
    (v,) = run(Job(id="peek", solution=SEARCH_MEMORY, stdin_tests=cases, limits=LIMITS, coverage=False))
    assert v.status == "fail", v.reason
    assert all("EXPECTED-" not in t.message.split("got")[-1] for t in v.tests), v.tests


# ---- (4) jobs reach each other ------------------------------------------------------------

def test_a_job_finds_nothing_of_the_previous_jobs_data_in_its_memory(isolated):
    """The zygote never holds job data, so a later job's inherited memory has no earlier tenant's bytes."""
    earlier = [
        Job(id="tenant-pytest", solution="SECRET = 'EXPECTED-tnt001'\n",
            test="from solution import *\ndef test_it():\n    print('EXPECTED-tnt002')\n    assert SECRET\n"),
        Job(id="tenant-stdin", solution="print(input())", stdin_tests=[StdinCase("EXPECTED-tnt003\n",
                                                                                   "EXPECTED-tnt003\n")]),
    ]
    reader = Job(id="reader", solution=SEARCH_MEMORY, stdin_tests=[StdinCase("")], limits=LIMITS, coverage=False)
    # The control: the same search finds what is in its own process (its spec, with this input).
    control = Job(id="control", solution=SEARCH_MEMORY, stdin_tests=[StdinCase("EXPECTED-ctl001")], limits=LIMITS)
    results = run(*earlier, reader, control)
    assert results[3].stdout.strip() == "EXPECTED-ctl001", (results[3].stdout, results[3].stderr[-500:])
    assert [v.status for v in results[:2]] == ["pass", "pass"], [v.reason for v in results]
    assert results[2].stdout.strip() == "nothing", (results[2].stdout, results[2].stderr[-1500:], results[2].reason)


IPC_WRITER = textwrap.dedent('''
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    sem = libc.semget(0x4b4f44, 1, 0o1666)   # IPC_CREAT | 0666
    shm = libc.shmget(0x4b4f45, 1 << 20, 0o1666)
    print("sem", sem, "shm", shm, os.strerror(ctypes.get_errno()))
    open("/dev/shm/leftover", "w").write("x")
    open("/tmp/leftover", "w").write("x")
''')
IPC_READER = textwrap.dedent('''
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    print("sem", libc.semget(0x4b4f44, 1, 0), os.path.exists("/dev/shm/leftover"), os.path.exists("/tmp/leftover"))
''')


def test_ipc_objects_and_files_die_with_their_job(isolated):
    writer, reader = run(Job(id="w", solution=IPC_WRITER, stdin_tests=[StdinCase("")], limits=LIMITS),
                         Job(id="r", solution=IPC_READER, stdin_tests=[StdinCase("")], limits=LIMITS))
    assert writer.stdout.startswith("sem ") and " shm -1 " in writer.stdout, writer.stdout  # shmget: seccomp
    assert int(writer.stdout.split()[1]) >= 0, writer.stdout  # semaphores work within a job
    assert reader.stdout.strip() == "sem -1 False False", reader.stdout


# ---- (5) the kernel's surface -------------------------------------------------------------

SYSCALLS = textwrap.dedent('''
    import ctypes, errno, os
    libc = ctypes.CDLL(None, use_errno=True)
    def call(nr, *args):
        r = libc.syscall(nr, *args)
        return errno.errorcode.get(ctypes.get_errno(), "?") if r == -1 else "allowed"
    params = ctypes.create_string_buffer(120)
    print("io_uring_setup", call(425, 1, params))
    print("keyctl", call(250, 0, 0, 0, 0, 0))
    print("userfaultfd", call(323, 0))
    print("unshare_user", call(272, 0x10000000))
    print("unshare_ns", call(272, 0x00020000))
    print("bpf", call(321, 0, 0, 0))
    print("ptrace", call(101, 16, 1, 0, 0))
    print("mount", call(165, b"none", b"/tmp", b"tmpfs", 0, 0))
    try:
        os.memfd_create("x")
        print("memfd_create allowed")
    except OSError as e:
        print("memfd_create", errno.errorcode[e.errno])
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    import threading
    t = threading.Thread(target=lambda: None)
    t.start(); t.join()
    print("thread ok")
''')


def test_the_seccomp_filter_blocks_escape_calls_and_keeps_ordinary_ones(isolated):
    (v,) = run(Job(id="sys", solution=SYSCALLS, stdin_tests=[StdinCase("")], limits=LIMITS))
    seen = dict(line.rsplit(" ", 1) for line in v.stdout.strip().splitlines())
    assert seen == {"io_uring_setup": "EPERM", "keyctl": "EPERM", "userfaultfd": "EPERM", "unshare_user": "EPERM",
                    "unshare_ns": "EPERM", "bpf": "EPERM", "ptrace": "EPERM", "mount": "EPERM",
                    "memfd_create": "EPERM", "fork": "7", "thread": "ok"}, v.stdout + v.stderr


# ---- (1) and (6): the worker stays clean for the next job -------------------------------

POISON = textwrap.dedent('''
    import os
    hits = []
    for path in ("/kodcode/pytest.py", "/kodcode/sitecustomize.py", "/sitecustomize.py", "/etc/evil",
                 "/sandbox/pytest.py", "/usr/lib/x"):
        try:
            with open(path, "w") as f:
                f.write("raise SystemExit(0)\\n")
            hits.append(path)
        except OSError:
            pass
    # A tree that a recursive wipe cannot handle: thousands deep, no permissions, a FIFO.
    fd = os.open(".", os.O_RDONLY)
    for _ in range(3000):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.mkfifo("fifo", dir_fd=fd)
    os.chmod("d", 0)
    print("planted", hits)
''')


def test_a_job_cannot_poison_its_worker_or_break_the_next_job(isolated):
    # serve's set-up: pytest prepared at the first pytest job, after the poisoner ran.
    poison, after, again = run(
        Job(id="poison", solution=POISON, stdin_tests=[StdinCase("")], limits=LIMITS),
        Job(id="after", solution=SOL, test=TESTS, limits=LIMITS),
        Job(id="again", solution=POISON, stdin_tests=[StdinCase("")], limits=LIMITS),
        warm_pytest_at_start=False)
    assert poison.stdout.strip() == "planted ['/sandbox/pytest.py']", poison.stdout + poison.stderr
    assert after.status == "pass", after.reason
    assert again.status == "pass", again.reason  # its own area started empty: nothing was left to trip over


def test_without_isolation_the_wipe_survives_a_hostile_tree(tmp_path):
    """isolation='none' shares one directory between jobs: the wipe must not fail on what a job leaves."""
    poison, after = run(Job(id="poison", solution=POISON, stdin_tests=[StdinCase("")], limits=LIMITS),
                        Job(id="after", solution=SOL, test=TESTS, limits=LIMITS), isolation="none")
    assert after.status == "pass", after.reason


# ---- strict comparisons (opt-in) and their bypasses ----------------------------------------

STRICT_BYPASSES = {
    "int_subclass": "class _N(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
                    "def add(a, b):\n    return _N(0)\n",
    "registered_number": ("import numbers\nclass _N:\n    def __eq__(self, other):\n        return True\n"
                          "numbers.Number.register(_N)\ndef add(a, b):\n    return _N()\n"),
    "eq_bound_to_a_builtin": ("import functools\nclass _A:\n    __eq__ = functools.partialmethod(lambda self, o: True)\n"
                              "def add(a, b):\n    return _A()\n"),
    "helper_replaced": ("import sys\nsys.modules['test_solution']._kodcode_strict_compare = lambda a, b, op: True\n"
                        "def add(a, b):\n    return 0\n"),
    "helper_internals_patched": ("import sandbox.worker.strict_unsafe as s\n"
                                 "s.strict_compare.__globals__['_HEAPTYPE'] = 0\n"
                                 "class _A:\n    def __eq__(self, o):\n        return True\n"
                                 "def add(a, b):\n    return _A()\n"),
}


def test_strict_mode_refuses_lying_comparisons_however_they_are_dressed(isolated):
    jobs = [Job(id=name, solution=body, test=TESTS, limits=LIMITS) for name, body in STRICT_BYPASSES.items()]
    jobs.append(Job(id="honest", solution=SOL, test=TESTS, limits=LIMITS))
    jobs.append(Job(id="fraction", solution="from fractions import Fraction\ndef add(a, b):\n    return Fraction(a + b)\n",
                    test=TESTS, limits=LIMITS))
    verdicts = {v.id: v for v in run(*jobs, strict_compare=True)}
    wrong = {n: (v.status, v.reason) for n, v in verdicts.items() if (v.status == "pass") != (n in ("honest", "fraction"))}
    assert wrong == {}
