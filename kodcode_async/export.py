"""`kodcode-async export`: a run's verified rows as dataset files with KodCode-V1's column types.

Formats: `parquet` and `jsonl` (the published shape, schema.py), `verl` (verl's RL parquet), `hf` (a
`datasets` folder, optionally pushed to the Hugging Face Hub). Instruct rows come from
verified.jsonl, completion-style rows from verified_complete.jsonl; `style` chooses. An
unfinished run is exported with what it has, and says so; a run with no verified rows gives an
empty file with the full schema.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import orjson

from kodcode_async import schema
from kodcode_async.jsonl import iter_lines
from kodcode_async.rundir import MANIFEST, RUN_JSON
from kodcode_async.writers import replacing

FILES = {"instruct": "verified.jsonl", "complete": "verified_complete.jsonl"}
NAMES = {"jsonl": "dataset.jsonl", "parquet": "dataset.parquet", "verl": "verl.parquet", "hf": "hf_dataset"}


class ExportError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Exported:
    path: str
    rows: int
    notes: tuple[str, ...]  # what the user should know: unfinished run, no rows, not pushed, ...


def _read(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    return [orjson.loads(line) for _, line in iter_lines(path)]


def _run_info(run_dir: str) -> tuple[dict, list[str]]:
    """The run's fingerprint, and notes on how finished it is."""
    if not os.path.isdir(run_dir):
        raise ExportError(f"{run_dir} is not a directory; give the run directory of `kodcode-async run --out`")
    try:
        with open(os.path.join(run_dir, RUN_JSON), "rb") as f:  # pragma: no mutate - text mode reads the same in UTF-8 locales
            fingerprint = orjson.loads(f.read())["fingerprint"]
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError):
        if not os.path.exists(os.path.join(run_dir, FILES["instruct"])):
            raise ExportError(f"{run_dir} is not a run directory: it has neither {RUN_JSON} nor "
                              f"{FILES['instruct']}") from None
        fingerprint = {}
    notes = []
    try:
        with open(os.path.join(run_dir, MANIFEST), "rb") as f:  # pragma: no mutate - as above
            manifest = orjson.loads(f.read())
        if not manifest.get("complete"):
            notes.append(f"the run is unfinished ({manifest.get('unfinished', '?')} items left); exporting the rows "
                         "verified so far; run it again to finish")
    except (FileNotFoundError, orjson.JSONDecodeError):
        notes.append("the run is unfinished (interrupted, or still running: no manifest.json); exporting the rows "
                     "verified so far")
    return fingerprint, notes


def verl_row(row: dict, index: int, v1_ids: bool) -> dict:
    subset, question_id = ((schema.v1_subset(row["subset"]), schema.v1_question_id(row)) if v1_ids
                           else (row["subset"], row["question_id"]))
    return {
        "data_source": f"kodcode-async/{subset}",
        "prompt": [{"role": "user", "content": row["question"]}],
        "ability": "code",
        "reward_model": {"style": "rule", "ground_truth": row["test"]},
        "extra_info": {"index": index, "question_id": question_id, "difficulty": row["gpt_difficulty"],
                       "style": row.get("style", "instruct"), "test_info": orjson.dumps(row["test_info"]).decode()},
    }


def export(run_dir: str, fmt: str, output: str | None = None, *, style: str = "all",
           nick: str = schema.PUBLISHED_NICK, push_to_hub: str | None = None, private: bool = False,
           token: str | None = None, ids: str = "v1") -> Exported:
    """Write the dataset; raises ExportError with the reason when it cannot.

    `ids` "v1" (the default) writes KodCode-V1's subset names and question ids, so a
    concatenation with V1 filters and joins as one dataset; "ours" keeps the run's own.
    """
    if fmt not in NAMES:
        raise ExportError(f"unknown format {fmt!r}: choose {', '.join(NAMES)}")
    if ids not in ("v1", "ours"):
        raise ExportError(f"--ids must be v1 or ours, not {ids!r}")
    v1_ids = ids == "v1"
    if style not in ("all", "instruct", "complete"):
        raise ExportError(f"--style must be all, instruct or complete, not {style!r}")
    fingerprint, notes = _run_info(run_dir)
    styles = ("instruct", "complete") if style == "all" else (style,)
    rows = [r for s in styles for r in _read(os.path.join(run_dir, FILES[s]))]
    if not rows:
        notes.append(f"no verified {'' if style == 'all' else style + ' '}rows yet: wrote an empty dataset "
                     "with the full schema")
    sft = fingerprint.get("sft") or {}
    sft_nick = sft.get("nickname") if "sft" in fingerprint.get("stages", []) else None
    attempts = max([len(r.get("gpt_pass_sequence") or []) for r in rows] +
                   [int((fingerprint.get("solutions") or {}).get("max_attempts") or 0)])
    out = output or os.path.join(run_dir, "export", NAMES[fmt])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt == "verl":
        table = pa.Table.from_pylist([verl_row(r, i, v1_ids) for i, r in enumerate(rows)], schema=schema.VERL)
    else:
        target = schema.dataset_schema(nick, attempts, sft_nick)
        table = schema.table([schema.published_row(r, i, nick, sft_nick, v1_ids) for i, r in enumerate(rows)],
                             target)
    if fmt in ("jsonl", "parquet", "verl"):
        # the file appears whole or not at all: a full disk leaves neither it nor the temporary
        with replacing(out) as tmp:
            if fmt == "jsonl":
                with open(tmp, "wb") as f:
                    for row in table.to_pylist():
                        f.write(orjson.dumps(row) + b"\n")
            else:
                pq.write_table(table, tmp)
    else:
        notes += _write_hf(table, out, push_to_hub, private, token)
    return Exported(out, len(rows), tuple(notes))


def _write_hf(table, out: str, repo: str | None, private: bool, token: str | None) -> list[str]:  # noqa: ANN001
    try:
        import datasets
    except ImportError as e:
        raise ExportError("--format hf needs the datasets package: pip install 'kodcode-async[hf]'") from e
    ds = datasets.Dataset(table)
    ds.save_to_disk(out)
    if not repo:
        return []
    if not token:
        return [f"not pushed to {repo}: no Hugging Face token (set HF_TOKEN or run `huggingface-cli login`); "
                f"the dataset is in {out}"]
    try:
        ds.push_to_hub(repo, private=private, token=token)
    except Exception as e:  # noqa: BLE001 - offline, auth, hub errors: the local copy is the result
        return [f"not pushed to {repo}: {type(e).__name__}: {str(e)[:300]}; the dataset is in {out}"]
    return [f"pushed to https://huggingface.co/datasets/{repo}"]
