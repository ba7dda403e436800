"""The style converter's static checks (stages/style.py): what the tests import from `solution`,
how signatures compare, which docstrings count, the order the checks run in with the reason each
one gives, which function the request asks about, and what a rejection records. The doctest check
runs in the real sandbox in tests/test_style_stage.py; answers here come as recorded responses."""

import ast
import asyncio

import orjson

from kodcode_async.backends import make_backend
from kodcode_async.journal import Journal
from kodcode_async.prompts import DEFAULT
from kodcode_async.resources import Limiter, LLMClient
from kodcode_async.stages.base import Item
from kodcode_async.stages.style import (
    StyleStage,
    _signature,
    check_stub,
    docstrings,
    names_tests_import,
    signature_problem,
)
from kodcode_async.stats import LLMCounts


def test_names_the_tests_import_from_solution_by_name_or_attribute_and_every_name_they_use() -> None:
    test = ("from solution import a, b as c\nfrom solution import *\nfrom other import d\nimport solution\n\n"
            "def test_it():\n    assert solution.e(x) == other.f(y)\n")
    named, used = names_tests_import(test)
    assert named == {"a", "b", "e"}
    assert used == {"a", "b", "e", "solution", "x", "other", "y"}
    assert names_tests_import("def broken(:\n") == (set(), set())
    assert names_tests_import("") == names_tests_import(None) == (set(), set())


def fn(source: str) -> ast.FunctionDef:
    return ast.parse(source).body[0]  # type: ignore[return-value]


def test_a_signature_is_names_kinds_and_defaults_without_annotations() -> None:
    got = _signature(fn("def f(a: int, /, b=1, *args: str, c, d: 'x' = 2, **kw: int) -> int: pass"))
    assert got == "f(a, /, b=1, *args, c, d=2, **kw)"
    assert _signature(fn("async def g(): pass")) == "g()"
    assert _signature(fn("def h(*, k=None): pass")) == "h(*, k=None)"


def problem(stub: str, solution: str) -> str:
    return signature_problem(ast.parse(stub), ast.parse(solution))


def test_every_declaration_of_the_stub_must_match_the_solution_by_name_kind_and_signature() -> None:
    solution = ("def f(a, b=1):\n    pass\n\nasync def g(x):\n    pass\n\nclass C:\n    def m(self, y=0):\n"
                "        pass\n\n    class Inner:\n        def n(self):\n            pass\n\nV = 1\n")
    assert problem("def f(a: int, b: int = 1) -> int:\n    ...\n", solution) == ""
    assert problem("def g(x):\n    ...\n", solution) == ""  # async or not: the same signature
    assert problem("class C:\n    def m(self, y=0):\n        ...\n", solution) == ""
    assert problem("x = 1\nimport os\n", solution) == ""  # only functions and classes are declarations
    assert problem("def f(a, b=2):\n    ...\n", solution) == "f(a, b=2) in the stub, f(a, b=1) in the solution"
    assert problem("def h():\n    ...\n", solution) == "the stub declares def h, the solution has no such function"
    assert problem("def C():\n    ...\n", solution) == "the stub declares def C, the solution has no such function"
    assert problem("class f:\n    pass\n", solution) == "the stub declares class f, the solution has no such class"
    assert problem("class C:\n    def m(self):\n        ...\n", solution) == \
        "C.m(self) in the stub, C.m(self, y=0) in the solution"
    assert problem("class C:\n    def k(self):\n        ...\n", solution) == \
        "the stub declares def C.k, the solution has no such function"
    assert problem("class C:\n    class Inner:\n        def n(self, z):\n            ...\n", solution) == \
        "C.Inner.n(self, z) in the stub, C.Inner.n(self) in the solution"
    # the first difference is the one reported, and a matching class does not hide a later one
    assert problem("class C:\n    pass\n\ndef f(a):\n    ...\n\ndef h():\n    ...\n", solution) == \
        "f(a) in the stub, f(a, b=1) in the solution"


def test_docstrings_of_the_module_its_functions_classes_and_methods_are_kept_as_written() -> None:
    tree = ast.parse('"""Mod."""\n\ndef f():\n    """F.\n\n    >>> f()\n    """\n\n    def inner():\n'
                     '        """Not a declaration."""\n\nclass C:\n    """Cls."""\n\n    async def m(self):\n'
                     '        """M."""\n\n    x = 1\n\ndef bare():\n    pass\n\nclass D:\n    def n(self):\n'
                     '        pass\n')
    assert docstrings(tree) == {"<module>": "Mod.", "f": "F.\n\n    >>> f()\n    ", "C": "Cls.", "C.m": "M."}
    assert docstrings(ast.parse("x = 1\n")) == {}


SOLUTION = "def add(a, b=0):\n    return a + b\n\n\ndef helper():\n    return 1\n"
TEST = "from solution import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
GOOD = 'def add(a, b=0):\n    """Add.\n\n    >>> add(1, 2)\n    3\n    """\n'


def test_the_static_checks_run_in_order_and_each_names_what_failed() -> None:
    assert check_stub(GOOD, SOLUTION, TEST) == (None, {"add": "Add.\n\n    >>> add(1, 2)\n    3\n    "})
    (check, reason), examples = check_stub("def add(a, b=0):\n    return )\n", SOLUTION, TEST)
    assert (check, examples) == ("parse", {}) and reason.startswith("stub does not parse: ")
    assert reason.endswith("')' (line 2)")  # Python's own message, then where
    assert check_stub("x = 1\n", SOLUTION, TEST) == (("parse", "stub declares no function or class"), {})
    # a wrong signature is reported before missing imports and examples
    assert check_stub("def add(a, b=1):\n    pass\n", SOLUTION, "from solution import zeta, add, beta\n") == \
        (("signature", "signature mismatch: add(a, b=1) in the stub, add(a, b=0) in the solution"), {})
    assert check_stub("def add(a, b=0):\n    pass\n", SOLUTION, "from solution import zeta, add, beta\n") == \
        (("imports", "the tests import ['beta', 'zeta'] from solution, which the stub does not declare"), {})
    assert check_stub('def helper():\n    """>>> helper()\n    1\n    """\n', SOLUTION, TEST) == \
        (("imports", "the tests import ['add'] from solution, which the stub does not declare"), {})
    assert check_stub('def helper():\n    """>>> helper()\n    1\n    """\n', SOLUTION,
                      "from solution import *\n\ndef test():\n    assert add(1) == 1\n") == \
        (("imports", "the tests use none of what the stub declares (['helper'])"), {})
    assert check_stub('"""Mod.\n>>> 1\n1\n"""\ndef add(a, b=0):\n    """Add two."""\n', SOLUTION, TEST) == \
        (None, {"<module>": "Mod.\n>>> 1\n1\n"})  # examples anywhere in the stub count
    assert check_stub('def add(a, b=0):\n    """Add two numbers, e.g. add(1, 2) is 3."""\n', SOLUTION, TEST) == \
        (("examples", "the stub's docstrings have no runnable examples (>>> lines)"), {})
    # a star import with a declared name in use passes the import check
    assert check_stub(GOOD, SOLUTION, "from solution import *\n\ndef test():\n    assert add(1) == 1\n")[0] is None


def row(**extra) -> dict:
    return {"question": "Add two numbers.", "solution": SOLUTION, "test": TEST, "subset": "s", "metadata": {"m": 1},
            "test_info": [{"function_name": "helper"}, {"function_name": "add"}], **extra}


def stage_with_answers(tmp_path, answers: dict[str, str | list[str]]) -> tuple[StyleStage, Journal]:
    recorded = tmp_path / "rec.jsonl"
    recorded.write_bytes(b"".join(orjson.dumps({"stage": "style", "item_id": k, "attempt": 0,
                                                **({"responses": v} if isinstance(v, list) else {"response": v})}) + b"\n"
                                  for k, v in answers.items()))
    journal = Journal(str(tmp_path / "journal.sqlite"))
    llm = LLMClient(make_backend("recorded", recorded_path=str(recorded)), journal, Limiter(2), "m")
    # every answer here is rejected before the doctest check, so no sandbox is ever asked
    return StyleStage(llm, None, concurrency=2), journal  # type: ignore[arg-type]


def test_the_request_asks_for_the_function_the_tests_use_with_the_question_and_solution(tmp_path) -> None:
    stage, journal = stage_with_answers(tmp_path, {})
    journal.close()
    req = stage.request(Item("q1", row()))
    assert (req.stage, req.item_id, req.attempt) == ("style", "q1", 0)
    assert (req.sampling.n, req.sampling.temperature, req.sampling.seed) == (1, 0.2, 0)
    assert req.messages == [{"role": "user", "content": DEFAULT.style_user.format(
        question="Add two numbers.", solution=SOLUTION, name="add")}]  # helper is declared first, add is tested

    def target(**r) -> str:
        content = stage.request(Item("q", {"question": "Q", **r})).messages[0]["content"]
        for name in ("add", "helper", "zeta", "?"):
            if content == DEFAULT.style_user.format(question="Q", solution=r.get("solution") or "", name=name):
                return name
        raise AssertionError(content)

    assert target(test="def test():\n    pass\n", test_info=[{"function_name": "helper"}, {"function_name": "add"}],
                  solution=SOLUTION) == "helper"  # none used: the first declared
    assert target(test="from solution import zeta, add\n") == "add"  # nothing declared: the first imported
    assert target(test=None, solution=None) == "?"


def test_rejections_record_the_check_its_reason_and_the_stub_and_are_counted(tmp_path) -> None:
    answers = {
        "prose": "I would rather not write code today.",
        "bare": "def add(a, b=1):\n    return a + b",  # no fence, but code: checked as the stub
        "fenced": "Sure.\n```python\n\n\ndef add(a, b=0):\n    pass\n\n\n```\nDone.",
        "blank": "```python\n   \n```",
        "nothing": [],  # the model gave no text at all
        "prose_then_def": "Here it is:\ndef add(a, b=0):\n    pass\n",  # a def on a later line: the whole answer
        "indented": "\n  def add(a, b=1):\n    return aX\n\n",  # only newlines are cut around it
    }
    stage, journal = stage_with_answers(tmp_path, answers)

    async def go() -> dict:
        items = {k: Item(k, row(question_id=k)) for k in answers}
        items["program"] = Item("program", row(question_id="program", format="stdin"))
        items["program2"] = Item("program2", row(question_id="program2", format="stdin"))
        for it in items.values():
            assert await stage.process(it) is it
        return {k: it.side for k, it in items.items()}

    sides = asyncio.run(go())
    journal.close()
    assert all(len(s) == 1 and s[0][0] == "style_rejected.jsonl" for s in sides.values())
    got = {k: s[0][1] for k, s in sides.items()}
    assert got["prose"] == {"question_id": "prose", "check": "parse", "reason": "no code block in the answer",
                            "stub": None}
    assert got["blank"] == {"question_id": "blank", "check": "parse", "reason": "no code block in the answer",
                            "stub": None}
    assert got["bare"] == {"question_id": "bare", "check": "signature", "stub": "def add(a, b=1):\n    return a + b\n",
                           "reason": "signature mismatch: add(a, b=1) in the stub, add(a, b=0) in the solution"}
    assert got["fenced"] == {"question_id": "fenced", "check": "examples", "stub": "def add(a, b=0):\n    pass\n",
                             "reason": "the stub's docstrings have no runnable examples (>>> lines)"}
    assert got["program"] == {"question_id": "program", "check": "stdin", "stub": None,
                              "reason": "a stdin/stdout program has no function signature to turn into a "
                                        "completion task"}
    assert got["nothing"] == {"question_id": "nothing", "check": "parse", "reason": "no code block in the answer",
                              "stub": None}
    assert got["prose_then_def"]["check"] == "parse" and got["prose_then_def"]["reason"].startswith(
        "stub does not parse: ")
    assert got["prose_then_def"]["stub"] == "Here it is:\ndef add(a, b=0):\n    pass\n"
    assert got["indented"]["check"] == "parse" and got["indented"]["stub"] == "  def add(a, b=1):\n    return aX\n"
    assert stage.checks == {"parse": 5, "signature": 1, "examples": 1, "stdin": 2} and stage.concurrency == 2
    assert stage.stats() == {"llm": LLMCounts(style_checks=stage.checks)}  # in the report's LLM figures
