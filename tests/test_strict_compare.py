"""Strict comparisons: what the rewritten asserts accept and refuse (pure functions, no sandbox)."""

import ast
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest

from sandbox.worker.strict_unsafe import HELPER, rewrite_strict, strict_compare


class Anything:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = object.__hash__


@dataclass
class Point:
    x: int


def test_lying_objects_are_refused_only_when_they_would_make_the_assert_pass():
    with pytest.raises(AssertionError, match="strict comparison: Anything == int"):
        strict_compare(Anything(), 3, "==")
    with pytest.raises(AssertionError, match="Anything.__ne__"):
        strict_compare(3, Anything(), "!=")
    assert strict_compare(Point(1), (1,), "==") is False  # an honest failure stays a failure


def test_ordinary_comparisons_are_unchanged():
    assert strict_compare(1, 1.0, "==") and strict_compare(Fraction(1, 2), 0.5, "==")
    assert strict_compare([1, 2], [1, 2], "==") and strict_compare("a", "b", "!=")
    assert strict_compare(Point(1), Point(1), "==")  # same type: its own __eq__ is trusted
    assert list(strict_compare(np.array([1, 2]), [1, 2], "==")) == [True, True]  # C types: numpy decides


def test_the_rewrite_binds_the_helper_after_docstring_and_future_imports():
    source = '"""doc"""\nfrom __future__ import annotations\nfrom solution import *\n\ndef test_a():\n' \
             '    assert f(1) == 2 and g() != 3\n    assert 1 < 2 < 3\n'
    tree = ast.parse(source)
    rewrite_strict(tree)
    code = ast.unparse(tree)
    lines = code.splitlines()
    assert lines[1] == "from __future__ import annotations"
    assert lines[2] == f"from sandbox.worker.strict_unsafe import strict_compare as {HELPER}"
    assert f"{HELPER}(f(1), 2, '==') and {HELPER}(g(), 3, '!=')" in code
    assert "assert 1 < 2 < 3" in code  # chained comparisons are left as they are
