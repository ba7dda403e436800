"""Two pytest internals made cheaper without changing what they return.

Installed once in the zygote, so every job inherits them:

* `_pytest.assertion.rewrite.traverse_node`: yields a node and all its descendants depth first,
  once per rewritten assert. pytest recurses through nested generators (one per AST level);
  this walks an explicit stack and yields the same nodes in the same order.
* `_pytest._code.source.get_statement_startend2(lineno, node)`: walks the whole module AST on
  every call, once per traceback entry while a failure is formatted. A recursion error's
  traceback repeats the same few (file, line) entries hundreds of times, so results are
  memoised per (AST object, line). The AST is kept referenced next to its results, so its id
  cannot be reused by another tree while the memo holds it.

`tests/test_sandbox_speedups.py` checks both against the originals on real test files.
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
    problems = []
    try:
        from _pytest.assertion import rewrite

        if callable(getattr(rewrite, "traverse_node", None)):
            rewrite.traverse_node = traverse_node
        else:
            problems.append("_pytest.assertion.rewrite.traverse_node not found")
    except ImportError as e:
        problems.append(f"assertion rewriting: {e}")
    try:
        from _pytest._code import code, source

        original = getattr(source, "get_statement_startend2", None)
        if callable(original) and not hasattr(original, "__wrapped__"):
            fast = memoised_startend(original)
            source.get_statement_startend2 = fast
            # getstatementrange_ast looks the name up in its own module at call time.
            if getattr(code, "get_statement_startend2", None) is original:
                code.get_statement_startend2 = fast
        elif original is None:
            problems.append("_pytest._code.source.get_statement_startend2 not found")
    except ImportError as e:
        problems.append(f"traceback formatting: {e}")
    return problems
