"""Flaky tests, found and labelled: a passing trial reruns in fresh interpreters with other
hash seeds and test orders; any disagreement gives the status `flaky`."""

import asyncio
import textwrap

from sandbox import Job, SandboxConfig, SandboxPool

WORDS = ["apple", "banana", "cherry", "date", "elder", "fig", "grape", "honeydew"]
SET_LITERAL = "{" + ", ".join(map(repr, WORDS)) + "}"  # the same literal in both jobs: same insertion order

ORDER_DEPENDENT = textwrap.dedent('''
    STATE = []

    def test_1_first():
        STATE.append(1)

    def test_2_second():
        assert STATE == [1]

    def test_3_third():
        assert STATE == [1]
''')

STABLE = "from solution import f\n\ndef test_f():\n    assert f() == 1\n\ndef test_g():\n    assert f() + 1 == 2\n"


def test_set_order_and_test_order_dependence_are_labelled_flaky(isolated):
    async def main():
        # One worker: the warm runs share its hash seed, which the first job reads.
        async with SandboxPool(SandboxConfig(workers=1, flaky_reruns=4)) as pool:
            probe = await pool.verify(Job(id="probe", solution="x = 1\n", test=(
                f"def test_order():\n    print('ORDER=' + ','.join({SET_LITERAL}))\n"
                "    assert False\n")))
            order = probe.stdout.split("ORDER=")[1].split()[0].split(",")
            set_test = f"def test_set_order():\n    assert list({SET_LITERAL}) == {order!r}\n"
            set_order = await pool.verify(Job(id="set-order", solution="x = 1\n", test=set_test))
            test_order = await pool.verify(Job(id="test-order", solution="x = 1\n", test=ORDER_DEPENDENT))
            stable = await pool.verify(Job(id="stable", solution="def f():\n    return 1\n", test=STABLE))
            failing = await pool.verify(Job(id="failing", solution="def f():\n    return 2\n", test=STABLE))
            return probe, set_order, test_order, stable, failing, pool.flaky

    probe, set_order, test_order, stable, failing, flaky = asyncio.run(main())
    assert probe.status == "fail" and probe.reruns == []  # failing trials are not rerun
    assert set_order.status == "flaky", (set_order.reason, set_order.reruns)
    assert len(set_order.reruns) == 4 and "fail" in set_order.reruns and "hash seeds" in set_order.reason
    assert test_order.status == "flaky", (test_order.reason, test_order.reruns)
    assert "fail" in test_order.reruns
    assert stable.status == "pass" and stable.reruns == ["pass"] * 4 and stable.coverage == 100.0
    assert failing.status == "fail" and failing.reruns == []
    assert flaky == 2


def test_a_rerun_keeps_the_sandbox_limits_and_isolation(isolated):
    # The rerun is a fresh interpreter, still inside the job's namespaces: no network, no host files.
    test = textwrap.dedent('''
        import os, socket
        def test_a():
            assert not os.path.exists("/work") and not os.path.exists("/root/.pyenv/shims")
            try:
                socket.create_connection(("1.1.1.1", 53), timeout=1)
                reached = True
            except OSError:
                reached = False
            assert not reached
            assert os.environ.get("PYTHONHASHSEED", "") not in ("", "0", "random")
    ''')

    async def main():
        async with SandboxPool(SandboxConfig(workers=1, flaky_reruns=2)) as pool:
            return await pool.verify(Job(id="limits", solution="x = 1\n", test=test))

    v = asyncio.run(main())
    # the warm run has no PYTHONHASHSEED in its environment, so it fails that last assert: not rerun
    assert v.status == "fail" and v.reruns == []
    only_rerun_checks = test.replace('assert os.environ.get("PYTHONHASHSEED", "") not in ("", "0", "random")',
                                     "pass")

    async def main2():
        async with SandboxPool(SandboxConfig(workers=1, flaky_reruns=2)) as pool:
            return await pool.verify(Job(id="limits2", solution="x = 1\n", test=only_rerun_checks))

    v2 = asyncio.run(main2())
    assert v2.status == "pass" and v2.reruns == ["pass", "pass"], v2.reason
