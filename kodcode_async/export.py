"""`kodcode-async export`: the run's verified rows as dataset files."""

from __future__ import annotations

import os

import orjson


class ExportError(ValueError):
    pass


# Nested columns whose shape varies by row are stored as JSON text in parquet, so every file
# has one stable schema (trials are keyed by trial name; test_info lists vary in length).
_JSON_COLUMNS = ("trials", "test_info", "metadata")


def _rows(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "verified.jsonl")
    if not os.path.exists(path):
        raise ExportError(f"{path} not found: is {run_dir} a run directory?")
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


def verl_row(row: dict, index: int) -> dict:
    return {
        "data_source": f"kodcode-async/{row['subset']}",
        "prompt": [{"role": "user", "content": row["question"]}],
        "ability": "code",
        "reward_model": {"style": "rule", "ground_truth": row["test"]},
        "extra_info": {"index": index, "question_id": row["question_id"], "difficulty": row["gpt_difficulty"],
                       "test_info": orjson.dumps(row["test_info"]).decode()},
    }


def export(run_dir: str, fmt: str, output: str | None = None) -> str:
    rows = _rows(run_dir)
    name = {"jsonl": "dataset.jsonl", "parquet": "dataset.parquet", "verl": "verl.parquet"}[fmt]
    out = output or os.path.join(run_dir, "export", name)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    if fmt == "jsonl":
        with open(tmp, "wb") as f:
            for row in rows:
                f.write(orjson.dumps(row) + b"\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if fmt == "verl":
            table = pa.Table.from_pylist([verl_row(r, i) for i, r in enumerate(rows)])
        else:
            flat = [{k: (orjson.dumps(v).decode() if k in _JSON_COLUMNS else v) for k, v in r.items()} for r in rows]
            table = pa.Table.from_pylist(flat)
        pq.write_table(table, tmp)
    os.replace(tmp, out)
    return out
