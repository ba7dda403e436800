"""The published shape of a row: V1's names, ids, value types and columns, field by field."""

import os

import pyarrow as pa

from kodcode_async.schema import (
    dataset_schema,
    published_row,
    table,
    trial_key,
    v1_prompt_id,
    v1_question_id,
    v1_subset,
)

ROW = {
    "version": "v1", "style": "instruct", "subset": "leetcode", "question_id": "leetcode/000003/0",
    "question": "Write f.", "solution": "def f(a):\n    return a\n", "test": "def test_f(): pass\n",
    "test_info": [{"docstring": None, "function_declaration": "def f(a):", "function_name": "f",
                   "parameter_list": ["a", "b=1"]},
                  {"docstring": {"odd": 1}, "function_declaration": None, "function_name": "g",
                   "parameter_list": "(x)"}],
    "gpt_pass_sequence": [0, 1, 1], "gpt_pass_trial_num": 2, "gpt_difficulty": "easy", "gpt_pass_percentage": 2 / 3,
    "trials": {"trial_0": {"solution_code": "s0", "test_code": "t0", "test_coverage": None, "test_result": "Fail"},
               "trial_2": {"solution_code": "s2", "test_code": "t2", "test_coverage": 75, "test_result": "Pass",
                           "file_source": "x.py"}},
    "chosen_trial": "trial_2",
    "metadata": {"seed_ids": ["s1", "s2"], "prompt_id": "p9", "model": "m"},
    "benchmark_similarity": 1, "benchmark_instruction": "bi", "benchmark_task_id": "HumanEval/1",
    "filter_reason": "ok",
}


def test_v1_names_ids_and_prompt_ids():
    assert v1_subset("data_structure") == "Data_Structure" and v1_subset("LEETCODE") == "Leetcode"
    assert v1_subset("my-subset") == "my-subset" and v1_subset(None) is None
    assert v1_prompt_id(ROW) == "000003_0"
    assert v1_prompt_id({"subset": "Leetcode", "question_id": "leetcode/7"}) == "7"  # the prefix in any case
    assert v1_prompt_id({"subset": "docs", "question_id": "demo/001"}) == "demo_001"  # another prefix stays
    assert v1_prompt_id({"subset": "docs", "question_id": "docs"}) == "docs"  # no '/': not a prefix
    assert v1_prompt_id({}) == ""
    assert v1_question_id(ROW) == "Leetcode_000003_0_I"
    assert v1_question_id({**ROW, "style": "complete"}) == "Leetcode_000003_0_C"
    assert v1_question_id({**ROW, "style": None}) == "Leetcode_000003_0_I"
    assert v1_question_id({**ROW, "style": "other"}) == "Leetcode_000003_0_I"


def test_a_row_in_the_published_shape_with_v1_ids():
    out = published_row(ROW, 41)
    assert out == {
        "version": "v1", "style": "instruct", "subset": "Leetcode", "question_id": "Leetcode_000003_0_I",
        "question": "Write f.", "solution": "def f(a):\n    return a\n", "test": "def test_f(): pass\n",
        "test_info": [{"docstring": None, "function_declaration": "def f(a):", "function_name": "f",
                       "parameter_list": "(a, b=1)"},
                      {"docstring": '{"odd":1}', "function_declaration": None, "function_name": "g",
                       "parameter_list": "(x)"}],
        "gpt_pass_sequence": [0, 1, 1], "gpt_pass_trial_num": 2, "gpt_difficulty": "easy",
        "gpt_pass_percentage": 0.667,
        "trials": {"trial_gpt4o_0": {"file_source": "leetcode", "solution_code": "s0", "test_code": "t0",
                                     "test_coverage": None, "test_result": "Fail"},
                   "trial_gpt4o_2": {"file_source": "x.py", "solution_code": "s2", "test_code": "t2",
                                     "test_coverage": 75.0, "test_result": "Pass"}},
        "chosen_trial": "trial_gpt4o_2",
        "metadata": {"original_instruction": "", "prompt_id": "000003_0", "row_id": 41, "seed_ids": '["s1","s2"]'},
        "benchmark_similarity": 1.0, "benchmark_instruction": "bi", "benchmark_task_id": "HumanEval/1",
        "filter_reason": "ok",
    }
    assert isinstance(out["trials"]["trial_gpt4o_2"]["test_coverage"], float)
    assert isinstance(out["benchmark_similarity"], float)


def test_our_ids_a_completion_row_and_the_sft_columns():
    complete = {**ROW, "style": "complete", "chosen_trial": None, "gpt_pass_percentage": None,
                "metadata": {"instruct_question": "Write f(a).", "seed_ids": "s1"},
                "r1_pass_sequence": [1, 0], "r1_correctness": 1, "r1_solution": "def f(a): return a"}
    out = published_row(complete, 0, nick="ours", sft_nick="r1", v1_ids=False)
    assert (out["subset"], out["question_id"], out["style"]) == ("leetcode", "leetcode/000003/0", "complete")
    assert out["metadata"] == {"original_instruction": "Write f(a).", "prompt_id": "leetcode/000003/0", "row_id": 0,
                               "seed_ids": "s1"}
    assert out["chosen_trial"] is None and out["gpt_pass_percentage"] is None
    assert sorted(out["trials"]) == ["trial_ours_0", "trial_ours_2"]
    assert (out["r1_pass_sequence"], out["r1_pass_trial_num"], out["r1_correctness"], out["r1_solution"]) == (
        [1, 0], 1, "True", "def f(a): return a")
    assert published_row({**ROW, "metadata": {"prompt_id": 5}}, 0, v1_ids=False)["metadata"]["prompt_id"] == "5"
    none = published_row({**complete, "r1_pass_sequence": None, "r1_correctness": None}, 0, sft_nick="r1")
    assert none["r1_pass_trial_num"] is None and none["r1_correctness"] is None
    assert published_row({**ROW, "r1_correctness": False}, 0, sft_nick="r1")["r1_correctness"] == "False"
    bare = published_row({"question_id": "q", "subset": "s"}, 3)
    assert bare["version"] == "v1" and bare["style"] == "instruct" and bare["gpt_pass_trial_num"] == 0
    assert bare["test_info"] == [] and bare["gpt_pass_sequence"] == [] and bare["trials"] == {}


def test_the_schema_has_the_published_columns_and_at_least_ten_trials():
    s = dataset_schema()
    assert s.names[:8] == ["version", "style", "subset", "question_id", "question", "solution", "test", "test_info"]
    assert s.names[-4:] == ["benchmark_similarity", "benchmark_instruction", "benchmark_task_id", "filter_reason"]
    assert [f.name for f in s.field("trials").type] == [trial_key("gpt4o", k) for k in range(10)]
    assert len(dataset_schema(trials=3).field("trials").type) == 10
    assert [f.name for f in dataset_schema(nick="x", trials=12).field("trials").type][-1] == "trial_x_11"
    assert dataset_schema(sft_nick="r1").names[-4:] == ["r1_pass_sequence", "r1_pass_trial_num", "r1_correctness",
                                                       "r1_solution"]
    t = table([published_row(ROW, 0)], dataset_schema())
    assert t.num_rows == 1 and t.schema.field("gpt_pass_trial_num").type == pa.int64()
    assert t.column("trials")[0].as_py()["trial_gpt4o_1"] is None  # absent trials are null


def _run_dir(tmp_path, rows=(ROW,), manifest=None, fingerprint=None):
    import json

    d = tmp_path / "run"
    d.mkdir()
    if fingerprint is not False:
        (d / "run.json").write_text(json.dumps({"fingerprint": fingerprint or {
            "stages": ["solutions"], "solutions": {"max_attempts": 3}}}))
    if rows is not None:
        (d / "verified.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if manifest is not None:
        (d / "manifest.json").write_text(json.dumps(manifest))
    return d


def test_export_writes_each_format_whole_and_says_how_finished_the_run_is(tmp_path):
    import json

    import pyarrow.parquet as pq

    from kodcode_async.export import export

    d = _run_dir(tmp_path, rows=[ROW, {**ROW, "question_id": "leetcode/000004/0"}], manifest={"complete": True})
    got = export(str(d), "jsonl")
    assert got.path == str(d / "export" / "dataset.jsonl") and got.rows == 2 and got.notes == ()
    rows = [json.loads(line) for line in (d / "export" / "dataset.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in rows] == ["Leetcode_000003_0_I", "Leetcode_000004_0_I"]
    assert [r["metadata"]["row_id"] for r in rows] == [0, 1] and rows[0] == {**published_row(ROW, 0), **{
        "trials": {**{trial_key("gpt4o", k): None for k in range(10)}, **published_row(ROW, 0)["trials"]}}}
    assert sorted(os.listdir(d / "export")) == ["dataset.jsonl"]  # no temporary left
    verl = export(str(d), "verl", str(tmp_path / "rl.parquet"), ids="ours")
    v = pq.read_table(verl.path).to_pylist()[1]
    assert v == {"data_source": "kodcode-async/leetcode", "prompt": [{"role": "user", "content": "Write f."}],
                 "ability": "code", "reward_model": {"style": "rule", "ground_truth": "def test_f(): pass\n"},
                 "extra_info": {"index": 1, "question_id": "leetcode/000004/0", "difficulty": "easy",
                                "style": "instruct", "test_info": json.dumps(ROW["test_info"], separators=(",", ":"))}}
    assert pq.read_table(export(str(d), "verl").path).to_pylist()[0]["data_source"] == "kodcode-async/Leetcode"
    parquet = export(str(d), "parquet", str(tmp_path / "out" / "d.parquet"), nick="mine")
    assert pq.read_table(parquet.path).schema.field("trials").type[0].name == "trial_mine_0"


def test_export_notes_an_unfinished_run_and_an_empty_one(tmp_path):
    from kodcode_async.export import export

    d = _run_dir(tmp_path, rows=None, manifest={"complete": False, "unfinished": 4})
    got = export(str(d), "jsonl", style="complete")
    assert got.rows == 0 and got.notes == (
        "the run is unfinished (4 items left); exporting the rows verified so far; run it again to finish",
        "no verified complete rows yet: wrote an empty dataset with the full schema")
    (d / "manifest.json").write_text("{broken")
    assert export(str(d), "jsonl").notes == (
        "the run is unfinished (interrupted, or still running: no manifest.json); exporting the rows verified so far",
        "no verified rows yet: wrote an empty dataset with the full schema")
    (d / "manifest.json").write_text('{"complete": false}')
    assert export(str(d), "jsonl").notes[0].startswith("the run is unfinished (? items left)")


def test_export_refuses_what_it_cannot_export_in_one_line(tmp_path):
    import pytest

    from kodcode_async.export import ExportError, export

    d = _run_dir(tmp_path, fingerprint=False, manifest={"complete": True})
    assert export(str(d), "jsonl").rows == 1  # verified rows without run.json (copied files) still export
    for args, kw, message in [
        ((str(d), "csv"), {}, "unknown format 'csv': choose "),
        ((str(d), "jsonl"), {"ids": "mine"}, "--ids must be v1 or ours, not 'mine'"),
        ((str(d), "jsonl"), {"style": "both"}, "--style must be all, instruct or complete, not 'both'"),
        ((str(tmp_path / "nope"), "jsonl"), {}, f"{tmp_path / 'nope'} is not a directory; give the run directory "
                                                "of `kodcode-async run --out`"),
        ((str(tmp_path), "jsonl"), {}, f"{tmp_path} is not a run directory: it has neither run.json nor "
                                       "verified.jsonl"),
    ]:
        with pytest.raises(ExportError) as e:
            export(*args, **kw)
        assert str(e.value).startswith(message), str(e.value)


def test_export_takes_the_styles_asked_the_sft_columns_and_the_runs_attempts(tmp_path):
    import json

    import pyarrow.parquet as pq

    from kodcode_async.export import export

    fingerprint = {"stages": ["solutions", "style", "sft"], "sft": {"nickname": "r1"},
                   "solutions": {"max_attempts": 12}}
    d = _run_dir(tmp_path, rows=[{**ROW, "r1_pass_sequence": [1], "r1_correctness": True, "r1_solution": "s"}],
                 manifest={"complete": True}, fingerprint=fingerprint)
    (d / "verified_complete.jsonl").write_text(json.dumps({**ROW, "style": "complete"}) + "\n")
    t = pq.read_table(export(str(d), "parquet").path)
    assert t.column("style").to_pylist() == ["instruct", "complete"]
    assert len(t.schema.field("trials").type) == 12 and t.column("r1_correctness").to_pylist() == ["True", None]
    assert pq.read_table(export(str(d), "parquet", style="instruct").path).column("style").to_pylist() == ["instruct"]
    assert pq.read_table(export(str(d), "parquet", style="complete").path).column("style").to_pylist() == ["complete"]
    # Without the sft stage in the run, its nickname is not a column.
    (d / "run.json").write_text(json.dumps({"fingerprint": {**fingerprint, "stages": ["solutions"]}}))
    assert "r1_correctness" not in pq.read_table(export(str(d), "parquet").path).schema.names
    no_style = {k: v for k, v in ROW.items() if k != "style"}
    (d / "verified.jsonl").write_text(json.dumps(no_style) + "\n")
    (d / "verified_complete.jsonl").unlink()
    assert pq.read_table(export(str(d), "verl").path).to_pylist()[0]["extra_info"]["style"] == "instruct"


def test_a_failed_export_leaves_no_temporary_and_hf_writes_locally(tmp_path):
    import pytest

    from kodcode_async.export import ExportError, export

    d = _run_dir(tmp_path, manifest={"complete": True})
    blocked = tmp_path / "blocked.jsonl"
    blocked.mkdir()  # the final rename fails: a directory is in the way
    with pytest.raises(OSError):
        export(str(d), "jsonl", str(blocked))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked.jsonl", "run"]
    with pytest.raises(ExportError) as e:
        export(str(d), "xml")
    assert str(e.value) == "unknown format 'xml': choose jsonl, parquet, verl, hf"
    got = export(str(d), "hf", str(tmp_path / "hf"), push_to_hub="me/data", token=None)
    assert got.notes == (f"not pushed to me/data: no Hugging Face token (set HF_TOKEN or run `huggingface-cli "
                         f"login`); the dataset is in {tmp_path / 'hf'}",)
    import datasets

    assert datasets.load_from_disk(str(tmp_path / "hf"))[0]["question_id"] == "Leetcode_000003_0_I"
    assert export(str(d), "hf", str(tmp_path / "hf2")).notes == ()
