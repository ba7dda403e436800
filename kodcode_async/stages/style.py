"""Style converter: instruct -> complete. The question becomes a code stub to finish.

The model rewrites the question as the start of a module: imports, the signature of the
function the tests call, and a docstring that states the task with examples. The stub is
accepted only if it parses and declares (with a docstring) a function or class that the tests
import from `solution`; the new triplet (stub, same solution, same tests) is then verified again.
"""

from __future__ import annotations

import ast
import re

from kodcode_async.backends import Request, Sampling
from kodcode_async.parsing import extract_final_code
from kodcode_async.stages.base import Unit

STAGE = "style"

PROMPT = """Turn this programming task into a code-completion task.

Task:
{question}

Reference solution (do not reveal its body):
```python
{solution}
```

Write only the beginning of the module: the imports it needs, then the signature of `{name}` exactly as
in the reference solution, followed by a docstring that explains what to implement, the parameters, the
return value and two or three examples. No implementation body. Answer with one ```python block."""


def names_tests_import(test: str) -> set[str]:
    """Names the tests import from solution (or, for `import *`, every name they use)."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return set()
    names: set[str] = set()
    star = False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "solution":
            for alias in node.names:
                star |= alias.name == "*"
                if alias.name != "*":
                    names.add(alias.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "solution":
            names.add(node.attr)
    if star:
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return names


def check_stub(stub: str, names: set[str]) -> str:
    """'' when the stub is acceptable, else the reason it is rejected."""
    try:
        tree = ast.parse(stub)
    except SyntaxError as e:
        return f"stub does not parse: {e.msg} (line {e.lineno})"
    declared = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    if not declared:
        return "stub declares no function or class"
    matching = [n for n in declared if n.name in names]
    if not matching:
        return (f"signature mismatch: stub declares {[n.name for n in declared]}, tests import "
                f"{sorted(names) or 'nothing from solution'}")
    if not any(ast.get_docstring(n) for n in matching):
        return f"stub for {matching[0].name} has no docstring"
    return ""


class StyleStage:
    name = STAGE

    def request(self, unit: Unit) -> Request:
        row = unit.item.row or {}
        names = sorted(names_tests_import(row.get("test") or ""))
        declared = [i["function_name"] for i in row.get("test_info", [])]
        target = next((n for n in declared if n in names), declared[0] if declared else (names[0] if names else "?"))
        prompt = PROMPT.format(question=unit.item.question, solution=row.get("solution") or "", name=target)
        return Request(stage=STAGE, item_id=unit.item.question_id, attempt=0,
                       messages=[{"role": "user", "content": prompt}], sampling=Sampling(n=1, temperature=0.2, seed=0))

    def parse(self, unit: Unit) -> None:
        row = unit.item.row or {}
        text = unit.texts[0] if unit.texts else ""
        stub = extract_final_code(text) or (text if re.search(r"^\s*(def|class)\s", text, re.M) else "")
        reason = check_stub(stub, names_tests_import(row.get("test") or "")) if stub else "no code block in the answer"
        if reason:
            unit.failure, unit.data["reason"] = "rejected", reason
            return
        unit.data["stub"] = stub.strip("\n") + "\n"
        from sandbox import Job

        unit.jobs = [Job(id=f"{unit.item.question_id}/complete", solution=row["solution"], test=row["test"])]

    def settle(self, unit: Unit) -> list[Unit]:
        q = unit.item
        row = q.row or {}
        v = unit.verdicts[0] if unit.verdicts else None
        if unit.failure or v is None or not v.passed:
            reason = unit.data.get("reason") or unit.failure or (f"re-verification {v.status}: {v.reason}" if v else "")
            q.style_rejection = {"question_id": q.question_id, "reason": reason}
            return []
        q.complete_row = {**row, "style": "complete", "question": unit.data["stub"],
                          "metadata": {**row.get("metadata", {}), "instruct_question": q.question}}
        return []
