"""The Python API, embedded in another program's event loop."""

import asyncio

import orjson

from kodcode_async.api import Pipeline
from kodcode_async.backends import make_backend
from kodcode_async.stages.solutions import SolveOptions
from sandbox import Limits, SandboxConfig
from tests.conftest import ROOT, read_jsonl


def test_pipeline_run_streams_rows_from_an_async_loop(isolated):
    questions = read_jsonl(ROOT / "examples" / "questions.jsonl")
    backend = make_backend("recorded", recorded_path=str(ROOT / "examples" / "recorded.jsonl"))
    pipeline = Pipeline(backend, solve=SolveOptions(attempts=3, max_attempts=5, limits=Limits(wall_s=5)),
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
    assert got["q1"]["gpt_pass_sequence"] == [0, 1, 1] and got["q1"]["gpt_difficulty"] == "easy"  # 2/3 is easy
    assert got["q1"]["chosen_trial"] == "trial_1"


def test_a_cli_run_resumed_through_the_api_asks_nothing_again(tmp_path, isolated):
    """The API and the CLI go through one run function: same options, same run, same journal keys
    (the SFT model's name included), so the API finds everything the CLI recorded."""
    from kodcode_async.stages.sft import SFTOptions
    from sandbox import Limits
    from tests.conftest import run_cli

    out = tmp_path / "run"
    r = run_cli("run", "--config", "examples/demo.toml", "--out", str(out))
    assert r.returncode == 0, r.stderr
    for name in ("verified.jsonl", "failed.jsonl", "sft.jsonl", "verified_complete.jsonl", "style_rejected.jsonl"):
        (out / name).unlink()  # only the journal is left: every answer must come from it
    limits = Limits(wall_s=5.0, memory_mb=2048)
    backend = make_backend("recorded", recorded_path=str(ROOT / "examples" / "recorded.jsonl"))
    pipeline = Pipeline(backend, solve=SolveOptions(attempts=3, max_attempts=5, model_name="recorded-demo",
                                                    limits=limits),
                        sandbox=SandboxConfig(workers=2), style=True, sft=SFTOptions(n=2, nickname="r1", limits=limits),
                        sft_model_name="recorded-demo")
    report = asyncio.run(pipeline.run_to(str(out), str(ROOT / "examples" / "questions.jsonl"))).as_dict()
    assert report["llm_requests_this_run"] == 0 and report["sandbox_jobs_this_run"] == 0
    assert report["verified"] == 4 and report["sft_conversations"] == 3 and report["style_converted"] == 3
