"""Strict comparisons (opt-in): `assert a == b` in a test module refuses lying `__eq__` methods.

An object whose `__eq__` always returns True makes `assert add(1, 2) == 3` pass in any harness.
In strict mode, every `assert x == y` / `assert x != y` of a test module (a single comparison,
anywhere inside the assert's expression) is rewritten, before pytest's own assertion rewriting,
into a call that compares as usual but fails the assertion when the two sides have different
types and one of them gets its `__eq__`/`__ne__` from a class written in Python (a subclass of
int, a class registered as a number, a method bound to a builtin: all count). C types compare
freely (int, float, bool, Decimal, numpy). Same-type comparisons of user classes (two linked lists)
still use their `__eq__`. The helper binds what it uses when the zygote imports it, and is bound
as a global of the test module before its first statement; the job's result-channel hook fails a
pass if that global was replaced (guard_unsafe). Not covered: a lying element inside a container
of the same type on both sides (`[x] == [1]`).
"""

from __future__ import annotations

import ast
import collections  # noqa: F401 - their classes are known (trusted) before any job: see _make_helper
import decimal  # noqa: F401
import fractions  # noqa: F401

HELPER = "_kodcode_strict_compare"  # a global of each rewritten test module
_OPS = {ast.Eq: "==", ast.NotEq: "!="}


_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement, not by C code


def _make_helper():  # noqa: ANN202
    """The helper, with everything it uses bound now (in the zygote): patching this module's globals,
    builtins or numbers later changes nothing it does."""
    _type, _bool, _vars, _error, _id, heaptype = type, bool, vars, AssertionError, id, _HEAPTYPE
    import sys

    # Classes that exist before any job (the standard library's Fraction and Counter, pytest's,
    # preloaded libraries'): written in Python, but not by the solution.
    known = frozenset(id(c) for m in list(sys.modules.values()) for c in list(_vars(m).values())
                      if isinstance(c, type)) if sys.modules else frozenset()

    def own_method(kind: type, name: str) -> bool:
        """True when the class that provides `name` for `kind` was written in Python after the
        zygote started (a class from the solution), whatever it binds there: a function, a
        builtin, a partial. C types (int, str, list, numpy arrays) and classes that existed
        before any job (Fraction, Counter) are trusted; so is object's default."""
        for klass in kind.__mro__:
            if klass is object:
                return False
            if name in _vars(klass):
                return _bool(klass.__flags__ & heaptype) and _id(klass) not in known
        return False

    def strict_compare(left: object, right: object, op: str) -> object:
        result = left == right if op == "==" else left != right
        if _type(left) is _type(right):
            return result
        try:
            passes = _bool(result) if op == "==" else not _bool(result)
        except Exception:  # noqa: BLE001 - an array's truth value: the test decides (e.g. `.all()`)
            return result
        if not passes:
            return result  # an honest failure
        method = "__eq__" if op == "==" else "__ne__"
        for side in (left, right):
            if own_method(_type(side), method):
                raise _error(f"strict comparison: {_type(left).__qualname__} {op} {_type(right).__qualname__} "
                             f"uses {_type(side).__qualname__}.{method}, which strict mode does not trust")
        return result

    return strict_compare


strict_compare = _make_helper()


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
    from sandbox.worker.pytest_internals import assertion_rewrite

    rewrite = assertion_rewrite()
    original = rewrite.rewrite_asserts
    if getattr(original, "__kodcode_strict__", False):
        return

    def rewrite_asserts(mod, source, module_path=None, config=None):  # noqa: ANN001, ANN202
        rewrite_strict(mod)
        return original(mod, source, module_path, config)

    rewrite_asserts.__kodcode_strict__ = True  # type: ignore[attr-defined]
    rewrite.rewrite_asserts = rewrite_asserts
