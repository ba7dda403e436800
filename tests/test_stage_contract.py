"""The stage contract (stages/base.py: RunStage, StagePlan) and the one registry (stages.PLANS): a
stage added as one module plus one line runs end to end, resumes, and shapes the fingerprint."""

from __future__ import annotations

import asyncio
import json

import pytest

from kodcode_async import stages
from kodcode_async.backends import make_backend
from kodcode_async.run import RunConfig, execute, fingerprint
from kodcode_async.stages.base import RunStage
from kodcode_async.stages.solutions import SolveOptions
from sandbox import Limits, SandboxConfig
from tests.conftest import ROOT, read_jsonl


@pytest.fixture
def with_length_stage(monkeypatch):
    """CONTRIBUTING.md's worked example, added by its one line: after "tags", before "solutions"."""
    names = list(stages.PLANS.items())
    at = [n for n, _ in names].index("solutions")
    monkeypatch.setattr(stages, "PLANS", dict(names[:at] + [("length", "tests.length_stage")] + names[at:]))


def _run(out, **config):
    backend = make_backend("recorded", recorded_path=str(ROOT / "examples" / "recorded.jsonl"))
    cfg = RunConfig(input_path=str(ROOT / "examples" / "questions.jsonl"), out_dir=str(out),
                    solve=SolveOptions(attempts=3, max_attempts=5, limits=Limits(wall_s=5)),
                    sandbox=SandboxConfig(workers=2), **config)
    return cfg, asyncio.run(execute(cfg, backend))


def test_a_stage_added_as_one_module_and_one_line_runs_resumes_and_is_in_the_fingerprint(
        tmp_path, with_length_stage, isolated):
    from tests.length_stage import LIMIT

    config, report = _run(tmp_path / "run")
    assert config.stage_names() == ["length", "solutions"]
    questions = {q["question_id"]: q for q in read_jsonl(ROOT / "examples" / "questions.jsonl")}
    long = {i for i, q in questions.items() if len(q["question"]) > LIMIT}
    assert long and long != set(questions)
    dropped = read_jsonl(tmp_path / "run" / "too_long.jsonl")
    assert {r["question_id"] for r in dropped} == long
    solved = read_jsonl(tmp_path / "run" / "verified.jsonl") + read_jsonl(tmp_path / "run" / "failed.jsonl")
    assert {r["question_id"] for r in solved} == set(questions) - long
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert [s["name"] for s in stats["stages"]] == ["length", "solutions"]
    assert stats["stages"][0]["dropped"] == {"too_long": len(long)} and "question_synthesis" not in stats
    assert json.loads((tmp_path / "run" / "run.json").read_text())["fingerprint"]["length"] == {"limit": LIMIT}
    # Resumed: every item is finished (dropped or solved), so nothing is asked or run again.
    _, again = _run(tmp_path / "run")
    assert again.llm.requests == 0 and again.sandbox.jobs == 0 and sum(again.files.values()) == 0
    assert again.resumed_items == len(questions)
    # Stopping after it writes its rows to its output file.
    _run(tmp_path / "cut", stop_after="length")
    assert {r["question_id"] for r in read_jsonl(tmp_path / "cut" / "questions.jsonl")} == set(questions) - long


def test_every_registered_stage_keeps_the_contract():
    from kodcode_async.options import STAGES

    plans = stages.plans()
    assert [p.name for p in plans] == list(STAGES)
    config = RunConfig("", "")
    assert [p.name for p in plans if p.turned_on(config)] == ["solutions"]  # the default run
    for plan in plans:
        assert plan.name == "solutions" or plan.how_to_turn_on, plan.name
    with pytest.raises(ValueError, match=r"--start-at style: not a stage of this run; .* \(turn it on with --style\)"):
        RunConfig("", "", start_at="style")
    fp = fingerprint(config)
    assert set(fp) == {"stages", "solutions", "sandbox"}
    for cls in _stage_classes():
        assert issubclass(cls, RunStage), cls
        assert cls.drop_file is None or cls.drop_file.endswith(".jsonl")
        assert all(f.endswith(".jsonl") for f in cls.side_files)


def _stage_classes():
    from kodcode_async.stages.decontam import DecontamStage
    from kodcode_async.stages.dedup import DedupStage
    from kodcode_async.stages.questions import QuestionStage, SkipFinished
    from kodcode_async.stages.sft import SFTStage
    from kodcode_async.stages.solutions import SolveStage
    from kodcode_async.stages.style import StyleStage
    from kodcode_async.stages.tagging import FilterStage, TagStage

    return [QuestionStage, FilterStage, DecontamStage, DedupStage, SkipFinished, TagStage, SolveStage, StyleStage,
            SFTStage]
