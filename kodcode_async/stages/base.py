"""What flows through the chain, and the clients a stage is given.

A stage is plain async code over one `Item` (see engine.py for the three kinds). It never sees
queues, workers or the executor: what it needs from outside comes as injected clients with
their own limits, `llm` and `sandbox` (resources.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Item:
    """One item: `row` is what it is written as (a question row, then a KodCode-V1 row), grown by
    each stage; `side` holds other rows it produced, as (file name, row), written just before it."""

    id: str
    row: dict
    side: list[tuple[str, dict]] = field(default_factory=list)


class BadRow(ValueError):
    """An input row a stage cannot take; the reason is recorded with the row's line number."""


def question_item(row: object, lineno: int) -> Item:
    """An Item from one question row: needs a non-empty string `question`; id and subset optional."""
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip():
        raise BadRow("row has no non-empty string 'question'")
    qid = str(row.get("question_id") or row.get("id") or f"q{lineno:06d}")
    out = {k: v for k, v in row.items() if k not in ("question", "question_id", "id", "subset")}
    return Item(qid, {"question_id": qid, "question": row["question"], "subset": str(row.get("subset") or "default"),
                      **out})


def verified_item(row: object, lineno: int) -> Item:
    """An Item from a verified KodCode-V1 row (the input of the stages after `solutions`)."""
    item = question_item(row, lineno)
    for key in ("solution", "test"):
        if not isinstance(item.row.get(key), str) or not item.row[key].strip():
            raise BadRow(f"row has no '{key}': stages after 'solutions' take verified rows (verified.jsonl)")
    item.row = dict(row)  # type: ignore[arg-type]
    item.row["question_id"] = item.id
    return item
