"""What flows through the chain, and the clients a stage is given.

A stage is plain async code over one `Item` (see engine.py for the three kinds). It never sees
queues, workers or the executor: what it needs from outside comes as injected clients with
their own limits, `llm` and `sandbox` (resources.py).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import msgspec

if TYPE_CHECKING:
    from kodcode_async.embedder import Embedder
    from kodcode_async.journal import Journal
    from kodcode_async.resources import LLMClient, SandboxClient
    from kodcode_async.run import RunConfig


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


class RunStage:
    """What a stage of a run promises, beyond the engine's `name`, `concurrency` and one of
    `process(item)` / `process_stream(items)` (engine.py). Every chain stage derives from this.

    * `output`: the file the rows go to when a run stops after this stage ("" inside the group of
      question stages, where only the group's last stage ends a run).
    * `drop_file`: where the items it drops (`Dropped`) are written; None when it drops nothing.
    * `side_files`: other files it writes a row to beside an item (`item.side`); on resume the run
      reads their ids back, so each side row is written once.
    * `read_item(row, lineno)`: how an input row becomes an item when a run starts at this stage;
      raises BadRow with the reason.
    * `replays_finished`: False: items finished by an earlier run are skipped as they are read.
      True: the stage must see them again (question synthesis: dedup decides each question from
      all those before it), and a later stage of its group skips them.
    * `start()`: awaited once before the first item (load an index, embed benchmarks).
    * `stats()`: its counters for the run report, by section: {"questions": QuestionCounts(...)}
      for the question-synthesis summary, {"llm": LLMCounts(...)} for the LLM figures (stats.py).
      The run adds up every stage's (`stats.add`), so a stage fills in only what it counts. (The
      engine counts every stage's items in, out and dropped by reason without being asked.)
    """

    output: ClassVar[str] = ""
    drop_file: ClassVar[str | None] = None
    side_files: ClassVar[tuple[str, ...]] = ()
    read_item: ClassVar[Callable[[object, int], Item]] = staticmethod(question_item)
    replays_finished: ClassVar[bool] = False

    async def start(self) -> None:
        return None

    def stats(self) -> dict[str, msgspec.Struct]:
        return {}


@dataclass(frozen=True, slots=True)
class StageClients:
    """What a run gives the stages it builds."""

    llm: LLMClient
    sft_llm: LLMClient  # the reasoning model's client (the same as llm when there is no other model)
    sandbox: SandboxClient
    concurrency: int  # items each stage holds at once
    embedder: Embedder | None = None  # question synthesis with dedup or decontamination
    journal: Journal | None = None
    done: Container[str] = frozenset()  # items an earlier run finished (for stages that replay them)


@dataclass(frozen=True, slots=True)
class StagePlan:
    """A stage of a run as the run sees it: when the config turns it on, the chain stages it
    builds (one, or a group), and what of the config shapes its rows (its part of the run's
    fingerprint). Each stage module declares its PLAN; `kodcode_async.stages.PLANS` lists them in
    chain order."""

    name: str
    turned_on: Callable[[RunConfig], bool]
    how_to_turn_on: str  # said when --start-at or --stop-after names it while it is off
    build: Callable[[RunConfig, StageClients], list[RunStage]]
    fingerprint: Callable[[RunConfig], dict]
