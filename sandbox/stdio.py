"""Output comparison for stdin/stdout cases.

The rules, in order:

1. Line endings are normalised: "\\r\\n" and "\\r" become "\\n".
2. Trailing whitespace on every line is ignored.
3. Trailing empty lines are ignored, so a missing or extra final newline never matters.
4. Leading whitespace and blank lines in the middle of the output do matter.
5. With a float tolerance (opt-in, e.g. 1e-6), lines are compared token by token
   (tokens split on whitespace); two tokens that both parse as floats are equal when
   |a - b| <= tol * max(1, |b|); every other token must match exactly. Without a
   tolerance the comparison is exact after rules 1-3.
"""

from __future__ import annotations

import math


def normalise(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [line.rstrip() for line in lines]
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def _token_equal(got: str, want: str, tol: float) -> bool:
    if got == want:
        return True
    try:
        a, b = float(got), float(want)
    except ValueError:
        return False
    if math.isnan(a) or math.isnan(b):  # pragma: no mutate - with "and", NaN still fails the <= below
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol * max(1.0, abs(b))


def outputs_match(got: str, want: str, float_tolerance: float | None = None) -> tuple[bool, str]:
    """Compare program output with the expected output; returns (equal, first difference)."""
    g, w = normalise(got), normalise(want)
    for i in range(max(len(g), len(w))):
        gl = g[i] if i < len(g) else None
        wl = w[i] if i < len(w) else None
        if gl is None or wl is None:
            return False, f"line {i + 1}: expected {wl!r}, got {gl!r}"
        if gl == wl:
            continue
        if float_tolerance is not None:
            gt, wt = gl.split(), wl.split()
            if len(gt) == len(wt) and all(_token_equal(a, b, float_tolerance) for a, b in zip(gt, wt)):
                continue
        return False, f"line {i + 1}: expected {wl[:200]!r}, got {gl[:200]!r}"
    return True, ""
