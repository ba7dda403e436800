"""pytest internals made cheaper without changing what they produce.

Installed once in the zygote, so every job inherits them:

* `_pytest.assertion.rewrite.traverse_node`: yields a node and all its descendants depth first,
  once per rewritten assert. pytest recurses through nested generators (one per AST level);
  this walks an explicit stack and returns the same nodes in the same order.
* The location fix at the end of `AssertionRewriter.visit_Assert`: every node pytest generated
  for an assert gets the assert's position, node by node through `ast.copy_location` (~135
  nodes per assert, a third of the whole rewrite). Where pytest's code is the one this was
  written against (checked from its bytecode names), the same positions are set in one loop.
* `_pytest._code.source.get_statement_startend2(lineno, node)`: walks the whole module AST on
  every call, once per traceback entry while a failure is formatted. A recursion error's
  traceback repeats the same few (file, line) entries hundreds of times, so results are
  memoised per (AST object, line). The AST is kept referenced next to its results, so its id
  cannot be reused by another tree while the memo holds it.

`tests/speedups_check.py` (run by `tests/test_sandbox_speedups.py`) checks each against pytest's own on
the KodCode test files.
"""

from __future__ import annotations

import ast

_MEMO_LIMIT = 512


def traverse_node(node: ast.AST) -> list[ast.AST]:
    """Node and its descendants, depth-first pre-order (the order pytest's version yields), as a list.

    Callers only iterate; building the list in one loop costs far less than resuming a
    generator per node.
    """
    out: list[ast.AST] = []
    stack = [node]
    append, pop, push, AST = out.append, stack.pop, stack.extend, ast.AST
    while stack:
        current = pop()
        append(current)
        children = []
        for field in current._fields:
            value = getattr(current, field, None)
            if isinstance(value, AST):
                children.append(value)
            elif type(value) is list:
                children.extend([item for item in value if isinstance(item, AST)])
        if children:
            children.reverse()
            push(children)
    return out


_POSITION = ("lineno", "col_offset", "end_lineno", "end_col_offset")


def _copied_position(old: ast.AST) -> list[tuple[str, object]]:
    """The attributes ast.copy_location(new, old) would set from old, with their values."""
    pairs = []
    for attr in _POSITION:
        if attr in old._attributes:
            value = getattr(old, attr, None)
            if value is not None or (hasattr(old, attr) and attr.startswith("end_")):
                pairs.append((attr, value))
    return pairs


def fix_locations(root: ast.AST, assert_: ast.AST) -> None:
    """What visit_Assert's closing loop does to one statement: every node of it (root included)
    without a lineno gets ast.copy_location(node, assert_)."""
    pairs = _copied_position(assert_)
    stack = [root]
    pop, push, AST = stack.pop, stack.extend, ast.AST
    while stack:
        node = pop()
        if getattr(node, "lineno", None) is None:
            attrs = node._attributes
            for attr, value in pairs:
                if attr in attrs:
                    setattr(node, attr, value)
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, AST):
                push((value,))
            elif type(value) is list:
                push([item for item in value if isinstance(item, AST)])


def _uses_of(module, name: str) -> list[str]:  # noqa: ANN001
    """Functions and methods of module whose bytecode names `name` (not counting `name` itself)."""
    found = []
    for key, obj in vars(module).items():
        for fn_name, fn in [(key, obj)] + (list(vars(obj).items()) if isinstance(obj, type) else []):
            code = getattr(fn, "__code__", None)
            if code is not None and name in code.co_names and fn_name != name:
                found.append(fn_name)
    return found


def install_location_fix(rewrite) -> str | None:  # noqa: ANN001 - the _pytest.assertion.rewrite module
    """Let visit_Assert's location loop run as fix_locations; a problem string if pytest's code differs."""
    cls = getattr(rewrite, "AssertionRewriter", None)
    original = getattr(cls, "visit_Assert", None)
    if original is None:
        return "AssertionRewriter.visit_Assert not found"
    if hasattr(original, "__wrapped__"):
        return None
    code = getattr(original, "__code__", None)
    names = set(code.co_names) if code is not None else set()
    if _uses_of(rewrite, "traverse_node") != ["visit_Assert"] or not {"copy_location", "getattr"} <= names:
        return "visit_Assert is not the version the location fix was written for (kept pytest's own)"
    plain_traverse = rewrite.traverse_node
    current: list[ast.AST] = []  # the assert being rewritten (asserts do not nest)

    def visit_Assert(self, assert_):  # noqa: ANN001, ANN202, N802
        current.append(assert_)
        try:
            return original(self, assert_)
        finally:
            current.pop()

    def traverse_node_fixing(node: ast.AST) -> list[ast.AST] | tuple[()]:
        # Inside visit_Assert its only caller is the location loop: fix here, leave it nothing to do.
        if current:
            fix_locations(node, current[-1])
            return ()
        return plain_traverse(node)

    visit_Assert.__wrapped__ = original
    cls.visit_Assert = visit_Assert
    rewrite.traverse_node = traverse_node_fixing
    return None


def memoised_startend(original):  # noqa: ANN001, ANN201 - wraps pytest's function
    memo: dict[tuple[int, int], tuple[ast.AST, tuple[int, int | None]]] = {}

    def get_statement_startend2(lineno: int, node: ast.AST) -> tuple[int, int | None]:
        key = (id(node), lineno)
        hit = memo.get(key)
        if hit is not None and hit[0] is node:
            return hit[1]
        result = original(lineno, node)
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = (node, result)
        return result

    get_statement_startend2.__wrapped__ = original
    return get_statement_startend2


def install() -> list[str]:
    """Patch pytest in this process; returns what could not be patched (empty when all went in)."""
    from sandbox.worker import pytest_internals as internals

    problems = []
    try:
        rewrite = internals.assertion_rewrite()
        if callable(getattr(rewrite, "traverse_node", None)):
            rewrite.traverse_node = traverse_node
            problem = install_location_fix(rewrite)
            if problem:
                problems.append(problem)
        else:
            problems.append("the assertion rewriter has no traverse_node")
    except ImportError as e:
        problems.append(f"assertion rewriting: {e}")
    try:
        code, source = internals.traceback_source()
        original = getattr(source, "get_statement_startend2", None)
        if callable(original) and not hasattr(original, "__wrapped__"):
            fast = memoised_startend(original)
            source.get_statement_startend2 = fast
            # getstatementrange_ast looks the name up in its own module at call time.
            if getattr(code, "get_statement_startend2", None) is original:
                code.get_statement_startend2 = fast
        elif original is None:
            problems.append("the source module has no get_statement_startend2")
    except ImportError as e:
        problems.append(f"traceback formatting: {e}")
    return problems
