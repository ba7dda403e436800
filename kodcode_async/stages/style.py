"""Style converter: instruct -> complete. The question becomes a code stub to finish.

The model rewrites the question as the start of a module: imports, the signature of the
function the tests call, and a docstring that states the task with examples. A stub is accepted
only when all of these hold, checked in this order (the first that fails is recorded as `check`):
* `parse`: the answer holds a stub that parses;
* `signature`: every function it declares has the same name, parameters and defaults as in the
  verified solution (by AST; annotations may differ), and so do the methods of its classes;
* `imports`: the tests still import what the stub declares: every name they import from
  `solution` is declared, and they use at least one declared name;
* `examples`: its docstrings hold doctest examples (a stub without runnable examples is rejected);
* `doctest`: those examples pass against the verified solution, run in the sandbox.
"""

from __future__ import annotations

import ast
import hashlib
import re

from kodcode_async.backends import Request, Sampling
from kodcode_async.parsing import extract_final_code
from kodcode_async.prompts import DEFAULT as DEFAULT_PROMPTS
from kodcode_async.prompts import Prompts
from kodcode_async.resources import LLMClient, SandboxClient
from kodcode_async.stages.base import Item, RunStage, StagePlan, verified_item
from kodcode_async.stats import LLMCounts
from sandbox import Job, Limits

STAGE = "style"

def names_tests_import(test: str | None) -> tuple[set[str], set[str]]:
    """(names the tests import from solution by name, every name the tests use); none without tests."""
    try:
        tree = ast.parse(test or "")
    except SyntaxError:
        return set(), set()
    named: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "solution":
            named |= {alias.name for alias in node.names if alias.name != "*"}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "solution":
            named.add(node.attr)
        elif isinstance(node, ast.Name):
            used.add(node.id)
    return named, used | named


Rejection = tuple[str, str]  # (check, reason)


def _signature(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """Parameters and defaults as source, without annotations."""
    a = fn.args
    strip = ast.arguments(posonlyargs=[ast.arg(x.arg) for x in a.posonlyargs], args=[ast.arg(x.arg) for x in a.args],
                          vararg=a.vararg and ast.arg(a.vararg.arg), kwonlyargs=[ast.arg(x.arg) for x in a.kwonlyargs],
                          kw_defaults=a.kw_defaults, kwarg=a.kwarg and ast.arg(a.kwarg.arg), defaults=a.defaults)
    return f"{fn.name}({ast.unparse(strip)})"


_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _defs(body: list[ast.stmt]) -> dict[str, ast.AST]:
    return {n.name: n for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}


def signature_problem(stub: ast.Module, solution: ast.Module) -> str:
    """'' when every declaration of the stub matches the solution's, else what differs."""
    return _scope_problem(_defs(stub.body), _defs(solution.body), "")


def _scope_problem(ours: dict[str, ast.AST], theirs: dict[str, ast.AST], prefix: str) -> str:
    for name, node in ours.items():
        other = theirs.get(name)
        if isinstance(node, ast.ClassDef):
            if not isinstance(other, ast.ClassDef):
                return f"the stub declares class {prefix}{name}, the solution has no such class"
            problem = _scope_problem(_defs(node.body), _defs(other.body), f"{prefix}{name}.")
            if problem:
                return problem
        elif not isinstance(other, _FUNCS):
            return f"the stub declares def {prefix}{name}, the solution has no such function"
        elif _signature(node) != _signature(other):  # type: ignore[arg-type]
            return f"{prefix}{_signature(node)} in the stub, {prefix}{_signature(other)} in the solution"  # type: ignore[arg-type]
    return ""


def _docstring(node: ast.AST) -> str | None:
    return ast.get_docstring(node, clean=False)  # pragma: no mutate - as written (clean=None is clean=False)


def docstrings(tree: ast.Module) -> dict[str, str]:
    """Every docstring of the stub (module, functions, classes, methods), by qualified name, as
    written (the doctest parser reads the examples' indentation)."""
    out = {}
    if doc := _docstring(tree):
        out["<module>"] = doc
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if doc := _docstring(node):
                out[node.name] = doc
            if isinstance(node, ast.ClassDef):
                for m in node.body:
                    if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef) and (doc := _docstring(m)):
                        out[f"{node.name}.{m.name}"] = doc
    return out


def stub_of(answer: str) -> str:
    """The stub in a model's answer: its last Python block, else the whole answer when a line of it
    starts a def or class; newlines around it cut, one at the end. '' when there is none."""
    stub = extract_final_code(answer) or (answer if re.search(r"^\s*(def|class)\s", answer, re.M) else "")
    return stub.strip("\n") + "\n" if stub.strip() else ""


def check_stub(stub: str, solution: str, test: str) -> tuple[Rejection | None, dict[str, str]]:
    """The static checks: (None, docstrings with examples) when they hold, else ((check, reason), {})."""
    try:
        tree = ast.parse(stub)
    except SyntaxError as e:
        return ("parse", f"stub does not parse: {e.msg} (line {e.lineno})"), {}
    declared = _defs(tree.body)
    if not declared:
        return ("parse", "stub declares no function or class"), {}
    problem = signature_problem(tree, ast.parse(solution))
    if problem:
        return ("signature", f"signature mismatch: {problem}"), {}
    named, used = names_tests_import(test)
    missing = sorted(named - set(declared))
    if missing:
        return ("imports", f"the tests import {missing} from solution, which the stub does not declare"), {}
    if not used & set(declared):
        return ("imports", f"the tests use none of what the stub declares ({sorted(declared)})"), {}
    import doctest  # here, not at the top: runs without --style do not pay for importing it

    parser = doctest.DocTestParser()
    with_examples = {name: doc for name, doc in docstrings(tree).items() if parser.get_examples(doc)}
    if not with_examples:
        return ("examples", "the stub's docstrings have no runnable examples (>>> lines)"), {}
    return None, with_examples


DOCTEST_MODULE = """import doctest

import solution

EXAMPLES = {examples!r}


def test_the_stub_examples_hold_for_the_verified_solution():
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for name, doc in EXAMPLES.items():
        runner.run(parser.get_doctest(doc, dict(vars(solution)), name, "stub.py", 0), out=report.append)
    assert runner.failures == 0, "".join(report)[-2000:]
"""


class StyleStage(RunStage):
    """A verified row in; the same row out, with a completion-style row or a rejection beside it."""

    name = STAGE
    output = "verified.jsonl"
    read_item = staticmethod(verified_item)
    accepted_file, rejected_file = "verified_complete.jsonl", "style_rejected.jsonl"
    side_files = (accepted_file, rejected_file)

    def __init__(self, llm: LLMClient, sandbox: SandboxClient, concurrency: int, limits: Limits | None = None,
                 prompts: Prompts = DEFAULT_PROMPTS) -> None:
        self.prompts = prompts
        self.prompt_hash = prompts.stage_hash(STAGE)
        self.llm = llm
        self.sandbox = sandbox
        self.concurrency = concurrency
        self.limits = limits or Limits()
        self.checks: dict[str, int] = {}

    def stats(self) -> dict:
        return {"llm": LLMCounts(style_checks=dict(self.checks))}

    async def process(self, item: Item) -> Item:
        row = item.row
        if row.get("format") == "stdin":  # a whole program read from stdin: no function to complete
            self.checks["stdin"] = self.checks.get("stdin", 0) + 1
            item.side.append((self.rejected_file, {"question_id": item.id, "check": "stdin", "stub": None,
                                                   "reason": "a stdin/stdout program has no function signature "
                                                             "to turn into a completion task"}))
            return item
        texts = await self.llm.complete(self.request(item))
        stub = stub_of(texts[0]) if texts else ""
        rejection, examples = (("parse", "no code block in the answer"), {}) if not stub else \
            check_stub(stub, row["solution"], row["test"])
        if rejection is None:
            test = DOCTEST_MODULE.format(examples=examples)
            # The id names the job in the pool's logs; coverage is not read: neither changes the verdict.
            job = Job(id=f"{item.id}/style", solution=row["solution"], test=test, coverage=False,  # pragma: no mutate
                      limits=self.limits)
            # the journal's key: one doctest job per question (any fixed attempt number is the same key)
            v = await self.sandbox.verify(STAGE, item.id, 0, job)  # pragma: no mutate
            if not v.passed:
                rejection = ("doctest", f"the stub's examples {v.status} against the verified solution: {v.reason}")
        if rejection is not None:
            self.checks[rejection[0]] = self.checks.get(rejection[0], 0) + 1
            item.side.append((self.rejected_file, {"question_id": item.id, "check": rejection[0],
                                                   "reason": rejection[1], "stub": stub or None}))
        else:
            item.side.append((self.accepted_file, {
                **row, "style": "complete", "question": stub,
                "metadata": {**row.get("metadata", {}), "instruct_question": row["question"],
                             "style_prompt_hash": self.prompt_hash}}))
        return item

    def request(self, item: Item) -> Request:
        row = item.row
        named, used = names_tests_import(row.get("test"))
        declared = [i["function_name"] for i in row.get("test_info", [])]
        target = next((n for n in declared if n in used), declared[0] if declared else (sorted(named) or ["?"])[0])
        prompt = self.prompts.style_user.format(question=row["question"], solution=row.get("solution") or "", name=target)
        return Request(stage=STAGE, item_id=item.id, attempt=0,
                       messages=[{"role": "user", "content": prompt}], sampling=Sampling(temperature=0.2, seed=0))


PLAN = StagePlan(
    STAGE, turned_on=lambda c: c.style, how_to_turn_on="--style",
    build=lambda c, clients: [StyleStage(clients.llm, clients.sandbox, clients.concurrency, c.solve.limits, c.prompts)],
    fingerprint=lambda c: {"model": c.solve.model_name, "prompt": c.prompts.stage_hash(STAGE),
                           "doctest": hashlib.sha256(DOCTEST_MODULE.encode()).hexdigest()[:16]})
