"""Strict comparisons (opt-in): `assert a == b` in a test module refuses lying `__eq__` methods.

An object whose `__eq__` always returns True makes `assert add(1, 2) == 3` pass in any harness.
In strict mode, every `assert x == y` / `assert x != y` of a test module (a single comparison,
anywhere inside the assert's expression) is rewritten, before pytest's own assertion rewriting,
into a call that compares as usual but fails the assertion when the two sides have different
types and one of them brings its own `__eq__`/`__ne__` (numbers compare freely across int, float,
bool, Fraction and Decimal). Same-type comparisons of user classes (two linked lists) still use
their `__eq__`. The helper is bound as a module global before the test module's first statement
runs, so the solution (imported later) cannot swap it.
"""

from __future__ import annotations

import ast
import inspect
import numbers
import types

HELPER = "_kodcode_strict_compare"  # a global of each rewritten test module
_OPS = {ast.Eq: "==", ast.NotEq: "!="}


def _own_method(kind: type, name: str) -> bool:
    """True when `kind` (or a base below object) defines `name` as Python code. C implementations
    (builtins, numpy arrays, pandas frames) are trusted; a class written in the solution is not."""
    for klass in kind.__mro__:
        if klass is object:
            return False
        if name in vars(klass):
            return isinstance(inspect.unwrap(vars(klass)[name]), types.FunctionType)
    return False


def strict_compare(left: object, right: object, op: str) -> object:
    result = left == right if op == "==" else left != right
    if type(left) is type(right) or (isinstance(left, numbers.Number) and isinstance(right, numbers.Number)):
        return result
    try:
        passes = bool(result) if op == "==" else not bool(result)
    except Exception:  # noqa: BLE001 - an array's truth value: the test decides (e.g. `.all()`)
        return result
    if not passes:
        return result  # an honest failure
    method = "__eq__" if op == "==" else "__ne__"
    for side in (left, right):
        if _own_method(type(side), method):
            raise AssertionError(f"strict comparison: {type(left).__qualname__} {op} {type(right).__qualname__} "
                                 f"uses {type(side).__qualname__}.{method}, which strict mode does not trust")
    return result


class _StrictAsserts(ast.NodeTransformer):
    def visit_Assert(self, node: ast.Assert) -> ast.Assert:
        node.test = _Compares().visit(node.test)
        return node


class _Compares(ast.NodeTransformer):
    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if len(node.ops) != 1 or type(node.ops[0]) not in _OPS:
            return node
        call = ast.Call(func=ast.Name(HELPER, ast.Load()),
                        args=[node.left, node.comparators[0], ast.Constant(_OPS[type(node.ops[0])])], keywords=[])
        return ast.copy_location(call, node)


def rewrite_strict(module: ast.Module) -> None:
    """Rewrite the module's asserts in place, and bind the helper before its first statement."""
    _StrictAsserts().visit(module)
    body = module.body
    index = 0
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        index = 1  # the docstring stays first
    while index < len(body) and isinstance(body[index], ast.ImportFrom) and body[index].module == "__future__":
        index += 1
    bind = ast.parse(f"from sandbox.worker.strict_unsafe import strict_compare as {HELPER}").body[0]
    body.insert(index, bind)
    ast.fix_missing_locations(module)


def install_strict_compare() -> None:
    """Make pytest's assertion rewriter run `rewrite_strict` first (in the zygote, before any job)."""
    from _pytest.assertion import rewrite

    original = rewrite.rewrite_asserts
    if getattr(original, "__kodcode_strict__", False):
        return

    def rewrite_asserts(mod, source, module_path=None, config=None):  # noqa: ANN001, ANN202
        rewrite_strict(mod)
        return original(mod, source, module_path, config)

    rewrite_asserts.__kodcode_strict__ = True  # type: ignore[attr-defined]
    rewrite.rewrite_asserts = rewrite_asserts
