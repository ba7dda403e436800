"""The worked example of CONTRIBUTING.md's "Adding a stage": a stage module with its PLAN, used by
tests/test_stage_contract.py to show that a stage is one module plus one line in PLANS."""

from __future__ import annotations

from kodcode_async.engine import Dropped
from kodcode_async.stages.base import Item, RunStage, StagePlan

LIMIT = 140


class LengthStage(RunStage):
    name = "length"
    output = "questions.jsonl"  # the rows of a run that stops after this stage
    drop_file = "too_long.jsonl"  # where its Dropped items are written

    def __init__(self, limit: int, concurrency: int) -> None:
        self.limit, self.concurrency = limit, concurrency

    async def process(self, item: Item) -> Item | Dropped:
        if len(item.row["question"]) > self.limit:
            return Dropped("too_long", item)  # the engine counts it, by reason, in stats.json's stages
        return item


PLAN = StagePlan("length", turned_on=lambda c: True, how_to_turn_on="",
                 build=lambda c, clients: [LengthStage(LIMIT, clients.concurrency)],
                 fingerprint=lambda c: {"limit": LIMIT})
