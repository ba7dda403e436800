"""sandbox/worker/pytest_speedups.py: each cheaper pytest internal gives exactly what pytest's own gives.

Checked on the real KodCode test files in tests/data, whose asserts are what the rewriter sees
in production. Everything here patches pytest in this process only through monkeypatch, so the
originals are back once each test ends.
"""

import ast

import pytest
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


TESTS = [row["test"] for row in read_jsonl(ROOT / "tests/data/kodcode_algorithm_trials.jsonl") if _parses(row["test"])]
# Shapes the corpus may lack: assert messages, walrus, chained and boolean comparisons, calls with
# keywords and starred arguments, attribute access, comprehensions, an assert inside a class.
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


def test_the_corpus_is_real_and_has_asserts():
    assert len(TESTS) > 200 and sum(src.count("assert ") for src in TESTS) > 1000


def test_traverse_node_yields_pytests_nodes_in_pytests_order():
    original = rewrite.traverse_node
    assert not hasattr(original, "__wrapped__") and original is not pytest_speedups.traverse_node
    for src in TESTS[:60] + [EXTRA]:
        tree = ast.parse(src)
        assert pytest_speedups.traverse_node(tree) == list(original(tree))


def test_the_location_fix_rewrites_every_assert_exactly_as_pytest_does(monkeypatch):
    sources = TESTS + [EXTRA]
    expected = [rewritten(src) for src in sources]
    monkeypatch.setattr(rewrite, "traverse_node", pytest_speedups.traverse_node)
    monkeypatch.setattr(rewrite.AssertionRewriter, "visit_Assert", rewrite.AssertionRewriter.visit_Assert)
    assert pytest_speedups.install_location_fix(rewrite) is None
    assert hasattr(rewrite.AssertionRewriter.visit_Assert, "__wrapped__")
    for src, want in zip(sources, expected, strict=True):
        assert rewritten(src) == want
    # Outside visit_Assert, traverse_node still returns the nodes.
    tree = ast.parse(EXTRA)
    assert rewrite.traverse_node(tree) == pytest_speedups.traverse_node(tree)


def test_the_location_fix_stays_out_when_pytests_code_is_not_the_expected_one(monkeypatch):
    def visit_Assert(self, assert_):  # noqa: N802 - a pytest that no longer fixes locations this way
        return [assert_]

    monkeypatch.setattr(rewrite.AssertionRewriter, "visit_Assert", visit_Assert)
    monkeypatch.setattr(rewrite, "traverse_node", rewrite.traverse_node)
    problem = pytest_speedups.install_location_fix(rewrite)
    assert problem and "not the version" in problem
    assert rewrite.AssertionRewriter.visit_Assert is visit_Assert


@pytest.mark.parametrize("src", [TESTS[0], TESTS[1], EXTRA])
def test_memoised_statement_ranges_match_pytests(src):
    original = source.get_statement_startend2
    original = getattr(original, "__wrapped__", original)
    fast = pytest_speedups.memoised_startend(original)
    tree = ast.parse(src)
    lines = range(len(src.splitlines()))
    for _ in range(2):  # the second round is answered from the memo
        assert [fast(n, tree) for n in lines] == [original(n, tree) for n in lines]
    other = ast.parse("x = 1\n\n\ny = 2\n")  # another tree at the same lines: not confused with the first
    assert fast(3, other) == original(3, other)
