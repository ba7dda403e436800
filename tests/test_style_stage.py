"""The style converter accepts a completion stub only when its signature, imports and doctest
examples hold against the verified solution (the examples run in the real sandbox)."""

import asyncio

import orjson

from kodcode_async.backends import make_backend
from kodcode_async.journal import Journal
from kodcode_async.parsing import build_test_info
from kodcode_async.prompts import DEFAULT
from kodcode_async.resources import Limiter, LLMClient, SandboxClient
from kodcode_async.stages.base import Item
from kodcode_async.stages.style import StyleStage
from sandbox import Limits
from sandbox.pool import SandboxConfig, SandboxPool

SOLUTION = "import math\n\n\ndef scaled(x, factor=2):\n    return math.floor(x * factor)\n"
TEST = "from solution import *\n\n\ndef test_scaled():\n    assert scaled(1.6) == 3\n    assert scaled(2, factor=3) == 6\n"


def stub(signature, examples):
    doc = "Scale x by factor and round down." + "".join(f"\n\n    >>> {call}\n    {want}" for call, want in examples)
    return f"Here it is.\n```python\ndef {signature}:\n    \"\"\"{doc}\n    \"\"\"\n```\n"


ANSWERS = {
    "signature": stub("scaled(x, factor=3)", [("scaled(1.6)", "3")]),  # default differs from the solution's
    "wrong_doctest": stub("scaled(x, factor=2)", [("scaled(1.6)", "3"), ("scaled(2, factor=3)", "7")]),
    "correct": stub("scaled(x: float, factor: int = 2) -> int", [("scaled(1.6)", "3"), ("scaled(2, factor=3)", "6")]),
    "no_examples": stub("scaled(x, factor=2)", []),
    "imports": "```python\ndef helper(x, factor=2):\n    \"\"\">>> 1\n    1\n    \"\"\"\n```",
    "no_metadata": stub("scaled(x, factor=2)", [("scaled(1.6)", "3")]),
    "hangs": stub("scaled(x, factor=2)", [("scaled(1.6)", "3"), ("while True: pass", "")]),  # runs out of time
}


def test_style_stubs_signature_mismatch_wrong_doctest_and_a_correct_one(tmp_path, isolated):
    recorded = tmp_path / "rec.jsonl"
    recorded.write_bytes(b"".join(orjson.dumps({"stage": "style", "item_id": k, "attempt": 0, "response": v}) + b"\n"
                                  for k, v in ANSWERS.items()))
    base = {"solution": SOLUTION, "test": TEST, "test_info": build_test_info(SOLUTION, TEST), "subset": "s",
            "question": "Write scaled(x, factor=2): x * factor rounded down.", "metadata": {"kept": True}}
    helper = SOLUTION + "\n\ndef helper(x, factor=2):\n    return x\n"

    async def main():
        journal = Journal(str(tmp_path / "j.sqlite"))
        async with SandboxPool(SandboxConfig(workers=2)) as pool:
            llm = LLMClient(make_backend("recorded", recorded_path=str(recorded)), journal, Limiter(4), "m")
            stage = StyleStage(llm, SandboxClient(pool, journal), concurrency=4, limits=Limits(wall_s=1))
            items = [Item(k, {**base, "question_id": k, **({"solution": helper} if k == "imports" else {})})
                     for k in ANSWERS]
            del items[-2].row["metadata"]  # a row without metadata gets some
            done = await asyncio.gather(*(stage.process(i) for i in items))
        journal.close()
        return {i.id: i.side for i in done}, stage.checks

    sides, checks = asyncio.run(main())
    rejected = {k: side[0][1] for k, side in sides.items() if side[0][0] == "style_rejected.jsonl"}
    assert set(rejected) == {"signature", "wrong_doctest", "no_examples", "imports", "hangs"}
    assert rejected["hangs"]["check"] == "doctest"
    assert rejected["hangs"]["reason"].endswith("timeout against the verified solution: wall-clock limit of 1 s exceeded")
    assert rejected["signature"]["check"] == "signature"
    assert "scaled(x, factor=3) in the stub, scaled(x, factor=2) in the solution" in rejected["signature"]["reason"]
    assert rejected["wrong_doctest"]["check"] == "doctest" and "fail" in rejected["wrong_doctest"]["reason"]
    assert rejected["no_examples"]["check"] == "examples"
    assert rejected["imports"]["check"] == "imports"
    assert checks == {"signature": 1, "doctest": 2, "examples": 1, "imports": 1}
    (name, row), = sides["correct"]
    assert name == "verified_complete.jsonl" and row["style"] == "complete"
    assert row["question"].startswith("def scaled(x: float, factor: int = 2) -> int:")
    assert row["metadata"] == {"kept": True, "instruct_question": base["question"],
                               "style_prompt_hash": DEFAULT.stage_hash("style")}
    assert row["test"] == TEST and row["question_id"] == "correct"
    (name, row), = sides["no_metadata"]
    assert name == "verified_complete.jsonl"
    assert row["metadata"] == {"instruct_question": base["question"], "style_prompt_hash": DEFAULT.stage_hash("style")}
