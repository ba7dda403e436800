"""Checks that sandbox/worker/pytest_speedups.py gives exactly what pytest's own internals give.

Run by tests/test_sandbox_speedups.py as `python -m tests.speedups_check NAME`, in a fresh
interpreter: the checks patch pytest's modules, and they parse hundreds of modules with `ast`,
which CPython 3.11 can fail with a spurious "AST constructor recursion depth mismatch" while other
threads run (python/cpython#106905), as they do in a test process that has started Ray. A failed
check raises AssertionError (exit code 1, traceback on stderr).

The corpus is the real KodCode test files in tests/data, whose asserts are what the rewriter sees
in production, plus shapes the corpus may lack.
"""

from __future__ import annotations

import ast
import functools
import sys

from _pytest._code import source
from _pytest.assertion import rewrite

from sandbox.worker import pytest_speedups
from tests.conftest import ROOT, read_jsonl


def _parses(src: str) -> bool:
    try:
        ast.parse(src)
    except SyntaxError:  # some recorded test files are broken; the rewriter never sees those
        return False
    return True


@functools.cache
def tests() -> list[str]:
    """The corpus's test files (parsed only when a check runs, never on import)."""
    rows = read_jsonl(ROOT / "tests/data/kodcode_algorithm_trials.jsonl")
    return [row["test"] for row in rows if _parses(row["test"])]

# Assert messages, walrus, chained and boolean comparisons, calls with keywords and starred
# arguments, attribute access, comprehensions, an assert inside a class.
EXTRA = '''
import math

class TestThings:
    def test_many(self):
        xs = [1, 2, 3]
        assert (n := len(xs)) == 3, f"got {n}"
        assert 0 < xs[0] <= 1 < xs[1] and not xs[2] == 4 or math.isnan(float("nan"))
        assert max(*xs, key=lambda v: -v) == 1, "keywords and starred"
        assert all(x > 0 for x in xs) and {x for x in xs} == {1, 2, 3}
        assert xs.__len__() == 3
'''


def rewritten(src: str) -> str:
    tree = ast.parse(src)
    rewrite.rewrite_asserts(tree, src.encode(), "test_solution.py", None)
    compile(tree, "test_solution.py", "exec")  # positions complete enough to compile
    return ast.dump(tree, include_attributes=True)


def corpus() -> None:
    assert len(tests()) > 200 and sum(src.count("assert ") for src in tests()) > 1000, len(tests())


def traverse_node() -> None:
    original = rewrite.traverse_node
    assert not hasattr(original, "__wrapped__") and original is not pytest_speedups.traverse_node
    for src in tests()[:60] + [EXTRA]:
        tree = ast.parse(src)
        assert pytest_speedups.traverse_node(tree) == list(original(tree))


def location_fix() -> None:
    if "getattr" not in rewrite.AssertionRewriter.visit_Assert.__code__.co_names:
        # pytest 8.0's loop copies the assert's location onto every node, unlike the later loop the
        # fix was written for: the fix must stay out (the sandbox then runs pytest's own loop).
        problem = pytest_speedups.install_location_fix(rewrite)
        assert problem and "not the version" in problem, problem
        assert not hasattr(rewrite.AssertionRewriter.visit_Assert, "__wrapped__")
        return
    sources = tests() + [EXTRA]
    expected = [rewritten(src) for src in sources]
    rewrite.traverse_node = pytest_speedups.traverse_node
    assert pytest_speedups.install_location_fix(rewrite) is None
    assert hasattr(rewrite.AssertionRewriter.visit_Assert, "__wrapped__")
    for src, want in zip(sources, expected, strict=True):
        assert rewritten(src) == want, src
    # Outside visit_Assert, traverse_node still returns the nodes.
    tree = ast.parse(EXTRA)
    assert rewrite.traverse_node(tree) == pytest_speedups.traverse_node(tree)


def location_fix_stays_out() -> None:
    def visit_Assert(self, assert_):  # noqa: ANN001, ANN202, N802 - a pytest that fixes locations another way
        return [assert_]

    rewrite.AssertionRewriter.visit_Assert = visit_Assert
    problem = pytest_speedups.install_location_fix(rewrite)
    assert problem and "not the version" in problem, problem
    assert rewrite.AssertionRewriter.visit_Assert is visit_Assert


def statement_ranges() -> None:
    original = source.get_statement_startend2
    original = getattr(original, "__wrapped__", original)
    fast = pytest_speedups.memoised_startend(original)
    for src in (tests()[0], tests()[1], EXTRA):
        tree = ast.parse(src)
        lines = range(len(src.splitlines()))
        for _ in range(2):  # the second round is answered from the memo
            assert [fast(n, tree) for n in lines] == [original(n, tree) for n in lines]
    other = ast.parse("x = 1\n\n\ny = 2\n")  # another tree at the same lines: not confused with the last
    assert fast(3, other) == original(3, other)


CHECKS = {f.__name__: f for f in (corpus, traverse_node, location_fix, location_fix_stays_out, statement_ranges)}

if __name__ == "__main__":
    CHECKS[sys.argv[1]]()
    print("ok")
