"""The Arrow schema of exported datasets: KodCode-V1's published column types, in one place.

Exported rows load like the published KodCode-V1 (and its SFT companion for the `r1_*`
columns), so `datasets.concatenate_datasets` accepts ours next to theirs:

    version, style, subset, question_id, question, solution, test: string
    test_info: list<struct<docstring, function_declaration, function_name, parameter_list: string>>
    gpt_pass_sequence: list<int64>; gpt_pass_trial_num: int64; gpt_difficulty: string
    gpt_pass_percentage: double
    trials: struct<trial_<nick>_<k>: struct<file_source, solution_code, test_code: string,
                                            test_coverage: double, test_result: string>>, k < 10
    chosen_trial: string
    metadata: struct<original_instruction, prompt_id: string, row_id: int64, seed_ids: string>
    benchmark_similarity: double; benchmark_instruction, benchmark_task_id, filter_reason: string

The published trials use the nick `gpt4o` and ten attempts; both are parameters here. What our
rows know beyond the published columns (each trial's status and reason, the model's name, the
prompt hash) stays in the run directory's JSONL files.
"""

from __future__ import annotations

import orjson
import pyarrow as pa

PUBLISHED_NICK = "gpt4o"
PUBLISHED_TRIALS = 10

TEST_INFO = pa.list_(pa.struct([("docstring", pa.string()), ("function_declaration", pa.string()),
                                ("function_name", pa.string()), ("parameter_list", pa.string())]))
TRIAL = pa.struct([("file_source", pa.string()), ("solution_code", pa.string()), ("test_code", pa.string()),
                   ("test_coverage", pa.float64()), ("test_result", pa.string())])
METADATA = pa.struct([("original_instruction", pa.string()), ("prompt_id", pa.string()), ("row_id", pa.int64()),
                      ("seed_ids", pa.string())])
# Reject-sampling columns as the SFT release (KodCode-V1-SFT-R1) types them, under our nickname
# (its correctness is a string, "True"/"False"). The passing answer itself is in sft.jsonl.
SFT_COLUMNS = (("pass_sequence", pa.list_(pa.int64())), ("pass_trial_num", pa.int64()),
               ("correctness", pa.string()), ("solution", pa.string()))
# verl's RL parquet (`export --format verl`): the prompt, the tests as the rule reward's ground truth.
VERL = pa.schema([
    ("data_source", pa.string()),
    ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("ability", pa.string()),
    ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
    ("extra_info", pa.struct([("index", pa.int64()), ("question_id", pa.string()), ("difficulty", pa.string()),
                              ("style", pa.string()), ("test_info", pa.string())])),
])


def trial_key(nick: str, k: int) -> str:
    return f"trial_{nick}_{k}"


def dataset_schema(nick: str = PUBLISHED_NICK, trials: int = PUBLISHED_TRIALS, sft_nick: str | None = None) -> pa.Schema:
    """The export schema; `trials` is the number of trial fields (at least the published ten)."""
    fields = [
        ("version", pa.string()), ("style", pa.string()), ("subset", pa.string()), ("question_id", pa.string()),
        ("question", pa.string()), ("solution", pa.string()), ("test", pa.string()), ("test_info", TEST_INFO),
        ("gpt_pass_sequence", pa.list_(pa.int64())), ("gpt_pass_trial_num", pa.int64()),
        ("gpt_difficulty", pa.string()), ("gpt_pass_percentage", pa.float64()),
        ("trials", pa.struct([(trial_key(nick, k), TRIAL) for k in range(max(trials, PUBLISHED_TRIALS))])),
        ("chosen_trial", pa.string()), ("metadata", METADATA), ("benchmark_similarity", pa.float64()),
        ("benchmark_instruction", pa.string()), ("benchmark_task_id", pa.string()), ("filter_reason", pa.string()),
    ]
    if sft_nick:
        fields += [(f"{sft_nick}_{name}", kind) for name, kind in SFT_COLUMNS]
    return pa.schema(fields)


# KodCode-V1's spelling of each subset (the reference's combine step writes these); ours are lower-case.
V1_SUBSETS = {name.lower(): name for name in (
    "Leetcode", "Codeforces", "Apps", "Taco", "Code_Contests", "Package", "Evol", "Algorithm", "Data_Structure",
    "Docs", "Prefill", "Filter")}
V1_SUFFIX = {"instruct": "I", "complete": "C"}


def v1_subset(subset: str | None) -> str | None:
    """V1's name of one of the 12 subsets (any case); any other subset name is left as it is."""
    return V1_SUBSETS.get(subset.lower(), subset) if isinstance(subset, str) else subset


def v1_prompt_id(row: dict) -> str:
    """The question's key in V1's `<Subset>_<prompt_id>_<I|C>`: our question id without its subset
    prefix, '/' as '_' (leetcode/000003/0 -> 000003_0; a user's demo-001 stays demo-001)."""
    qid = str(row.get("question_id") or "")
    subset = str(row.get("subset") or "")
    if subset and qid.lower().startswith(subset.lower() + "/"):
        qid = qid[len(subset) + 1:]
    return qid.replace("/", "_")


def v1_question_id(row: dict) -> str:
    """`<Subset>_<prompt_id>_I` for an instruct row, `_C` for its completion-style twin, as in V1."""
    suffix = V1_SUFFIX.get(row.get("style") or "instruct", "I")
    return f"{v1_subset(row.get('subset'))}_{v1_prompt_id(row)}_{suffix}"


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def published_row(row: dict, row_id: int, nick: str = PUBLISHED_NICK, sft_nick: str | None = None,
                  v1_ids: bool = True) -> dict:
    """One of our rows (verified.jsonl or verified_complete.jsonl) in the published shape.

    With `v1_ids` (the default) the values follow V1 too: subset names as V1 spells them,
    question_id `<Subset>_<prompt_id>_I|C` with that prompt_id in the metadata, and an empty
    original_instruction on instruct rows. Without, our subset names and ids stay.
    """
    trials = {}
    for name, t in (row.get("trials") or {}).items():
        k = int(name.rsplit("_", 1)[1])
        trials[trial_key(nick, k)] = {
            "file_source": t.get("file_source") or row.get("subset"), "solution_code": t.get("solution_code"),
            "test_code": t.get("test_code"), "test_coverage": _float(t.get("test_coverage")),
            "test_result": t.get("test_result")}
    chosen = row.get("chosen_trial")
    meta = row.get("metadata") or {}
    style = row.get("style", "instruct")
    original = meta.get("instruct_question") or meta.get("original_instruction")
    if v1_ids:
        subset, question_id, prompt_id = v1_subset(row.get("subset")), v1_question_id(row), v1_prompt_id(row)
        original = original or ""
    else:
        subset, question_id = row.get("subset"), row.get("question_id")
        prompt_id = _text(meta.get("prompt_id", row.get("question_id")))
    percentage = _float(row.get("gpt_pass_percentage"))
    out = {
        "version": row.get("version", "v1"), "style": style, "subset": subset,
        "question_id": question_id, "question": row.get("question"), "solution": row.get("solution"),
        "test": row.get("test"),
        "test_info": [{"docstring": _text(i.get("docstring")),
                       "function_declaration": _text(i.get("function_declaration")),
                       "function_name": _text(i.get("function_name")), "parameter_list": _params(i.get("parameter_list"))}
                      for i in row.get("test_info") or []],
        "gpt_pass_sequence": [int(x) for x in row.get("gpt_pass_sequence") or []],
        "gpt_pass_trial_num": int(row.get("gpt_pass_trial_num") or 0), "gpt_difficulty": row.get("gpt_difficulty"),
        "gpt_pass_percentage": None if percentage is None else round(percentage, 3), "trials": trials,
        "chosen_trial": trial_key(nick, int(chosen.rsplit("_", 1)[1])) if chosen else None,
        "metadata": {"original_instruction": original, "prompt_id": prompt_id, "row_id": row_id,
                     "seed_ids": _text(meta.get("seed_ids"))},
        "benchmark_similarity": _float(row.get("benchmark_similarity")),
        "benchmark_instruction": row.get("benchmark_instruction"), "benchmark_task_id": row.get("benchmark_task_id"),
        "filter_reason": row.get("filter_reason"),
    }
    if sft_nick:
        seq = row.get(f"{sft_nick}_pass_sequence")
        correct = row.get(f"{sft_nick}_correctness")
        out.update({f"{sft_nick}_pass_sequence": seq, f"{sft_nick}_pass_trial_num": sum(seq) if seq else None,
                    f"{sft_nick}_correctness": None if correct is None else str(bool(correct)),
                    f"{sft_nick}_solution": row.get(f"{sft_nick}_solution")})
    return out


def _params(value: object) -> str | None:
    """The published form of a parameter list: "(a, b)"."""
    if isinstance(value, list):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return _text(value)


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows in the published shape as a table of exactly `schema` (absent trials are null)."""
    return pa.Table.from_pylist(rows, schema=schema)
