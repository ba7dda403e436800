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
