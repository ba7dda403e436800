"""stdin/stdout comparison rules (sandbox/stdio.py), each rule with its edge."""

import math

import pytest

from sandbox.stdio import _token_equal, normalise, outputs_match


def test_normalise():
    assert normalise("a\r\nb\rc\n") == ["a", "b", "c"]
    assert normalise("a  \t\nb \n\n\n") == ["a", "b"]
    assert normalise("  a\n\nb") == ["  a", "", "b"]
    assert normalise("") == [] and normalise("\n\n") == []


@pytest.mark.parametrize("got,want,equal", [
    ("3\r\n", "3", True), ("3", "3\n\n", True), ("a  \nb\n\n\n", "a\nb", True),
    (" a", "a", False), ("a\n\nb", "a\nb", False), ("a\nb", "a", False), ("a", "a\nb", False),
    ("", "", True), ("", "\n", True), ("x", "", False), ("", "x", False),
    ("0.1000001", "0.1", False), ("1 2", "1  2", False),
])
def test_exact_comparison(got, want, equal):
    assert outputs_match(got, want)[0] is equal


def test_the_first_difference_is_reported():
    assert outputs_match("1\n2\n4", "1\n2\n3") == (False, "line 3: expected '3', got '4'")
    assert outputs_match("1", "1\n2") == (False, "line 2: expected '2', got None")
    assert outputs_match("1\n2", "1") == (False, "line 2: expected None, got '2'")
    assert outputs_match("a" * 300, "b")[1] == f"line 1: expected 'b', got {'a' * 200!r}"
    assert outputs_match("b", "a" * 300)[1] == f"line 1: expected {'a' * 200!r}, got 'b'"
    assert outputs_match("x", "x") == (True, "")


@pytest.mark.parametrize("got,want,tol,equal", [
    ("0.1000001 x", "0.1 x", 1e-5, True),
    ("0.1000001 y", "0.1 x", 1e-5, False),  # non-numbers must match exactly
    ("0.10002", "0.1", 1e-5, False),
    ("1000.001", "1000", 1e-6, True),  # relative to |b| when |b| > 1: 1e-3 <= 1e-6 * 1000
    ("1000.002", "1000", 1e-6, False),
    ("0.0000005", "0", 1e-6, True),  # absolute below 1
    ("1e-7", "0.0000001", 0.0, True),  # equal as floats at zero tolerance
    ("1 2", "1 2 3", 1e-3, False),  # token counts differ
    ("nan", "nan", 1e-6, True), ("nan", "1", 1e-6, False), ("1", "nan", 1e-6, False),
    ("inf", "inf", 1e-6, True),
])
def test_float_tolerance(got, want, tol, equal):
    assert outputs_match(got, want, tol)[0] is equal


def test_token_equal_boundaries():
    assert _token_equal("1.5", "1.5", 0.0)
    assert _token_equal("2.0", "2", 0.0)
    assert _token_equal("1.1", "1.0", 0.1 + 1e-12) and not _token_equal("1.1", "1.0", 0.09)
    assert _token_equal("-2.2", "-2.0", 0.1 + 1e-12)  # |b| = 2: tolerance scales to 0.2
    assert not _token_equal("abc", "abd", 1.0) and _token_equal("abc", "abc", 0.0)
    assert not _token_equal("nan", "inf", 1.0) and math.isnan(float("nan"))


def test_a_line_matched_by_tolerance_does_not_end_the_comparison():
    assert outputs_match("0.1000001\n5", "0.1\n6", 1e-5) == (False, "line 2: expected '6', got '5'")
    assert outputs_match("0.1000001\n6", "0.1\n6", 1e-5) == (True, "")
