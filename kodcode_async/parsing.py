"""Pull a solution and its pytest tests out of free-form model output.

Accepted shapes, tried in order:
1. Tagged sections: <|Solution Begin|> ... <|Solution End|> and <|Test Begin|> ... <|Test End|>
   (a missing end tag runs to the next begin tag or the end of the text).
2. Fenced code blocks: the first block that defines code and does not look like tests is the
   solution; the first block with `def test_` (or importing from `solution`) is the test.
Inside a section, a ```python fence is stripped, also when its closing fence is missing.
The test module always gets `from solution import *` unless it already imports from solution.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass

import orjson

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_SOLUTION_IMPORT = re.compile(r"^\s*(from\s+solution\s+import|import\s+solution\b)", re.M)
_TAGS = {
    "solution": (re.compile(r"<\|\s*Solution\s+Begin\s*\|>", re.I), re.compile(r"<\|\s*Solution\s+End\s*\|>", re.I)),
    "test": (re.compile(r"<\|\s*Test\s+Begin\s*\|>", re.I), re.compile(r"<\|\s*Test\s+End\s*\|>", re.I)),
}
_ANY_BEGIN = re.compile(r"<\|\s*(Solution|Test)\s+Begin\s*\|>", re.I)


class ParseError(ValueError):
    """The response holds no usable solution/test pair; the attempt is recorded as parse_error."""


@dataclass(frozen=True, slots=True)
class Parsed:
    solution: str
    test: str


_FENCE_LINE = re.compile(r"^\s*`{1,3}\s*[A-Za-z0-9_+-]*\s*$")


def _strip_fence(text: str) -> str:
    """Code inside a section: the lines between fence lines (``` or a broken ` / ``), joined.

    Several blocks in one section are concatenated, prose between or around them is dropped, and
    a block whose closing fence is missing runs to the end. Without fences the text is the code.
    """
    lines = text.split("\n")
    if not any(_FENCE_LINE.match(line) for line in lines):
        return text.strip("\n")
    inside, kept = False, []
    for line in lines:
        if _FENCE_LINE.match(line):
            inside = not inside
            if inside and kept:
                kept.append("")  # blocks stay apart
        elif inside:
            kept.append(line)
    if not "".join(kept).strip():  # e.g. code followed by a lone closing fence
        kept = [line for line in lines if not _FENCE_LINE.match(line)]
    return "\n".join(kept).strip("\n")


def _tagged(text: str, name: str) -> str | None:
    begin, end = _TAGS[name]
    m = begin.search(text)
    if not m:
        return None
    rest = text[m.end():]
    e = end.search(rest)
    nxt = _ANY_BEGIN.search(rest)
    stop = min(x.start() for x in (e, nxt) if x is not None) if (e or nxt) else len(rest)
    return _strip_fence(rest[:stop])


def _is_test_code(code: str) -> bool:
    return bool(re.search(r"^\s*def\s+test_\w*\s*\(", code, re.M)) or bool(_SOLUTION_IMPORT.search(code))


def _fenced(text: str) -> tuple[str | None, str | None]:
    blocks = [m.group(2).strip("\n") for m in _FENCE.finditer(text)
              if m.group(1).lower() in ("", "python", "py", "python3")]
    solution = next((b for b in blocks if b.strip() and not _is_test_code(b)), None)
    test = next((b for b in blocks if re.search(r"^\s*def\s+test_\w*\s*\(", b, re.M)), None)
    return solution, test


def with_solution_import(test: str) -> str:
    """The test module as KodCode writes it: `from solution import *` first, whatever it imports
    itself, so tests may use names the solution imported (e.g. `math` after `import math`)."""
    if test.lstrip("\n").startswith("from solution import *\n"):
        return test
    future = [m.end() for m in re.finditer(r"^from\s+__future__\s+import[^\n]*\n", test, re.M)]
    if future:  # a __future__ import must stay first: the star import goes right after them
        return test[:future[-1]] + "from solution import *\n" + test[future[-1]:]
    return "from solution import *\n\n" + test


def parse_solution_and_test(text: str) -> Parsed:
    """Extract (solution, test) from a model response or raise ParseError with the reason."""
    if not isinstance(text, str) or not text.strip():
        raise ParseError("empty response")
    solution, test = _tagged(text, "solution"), _tagged(text, "test")
    if solution is None or test is None:
        fenced_solution, fenced_test = _fenced(text)
        solution = solution if solution is not None else fenced_solution
        test = test if test is not None else fenced_test
    if not solution or not solution.strip():
        raise ParseError("no solution section or code block found")
    if not test or not test.strip():
        raise ParseError("no test section or test code block found")
    return Parsed(solution=solution.strip("\n") + "\n", test=with_solution_import(test.strip("\n")) + "\n")


@dataclass(frozen=True, slots=True)
class ParsedStdin:
    program: str
    cases: list[dict]  # [{"input": str, "output": str}]


def parse_program_and_cases(text: str) -> ParsedStdin:
    """A stdin/stdout answer: the program, and the test cases as a JSON list of {input, output}.
    Raises ParseError with the reason."""
    if not isinstance(text, str) or not text.strip():
        raise ParseError("empty response")
    program, cases_text = _tagged(text, "solution"), _tagged(text, "test")
    if not program or not program.strip():
        raise ParseError("no solution section")
    if not cases_text or not cases_text.strip():
        raise ParseError("no test section with input/output cases")
    try:
        cases = orjson.loads(cases_text)
    except orjson.JSONDecodeError as e:
        raise ParseError(f"the test section is not JSON: {e}") from None
    if not isinstance(cases, list) or not cases:
        raise ParseError("the test section is not a non-empty JSON list of cases")
    out = []
    for n, case in enumerate(cases):
        if (not isinstance(case, dict) or not isinstance(case.get("input"), str)
                or not isinstance(case.get("output"), str)):
            raise ParseError(f"case {n} is not {{\"input\": string, \"output\": string}}")
        out.append({"input": case["input"], "output": case["output"]})
    return ParsedStdin(program.strip("\n") + "\n", out)


def extract_final_code(text: str) -> str | None:
    """The last Python code block of an answer (reasoning models put the final code last)."""
    if not isinstance(text, str):
        return None
    body = text.split("</think>")[-1]
    blocks = [m.group(2).strip("\n") for m in _FENCE.finditer(body) if m.group(1).lower() in ("", "python", "py", "python3")]
    blocks = [b for b in blocks if b.strip()]
    return blocks[-1] + "\n" if blocks else None


def _declaration_as_written(source: str, node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The `def ...:` header as the source spells it: no decorators, comments or body; lines joined."""
    lines = source.splitlines()
    first = node.body[0]
    # From the `def` line to the body's first line, that one cut where the body starts (the body
    # may share a line with the header's end: `def f(): return 1`); col_offset counts UTF-8 bytes.
    header = lines[node.lineno - 1:first.lineno]
    header[-1] = header[-1].encode()[:first.col_offset].decode()
    try:
        comments = [t for t in tokenize.generate_tokens(io.StringIO("\n".join(header) + "\n").readline)  # pragma: no mutate
                    if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError):  # a guard: a header cut from parsed code always tokenizes
        comments = []  # pragma: no mutate
    for t in reversed(comments):
        row, col = t.start
        header[row - 1] = header[row - 1][:col]
    parts = [line.strip() for line in header if line.strip()]
    return " ".join(parts).replace("( ", "(").replace(" )", ")")


def build_test_info(solution: str, test: str) -> list[dict]:
    """Name, declaration, parameters and docstring of each solution function the tests use."""
    try:
        sol_tree = ast.parse(solution)
    except SyntaxError:
        return []
    try:
        used = {n.id for n in ast.walk(ast.parse(test)) if isinstance(n, ast.Name)}
        used |= {a.name for n in ast.walk(ast.parse(test)) if isinstance(n, ast.ImportFrom) for a in n.names}
    except SyntaxError:
        used = set()  # pragma: no mutate - empty and None both mean "every function" below
    infos = []
    for node in sol_tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and (not used or node.name in used):
            if isinstance(node, ast.ClassDef):
                decl = f"class {node.name}"
                params: list[str] = []
            else:
                decl = _declaration_as_written(solution, node)
                params = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
            infos.append({"function_name": node.name, "function_declaration": decl, "parameter_list": params,
                          "docstring": ast.get_docstring(node)})
    return infos
