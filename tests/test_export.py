"""Export: KodCode-V1's column types, instruct and completion rows, unfinished and empty runs, hf."""

import json
import os

import datasets
import pyarrow.parquet as pq
import pytest

from tests.conftest import read_jsonl, run_cli

# KodCode-V1's published features, written out by hand (not from kodcode_async/schema.py), so the
# test checks our export against the published shape, not against itself.
S = datasets.Value("string")
TRIAL = {"file_source": S, "solution_code": S, "test_code": S, "test_coverage": datasets.Value("float64"),
         "test_result": S}
PUBLISHED = datasets.Features({
    "version": S, "style": S, "subset": S, "question_id": S, "question": S, "solution": S, "test": S,
    "test_info": [{"docstring": S, "function_declaration": S, "function_name": S, "parameter_list": S}],
    "gpt_pass_sequence": datasets.Sequence(datasets.Value("int64")), "gpt_pass_trial_num": datasets.Value("int64"),
    "gpt_difficulty": S, "gpt_pass_percentage": datasets.Value("float64"),
    "trials": {f"trial_gpt4o_{k}": TRIAL for k in range(10)},
    "chosen_trial": S,
    "metadata": {"original_instruction": S, "prompt_id": S, "row_id": datasets.Value("int64"), "seed_ids": S},
    "benchmark_similarity": datasets.Value("float64"), "benchmark_instruction": S, "benchmark_task_id": S,
    "filter_reason": S,
})


def published_rows():
    trial = {"file_source": "magpie", "solution_code": "def f():\n    return 1\n",
             "test_code": "from solution import *\n\ndef test_f():\n    assert f() == 1\n", "test_coverage": 100.0,
             "test_result": "Pass"}
    row = {"version": "v1.0", "style": "instruct", "subset": "Leetcode", "question_id": "Leetcode_1_I",
           "question": "Write f.", "solution": trial["solution_code"], "test": trial["test_code"],
           "test_info": [{"docstring": None, "function_declaration": "def f():", "function_name": "f",
                          "parameter_list": "()"}],
           "gpt_pass_sequence": [1, 1, 1], "gpt_pass_trial_num": 3, "gpt_difficulty": "easy",
           "gpt_pass_percentage": 1.0,
           "trials": {f"trial_gpt4o_{k}": (trial if k < 3 else None) for k in range(10)},
           "chosen_trial": "trial_gpt4o_0",
           "metadata": {"original_instruction": "Write f.", "prompt_id": "p1", "row_id": 1, "seed_ids": "[]"},
           "benchmark_similarity": 0.4, "benchmark_instruction": "b", "benchmark_task_id": "HumanEval/0",
           "filter_reason": None}
    return datasets.Dataset.from_list([row, {**row, "subset": "Prefill", "question_id": "Prefill_2_I"}],
                                      features=PUBLISHED)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, isolated):
    """The demo, its questions filed under two of V1's subsets (one spelt as V1 does, one as we do)."""
    from tests.conftest import ROOT

    base = tmp_path_factory.mktemp("export")
    questions = base / "questions.jsonl"
    rows = read_jsonl(ROOT / "examples" / "questions.jsonl")
    for i, row in enumerate(rows):
        row["subset"] = "leetcode" if i % 2 == 0 else "Docs"
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = base / "run"
    r = run_cli("run", "--config", "examples/demo.toml", "--input", str(questions), "--out", str(out), "--sft-n", "0")
    assert r.returncode == 0, r.stderr
    return out


def test_the_demo_exports_with_the_published_types_and_concatenates_with_kodcode_v1(demo_run, tmp_path):
    out = tmp_path / "demo.parquet"
    r = run_cli("export", str(demo_run), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote 7 rows" in r.stdout and "unfinished" not in r.stderr
    ours = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert ours.features == PUBLISHED
    both = datasets.concatenate_datasets([ours, published_rows()])
    assert len(both) == 9
    # One dataset: V1's subset names, ids and difficulty rule.
    leetcode = both.filter(lambda r: r["subset"] == "Leetcode")
    assert sorted(leetcode["question_id"]) == ["Leetcode_1_I", "Leetcode_demo-001_C", "Leetcode_demo-001_I",
                                                "Leetcode_demo-003_I", "Leetcode_demo-005_C", "Leetcode_demo-005_I"]
    assert set(both["subset"]) == {"Leetcode", "Docs", "Prefill"}
    assert len(set(both["question_id"])) == len(both)  # unique, the instruct and completion twins included
    easy = both.filter(lambda r: r["gpt_difficulty"] == "easy")
    assert sorted(easy["question_id"]) == ["Leetcode_1_I", "Leetcode_demo-001_C", "Leetcode_demo-001_I",
                                           "Leetcode_demo-005_C", "Leetcode_demo-005_I", "Prefill_2_I"]
    rows = {r["question_id"]: r for r in ours}
    assert rows["Leetcode_demo-005_I"]["gpt_pass_percentage"] == 0.667  # 3 decimals, as V1
    assert rows["Leetcode_demo-005_I"]["metadata"]["prompt_id"] == "demo-005"
    assert rows["Leetcode_demo-005_I"]["metadata"]["original_instruction"] == ""
    verified = {r["question_id"]: r for r in read_jsonl(demo_run / "verified.jsonl")}
    complete = {r["question_id"] for r in read_jsonl(demo_run / "verified_complete.jsonl")}
    subset = {q: "Leetcode" if int(q[-1]) % 2 else "Docs" for q in verified}
    assert set(rows) == {f"{subset[q]}_{q}_I" for q in verified} | {f"{subset[q]}_{q}_C" for q in complete}
    assert {r["style"] for r in ours if r["question_id"].endswith("_C")} == {"complete"}
    rows = {(r["metadata"]["prompt_id"], r["style"]): r for r in ours}
    row = rows[("demo-003", "instruct")]
    assert row["gpt_pass_sequence"] == [0, 0, 0, 0, 1] and row["chosen_trial"] == "trial_gpt4o_4"
    assert row["trials"]["trial_gpt4o_4"]["test_result"] == "Pass" and row["trials"]["trial_gpt4o_5"] is None
    assert row["trials"]["trial_gpt4o_4"]["test_code"] == verified["demo-003"]["test"]
    assert rows[("demo-005", "instruct")]["test_info"][0]["parameter_list"] == "(nums, target)"
    stub = rows[("demo-005", "complete")]
    assert stub["question"].startswith("def pair_sum(") and stub["metadata"]["original_instruction"].startswith(
        "Write a function `pair_sum")
    # --style picks; jsonl carries the same types.
    r = run_cli("export", str(demo_run), "--style", "complete", "--format", "jsonl", "-o", str(tmp_path / "c.jsonl"))
    assert r.returncode == 0 and "wrote 3 rows" in r.stdout
    assert {row["style"] for row in read_jsonl(tmp_path / "c.jsonl")} == {"complete"}
    # --ids ours keeps the run's own names.
    r = run_cli("export", str(demo_run), "--ids", "ours", "--format", "jsonl", "-o", str(tmp_path / "o.jsonl"))
    assert r.returncode == 0, r.stderr
    own = read_jsonl(tmp_path / "o.jsonl")
    assert {(x["subset"], x["question_id"]) for x in own if x["style"] == "instruct"} == {
        (v["subset"], q) for q, v in verified.items()}
    assert {x["subset"] for x in own} == {"leetcode", "Docs"}


def test_sft_columns_follow_the_sft_release_and_trial_nicks_are_configurable(tmp_path, isolated):
    run = tmp_path / "run"
    assert run_cli("run", "--config", "examples/demo.toml", "--out", str(run), "--stop-after", "sft").returncode == 0
    r = run_cli("export", str(run), "--style", "instruct", "--nick", "qwen", "-o", str(tmp_path / "d.parquet"))
    assert r.returncode == 0, r.stderr
    table = pq.read_table(tmp_path / "d.parquet")
    assert str(table.schema.field("r1_pass_sequence").type) == "list<element: int64>"
    assert str(table.schema.field("r1_correctness").type) == "string"
    rows = {r["metadata"]["prompt_id"]: r for r in table.to_pylist()}
    assert rows["demo-001"]["question_id"] == "demo_demo-001_I"  # a subset V1 does not have keeps its name
    assert rows["demo-001"]["r1_pass_sequence"] == [1, 0] and rows["demo-001"]["r1_correctness"] == "True"
    assert rows["demo-002"]["r1_correctness"] == "False" and rows["demo-001"]["chosen_trial"].startswith("trial_qwen_")


def test_an_unfinished_run_without_verified_rows_exports_an_empty_file_with_the_full_schema(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"fingerprint": {"stages": ["solutions"]}}))
    (run / "failed.jsonl").write_text("")
    r = run_cli("export", str(run), "-o", str(tmp_path / "e.parquet"))
    assert r.returncode == 0, r.stderr
    assert "the run is unfinished" in r.stderr and "no verified rows yet" in r.stderr
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.num_rows == 0
    assert datasets.Features.from_arrow_schema(table.schema) == PUBLISHED
    r = run_cli("export", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "is not a directory" in r.stderr
    r = run_cli("export", str(tmp_path))
    assert r.returncode == 2 and "is not a run directory" in r.stderr


def test_hf_format_writes_a_datasets_folder_and_the_push_needs_a_token(demo_run, tmp_path):
    folder = tmp_path / "hf"
    env_without_token = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env_without_token.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    import subprocess
    import sys

    from tests.conftest import ROOT

    def export(*extra, env):
        return subprocess.run([sys.executable, "-m", "kodcode_async", "export", str(demo_run), "--format", "hf",
                               "-o", str(folder), *extra], capture_output=True, text=True, cwd=ROOT, env=env)

    r = export("--push-to-hub", "someone/kodcode-demo", env=env_without_token)
    assert r.returncode == 0, r.stderr
    assert "not pushed to someone/kodcode-demo: no Hugging Face token" in r.stderr
    assert datasets.load_from_disk(str(folder)).features == PUBLISHED
    # With a token but no network (offline mode): the push is attempted, fails, and says so.
    r = export("--push-to-hub", "someone/kodcode-demo", env={**env_without_token, "HF_TOKEN": "hf_fake"})
    assert r.returncode == 0, r.stderr
    assert "not pushed to someone/kodcode-demo: " in r.stderr and "no Hugging Face token" not in r.stderr
    assert len(datasets.load_from_disk(str(folder))) == 7
