"""The Python API, embedded in another program's event loop."""

import asyncio

import orjson

from kodcode_async.api import Pipeline
from kodcode_async.backends import make_backend
from kodcode_async.stages.solutions import SolveOptions
from sandbox import SandboxConfig
from tests.conftest import ROOT, read_jsonl


def test_pipeline_run_streams_rows_from_an_async_loop(isolated):
    questions = read_jsonl(ROOT / "examples" / "questions.jsonl")
    backend = make_backend("recorded", recorded_path=str(ROOT / "examples" / "recorded.jsonl"))
    pipeline = Pipeline(backend, solve=SolveOptions(attempts=3, max_attempts=5),
                        sandbox=SandboxConfig(workers=2), style=True)

    async def main():
        return [row async for row in pipeline.run(questions)]

    rows = {r["question_id"]: r for r in asyncio.run(main())}
    assert set(rows) == {q["question_id"] for q in questions}
    assert rows["demo-003"]["gpt_difficulty"] == "hard" and rows["demo-004"]["gpt_difficulty"] == "fail"
    assert rows["demo-001"]["complete_row"]["style"] == "complete"
    orjson.dumps(rows)  # plain data, ready to write anywhere


def test_pipeline_api_without_isolation_on_benign_answers(tmp_path):
    """The API's logic, with isolation="none" asked for by name (benign recorded answers only)."""
    rec = tmp_path / "rec.jsonl"
    rows = []
    for i in range(3):
        for attempt in range(3):
            ok = attempt != 0 or i == 0
            sol = f"def add(a, b):\n    return a + b + {0 if ok else 1}\n"
            resp = (f"<|Solution Begin|>\n```python\n{sol}```\n<|Solution End|>\n<|Test Begin|>\n```python\n"
                    "from solution import add\n\ndef test_add():\n    assert add(1, 2) == 3\n```\n<|Test End|>")
            rows.append(orjson.dumps({"stage": "solutions", "item_id": f"q{i}", "attempt": attempt, "response": resp}))
    rec.write_bytes(b"\n".join(rows) + b"\n")
    backend = make_backend("recorded", recorded_path=str(rec))
    pipeline = Pipeline(backend, solve=SolveOptions(attempts=3, max_attempts=3),
                        sandbox=SandboxConfig(workers=2, isolation="none"))

    async def main():
        return [row async for row in pipeline.run({"question_id": f"q{i}", "question": "add"} for i in range(3))]

    got = {r["question_id"]: r for r in asyncio.run(main())}
    assert got["q0"]["gpt_pass_sequence"] == [1, 1, 1] and got["q0"]["gpt_difficulty"] == "easy"
    assert got["q1"]["gpt_pass_sequence"] == [0, 1, 1] and got["q1"]["gpt_difficulty"] == "medium"
    assert got["q1"]["chosen_trial"] == "trial_1"
