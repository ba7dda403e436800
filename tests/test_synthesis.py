"""Question synthesis end to end: every subset on the recorded backend, with the real embedding
model for dedup and decontamination; prefill against a real OpenAI-compatible server; tags;
resume; questions flowing on into solve-and-verify in the real sandbox; bad input refused."""

import asyncio
import json
import shutil
from pathlib import Path

import msgspec
import orjson
import pytest
from conftest import ROOT, read_jsonl, run_cli
from openai_server import Script, start_server

from kodcode_async.backends.openai import OpenAIBackend, OpenAIConfig
from kodcode_async.backends.recorded import RecordedBackend
from kodcode_async.prompts import DEFAULT as PROMPTS
from kodcode_async.run import RunConfig, execute
from kodcode_async.seeds import SeedSource
from kodcode_async.stages.solutions import SolveOptions
from kodcode_async.subsets import SUBSETS, SynthOptions
from sandbox.pool import SandboxConfig

EX = ROOT / "examples" / "synth"
ALL = tuple(SUBSETS)
SEED_FILES = {"leetcode": "leetcode.jsonl", "codeforces": "codeforces.jsonl", "apps": "apps.jsonl",
              "taco": "taco.jsonl", "code_contests": "code_contests.jsonl", "package": "package.jsonl",
              "evol": "evol.jsonl", "algorithm": "algorithm.json", "data_structure": "data_structure.json",
              "docs": "docs.jsonl"}
KEPT = {"leetcode/000000/0", "codeforces/000000/0", "codeforces/000001/0", "apps/000000/0", "taco/000000/0",
        "code_contests/000000/0", "package/000000/0", "evol/000000/0", "algorithm/000000/0",
        "data_structure/000000/0", "docs/000000/0", "prefill/000000/0", "filter/000000/0", "filter/000000/2"}


def options(subsets: tuple[str, ...] = ALL, **kw: object) -> SynthOptions:
    seeds = tuple(SeedSource(s, str(EX / SEED_FILES[s])) for s in subsets if s in SEED_FILES)
    base: dict = {"model_name": "recorded-demo", "counts": {"leetcode": 2} if "leetcode" in subsets else {},
                  "stdin_format": True, "prefill_requests": 1, "prefill_n": 3}
    base.update(kw)
    return SynthOptions(subsets, seeds, **base)


def run(out: Path, synth: SynthOptions | None, backend: object = None, stop_after: str | None = "questions",  # noqa: ANN201
        tags: tuple[str, ...] = (), input_path: str = ""):
    config = RunConfig(input_path=input_path, out_dir=str(out), synth=synth, stop_after=stop_after, tags=tags,
                       sandbox=SandboxConfig(workers=1),
                       solve=SolveOptions(attempts=1, max_attempts=1, model_name="recorded-demo"))
    return asyncio.run(execute(config, backend or RecordedBackend(str(EX / "recorded.jsonl"))))


def by_id(path: Path) -> dict[str, dict]:
    return {r["question_id"]: r for r in read_jsonl(path)} if path.exists() else {}


@pytest.fixture(scope="module")
def all_modes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("synth") / "run"
    return out, run(out, options())


def test_every_subset_makes_questions_end_to_end(all_modes: tuple[Path, object]) -> None:
    out, report = all_modes
    questions = by_id(out / "questions.jsonl")
    assert set(questions) == KEPT
    for qid, row in questions.items():
        subset = SUBSETS[row["subset"]]
        meta = row["metadata"]
        assert qid.startswith(f"{row['subset']}/") and meta["prompt_id"] == qid.rsplit("/", 1)[0]
        assert meta["question_model"] == "recorded-demo"
        want = PROMPTS.prefill["qwen2.5"].hash() if subset.method == "prefill" else PROMPTS.stage_hash(subset.method)
        assert meta["question_prompt_hash"] == want
        assert set(meta["question_sampling"]) == {"n", "temperature", "max_tokens", "seed"}
        assert row.get("format") == ("stdin" if subset.stdin else None)
        assert 0 <= row["benchmark_similarity"] < 0.85 and row["benchmark_task_id"].startswith("HumanEval/")
        assert row["benchmark_instruction"] and "dedup" in meta
        assert "<|Question" not in row["question"] and "## Analysis" not in row["question"]
    assert len(questions["leetcode/000000/0"]["metadata"]["seed_ids"]) == 3
    assert questions["algorithm/000000/0"]["metadata"]["seed_ids"] == ["0"]
    assert questions["algorithm/000000/0"]["question"].startswith("Implement `first_occurrence(")
    assert questions["prefill/000000/0"]["question"] == (
        "Write a python function to find the second largest distinct number in a list of integers, "
        "returning None when there is none.")
    assert questions["prefill/000000/0"]["metadata"]["prefill_template"] == "qwen2.5"
    assert questions["filter/000000/0"]["filter_reason"] == "algorithm implementation"
    assert report.complete


def test_rejects_abstentions_filter_contamination_and_duplicates_are_recorded(all_modes: tuple[Path, object]) -> None:
    out, report = all_modes
    rejected = by_id(out / "questions_rejected.jsonl")
    assert {k: v["reason"] for k, v in rejected.items()} == {
        "algorithm/000001/0": "no_question_section", "docs/000001/0": "abstained", "prefill/000000/2": "empty"}
    assert rejected["docs/000001/0"]["answer"] == "NO_QUESTION"
    filtered = by_id(out / "filtered_out.jsonl")
    assert {k: v["filter_reason"] for k, v in filtered.items()} == {"filter/000000/1": "code explanation"}
    contaminated = by_id(out / "contaminated.jsonl")
    assert set(contaminated) == {"prefill/000000/1"}
    assert contaminated["prefill/000000/1"]["benchmark_task_id"] == "HumanEval/0"
    assert contaminated["prefill/000000/1"]["benchmark_similarity"] >= 0.85
    duplicates = by_id(out / "duplicates.jsonl")
    assert set(duplicates) == {"leetcode/000001/0"}  # the later of the pair: evol/000000/0 came first
    assert duplicates["leetcode/000001/0"]["metadata"]["dedup"]["nearest"] == "evol/000000/0"
    assert duplicates["leetcode/000001/0"]["metadata"]["dedup"]["similarity"] >= 0.9
    stats = json.loads((out / "stats.json").read_text())["question_synthesis"]
    per = stats["per_subset"]
    assert per["docs"]["rejected"] == {"abstained": 1} and per["docs"]["kept"] == 1
    assert per["leetcode"] == {"questions": 2, "rejected": {}, "filtered_out": 0, "contaminated": 0,
                               "duplicates": 1, "kept": 1}
    assert per["prefill"]["contaminated"] == 1 and per["filter"]["filtered_out"] == 1
    assert stats["embedder"]["encoded"] > 0 and stats["contaminated"] == {"HumanEval/0": 1}
    every = set(by_id(out / "questions.jsonl")) | set(rejected) | set(filtered) | set(contaminated) | set(duplicates)
    assert len(every) == 14 + 3 + 1 + 1 + 1  # every answer has exactly one recorded fate


def test_a_rerun_asks_nothing_and_writes_nothing_twice(all_modes: tuple[Path, object], tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(all_modes[0], out)
    before = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
    report = run(out, options())
    assert report.llm.requests == 0 and report.llm.replayed == 16 + 3  # 16 prompts, 3 filter labels
    assert report.questions.embedder.encoded == 0
    assert report.questions.finished_earlier == 14
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == before


def test_a_crash_before_rows_were_written_resumes_to_the_same_dataset(all_modes: tuple[Path, object],
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "crashed"
    shutil.copytree(all_modes[0], out)
    want = {name: by_id(out / name) for name in ("questions.jsonl", "duplicates.jsonl", "contaminated.jsonl")}
    lines = (out / "questions.jsonl").read_bytes().splitlines(keepends=True)
    (out / "questions.jsonl").write_bytes(b"".join(lines[:6]) + lines[6][:20])  # a torn last line, as after kill -9
    (out / "duplicates.jsonl").write_bytes(b"")
    report = run(out, options())
    assert report.llm.requests == 0
    for name, rows in want.items():
        again = read_jsonl(out / name)
        assert len(again) == len(rows) and {r["question_id"]: r for r in again} == rows


def test_generated_questions_go_on_to_solve_and_verify_in_the_sandbox(tmp_path: Path, isolated: str) -> None:
    out = tmp_path / "solve"
    report = run(out, options(("leetcode", "codeforces"), counts={"leetcode": 1, "codeforces": 1}), stop_after=None)
    verified = by_id(out / "verified.jsonl")
    assert set(verified) == {"leetcode/000000/0", "codeforces/000000/0"}, read_jsonl(out / "failed.jsonl")
    lc, cf = verified["leetcode/000000/0"], verified["codeforces/000000/0"]
    assert lc["trials"]["trial_0"]["status"] == "pass" and lc["test_info"][0]["function_name"] == \
        "longest_distinct_subarray"
    assert lc["metadata"]["prompt_id"] == "leetcode/000000" and lc["benchmark_task_id"].startswith("HumanEval/")
    assert lc["metadata"]["prompt_hash"] == PROMPTS.stage_hash("solutions")
    # the stdin-format question: a program and input/output cases, run by the sandbox's stdin mode
    assert cf["format"] == "stdin" and cf["test_info"] == []
    assert json.loads(cf["test"])[2] == {"input": "77\n", "output": "15\n"}
    assert cf["trials"]["trial_0"]["status"] == "pass"
    assert cf["metadata"]["prompt_hash"] == PROMPTS.stage_hash("solutions_stdin")
    assert report.sandbox.isolation.startswith("bwrap")


def test_a_wrong_stdin_case_fails_the_attempt(tmp_path: Path, isolated: str) -> None:
    recorded = tmp_path / "recorded.jsonl"
    rows = [r for r in read_jsonl(EX / "recorded.jsonl") if r["item_id"].startswith("codeforces/000000")]
    for r in rows:
        if r["stage"] == "solutions":
            r["response"] = r["response"].replace('"output": "15\\n"', '"output": "8\\n"')
            assert '"output": "8\\n"' in r["response"]
    recorded.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    out = tmp_path / "run"
    run(out, options(("codeforces",), counts={"codeforces": 1}, dedup_threshold=None, decontam_threshold=None),
        backend=RecordedBackend(str(recorded)), stop_after=None)
    failed = by_id(out / "failed.jsonl")
    assert failed["codeforces/000000/0"]["trials"]["trial_0"]["status"] == "fail"


@pytest.mark.parametrize("family", ["qwen2.5", "llama3"])
def test_prefill_sends_the_chat_template_up_to_the_user_turn_to_the_completions_endpoint(
        tmp_path: Path, family: str) -> None:
    template = PROMPTS.prefill[family]
    end = template.stop[0]
    script = Script()
    script.completion_texts = [f" merge two sorted lists into one sorted list.{end}",
                               " count the words in a sentence", f"{end}"]

    async def go() -> object:
        runner, url = await start_server(script)
        backend = OpenAIBackend(OpenAIConfig(base_url=url, model="chat-model", api_key=None, max_retries=0))
        try:
            config = RunConfig(input_path="", out_dir=str(tmp_path / "run"), stop_after="questions",
                               synth=SynthOptions(("prefill",), prefill_template=family, prefill_requests=2,
                                                  prefill_n=3, prefill_prefixes=("Write a python function to",
                                                                                 "Implement a Python class that"),
                                                  dedup_threshold=None, decontam_threshold=None, seed=11))
            return await execute(config, backend)
        finally:
            await backend.close()
            await runner.cleanup()

    asyncio.run(go())
    bodies = sorted(script.bodies, key=lambda b: b["seed"])
    assert len(bodies) == 2
    raw_prompt = ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                  "<|im_end|>\n<|im_start|>user\n") if family == "qwen2.5" else \
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
    assert [b["prompt"] for b in bodies] == [raw_prompt + "Write a python function to",
                                            raw_prompt + "Implement a Python class that"]
    for b in bodies:
        assert "messages" not in b and b["n"] == 3 and b["stop"] == list(template.stop) and b["model"] == "chat-model"
        assert b["temperature"] == 1.0
    questions = by_id(tmp_path / "run" / "questions.jsonl")
    assert questions["prefill/000000/0"]["question"] == \
        "Write a python function to merge two sorted lists into one sorted list."
    assert questions["prefill/000001/1"]["question"] == "Implement a Python class that count the words in a sentence"
    assert by_id(tmp_path / "run" / "questions_rejected.jsonl")["prefill/000000/2"]["reason"] == "empty"


def test_tags_are_validated_json_with_the_tagging_model(tmp_path: Path) -> None:
    recorded = tmp_path / "recorded.jsonl"
    qid = "package/000000/0"
    rows = [r for r in read_jsonl(EX / "recorded.jsonl") if r["item_id"] == "package/000000"] + [
        {"stage": "tag.quality", "item_id": qid, "attempt": 0,
         "response": 'Here you go:\n```json\n{"quality": "Good", "explanation": "clear input and output"}\n```'},
        {"stage": "tag.category", "item_id": qid, "attempt": 0,
         "response": '{"primary": "banana", "others": []}'},
        {"stage": "tag.judge", "item_id": qid, "attempt": 0,
         "response": 'It asks for a function. {"online_judge": false, "reason": "a function, not a program"}'},
    ]
    recorded.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    out = tmp_path / "run"
    report = run(out, options(("package",), dedup_threshold=None, decontam_threshold=None),
                 backend=RecordedBackend(str(recorded)), tags=("quality", "category", "judge"), stop_after="tags")
    meta = by_id(out / "questions.jsonl")[qid]["metadata"]
    assert meta["tags"]["quality"] == {"quality": "good", "explanation": "clear input and output"}
    assert meta["tags"]["judge"] == {"online_judge": False, "reason": "a function, not a program"}
    assert "not one of the listed categories" in meta["tags"]["category"]["error"]  # kept, with why
    assert meta["tag_models"] == {"quality": "recorded-demo", "category": "recorded-demo", "judge": "recorded-demo"}
    assert report.questions.tags["category"].invalid_answers == 1
    assert report.questions.tags["quality"].invalid_answers == 0
    # the same stage labels questions read from a file (no synthesis): a reusable stage
    questions = tmp_path / "q.jsonl"
    questions.write_bytes(orjson.dumps({"question_id": qid, "question": by_id(out / "questions.jsonl")[qid]["question"],
                                        "subset": "package"}) + b"\n")
    again = run(tmp_path / "labelled", None, backend=RecordedBackend(str(recorded)), tags=("quality", "judge"),
                stop_after="tags", input_path=str(questions))
    labelled = by_id(tmp_path / "labelled" / "questions.jsonl")[qid]["metadata"]
    assert labelled["tags"]["quality"]["quality"] == "good" and labelled["tags"]["judge"]["online_judge"] is False
    assert msgspec.to_builtins(again.questions) == {"tags": {"quality": {"invalid_answers": 0},
                                                             "judge": {"invalid_answers": 0}}}


def _cli_error(tmp_path: Path, *args: str) -> str:
    out = tmp_path / "run"
    proc = run_cli("run", "--backend", "recorded", "--recorded", str(EX / "recorded.jsonl"), "--out", str(out),
                   "--stop-after", "questions", *args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert not out.exists(), "a refused run must not create its run directory"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize(("args", "message"), [
    (("--subsets", "leetcode,pirates"), "unknown subset(s) pirates"),
    (("--subsets", "leetcode"), "no seed file for leetcode"),
    (("--subsets", "leetcode", "--seeds", "leetcode=nope.jsonl"), "seed file not found: nope.jsonl"),
    (("--subsets", "leetcode", "--seeds", "leetcode=README.md"), "neither JSON nor JSONL"),
    (("--subsets", "leetcode", "--seeds", "leetcode=examples/synth/leetcode.jsonl", "--seed-fields",
      "leetcode.text=statement"), "no usable seed for subset leetcode"),
    (("--subsets", "leetcode", "--seeds", "leetcode"), "--seeds: expected NAME=VALUE"),
    (("--subsets", "prefill", "--prefill-template", "mistral"), "--prefill-template mistral: no such template"),
    (("--subsets", "prefill", "--benchmarks", "humaneval,missing.jsonl"), "benchmark missing.jsonl"),
    (("--subsets", "prefill", "--counts", "prefill=many"), "--counts: prefill=many is not a whole number"),
    (("--subsets", "prefill", "--tag", "mood"), "--tag mood: unknown tag"),
    (("--subsets", "prefill", "--input", "examples/questions.jsonl"), "--input and --subsets both given"),
    (("--input", "examples/questions.jsonl", "--tag", "quality", "--no-dedup"),
     "--no-dedup only takes effect with --subsets"),
], ids=["subset", "no-seeds", "missing-file", "not-json", "no-text-field", "bad-pair", "template", "benchmark",
        "count", "tag", "input-too", "without-subsets"])
def test_bad_synthesis_input_is_refused_with_one_clear_line(tmp_path: Path, args: tuple, message: str) -> None:
    assert message in _cli_error(tmp_path, *args)


def test_the_bundled_synthesis_example_runs_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    proc = run_cli("run", "--config", "examples/synth.toml", "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "question synthesis" in proc.stdout and "docs" in proc.stdout
    assert set(by_id(out / "questions.jsonl")) == KEPT
    assert "Loading weights" not in proc.stderr and "Warning" not in proc.stderr


def test_the_report_of_a_questions_only_run_shows_the_synthesis_table(all_modes: tuple[Path, object],
                                                                       tmp_path: Path) -> None:
    from kodcode_async.report import write_report

    report = write_report(str(all_modes[0]), str(tmp_path / "report.html"))
    page = Path(report.html).read_text()
    table = page.split('<table id="question-synthesis">', 1)[1].split("</table>", 1)[0]
    assert "<td>docs</td><td>1</td><td>abstained 1</td><td>0</td><td>0</td><td>0</td><td>1</td>" in table
    assert "<td>filter</td><td>3</td><td>0</td><td>1</td><td>0</td><td>0</td><td>2</td>" in table
    assert report.figures == {}  # no verified rows yet: nothing to plot, and no error


def test_a_huge_seed_is_cut_so_its_request_cannot_fail_on_the_context_limit() -> None:
    from kodcode_async.stages.base import Item
    from kodcode_async.stages.questions import MAX_SEED_CHARS, QuestionStage

    stage = QuestionStage(options(("docs",)), llm=None, concurrency=1)  # type: ignore[arg-type]
    page = "bisect.insort(a, x) inserts x in sorted order. " * 20000  # ~1 MB
    row = {"prompt_id": "docs/000000", "subset": "docs", "index": 0,
           "seeds": [{"id": "p", "text": page, "package": "bisect", "title": ""}]}
    request, prefix = stage.request(Item("docs/000000", row))
    prompt = request.messages[0]["content"]
    assert prefix is None and "[... the rest is cut ...]" in prompt
    assert MAX_SEED_CHARS < len(prompt) < MAX_SEED_CHARS + 2000


def test_the_style_stage_passes_stdin_programs_by_without_asking_the_model() -> None:
    from kodcode_async.stages.base import Item
    from kodcode_async.stages.style import StyleStage

    stage = StyleStage(llm=None, sandbox=None, concurrency=1)  # type: ignore[arg-type]  # neither may be used
    item = Item("cf/1/0", {"question_id": "cf/1/0", "question": "Read n, print n+1.", "format": "stdin",
                           "solution": "print(int(input()) + 1)\n", "test": '[{"input": "1", "output": "2"}]'})
    out = asyncio.run(stage.process(item))
    assert out is item and out.side[0][0] == StyleStage.rejected_file
    assert out.side[0][1]["check"] == "stdin" and stage.checks == {"stdin": 1}


def test_a_prompt_answered_with_no_choice_at_all_is_recorded_not_lost(tmp_path: Path) -> None:
    recorded = tmp_path / "recorded.jsonl"
    recorded.write_bytes(orjson.dumps({"stage": "questions", "item_id": "prefill/000000", "attempt": 0,
                                       "responses": []}) + b"\n")
    out = tmp_path / "run"
    report = run(out, options(("prefill",), prefill_n=1, dedup_threshold=None, decontam_threshold=None),
                 backend=RecordedBackend(str(recorded)))
    assert by_id(out / "questions_rejected.jsonl")["prefill/000000/0"]["reason"] == "empty"
    assert report.complete
