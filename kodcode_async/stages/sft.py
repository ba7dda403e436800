"""SFT data: a reasoning model answers each verified question n times; the tests pick the keepers.

Reject sampling: the final code block of each answer runs against the question's own tests in
the sandbox. The row records `<nick>_pass_sequence`, `<nick>_correctness` (any answer passed) and
the chosen answer (the first that passed); passing questions become ShareGPT conversations.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from kodcode_async.backends import Request, Sampling
from kodcode_async.options import DEFAULTS
from kodcode_async.parsing import extract_final_code
from kodcode_async.prompts import DEFAULT as DEFAULT_PROMPTS
from kodcode_async.prompts import Prompts
from kodcode_async.resources import LLMClient, SandboxClient
from kodcode_async.stages.base import Item, RunStage, StagePlan, verified_item
from sandbox import Job, Limits

if TYPE_CHECKING:
    from kodcode_async.run import RunConfig

STAGE = "sft"

@dataclass(frozen=True, slots=True)
class SFTOptions:
    n: int = 3
    nickname: str = DEFAULTS["sft_nickname"]
    temperature: float = 0.6
    max_tokens: int = 16384
    limits: Limits = Limits()
    seed: int = 0


class SFTStage(RunStage):
    """A verified row in; the same row out with `<nick>_*` columns, and a ShareGPT conversation
    beside it when an answer passed the question's tests."""

    name = STAGE
    output = "verified.jsonl"
    read_item = staticmethod(verified_item)
    conversations_file = "sft.jsonl"
    side_files = (conversations_file,)

    def __init__(self, options: SFTOptions, llm: LLMClient, sandbox: SandboxClient, concurrency: int,
                 prompts: Prompts = DEFAULT_PROMPTS) -> None:
        self.options = options
        self.prompts = prompts
        self.prompt_hash = prompts.stage_hash(STAGE)
        self.llm = llm
        self.sandbox = sandbox
        self.concurrency = concurrency

    async def process(self, item: Item) -> Item:
        o = self.options
        row = item.row
        texts = await self.llm.complete(self.request(item))
        codes = [extract_final_code(t) for t in texts]

        async def check(i: int, code: str | None) -> int:
            if code is None:
                return 0
            job = Job(id=f"{item.id}/sft{i}", solution=code, test=row["test"], limits=o.limits, coverage=False)
            return int((await self.sandbox.verify(STAGE, item.id, i, job)).passed)

        seq = list(await asyncio.gather(*(check(i, c) for i, c in enumerate(codes))))
        chosen = next((i for i, ok in enumerate(seq) if ok), None)
        nick = o.nickname
        row["metadata"] = {**row.get("metadata", {}), "sft_prompt_hash": self.prompt_hash}
        row.update({f"{nick}_pass_sequence": seq, f"{nick}_correctness": chosen is not None,
                    f"{nick}_response": texts[chosen] if chosen is not None else None,
                    f"{nick}_solution": codes[chosen] if chosen is not None else None})
        if chosen is not None:
            item.side.append((self.conversations_file, sharegpt(row["question"], texts[chosen], item.id)))
        return item

    def request(self, item: Item) -> Request:
        return Request(stage=STAGE, item_id=item.id, attempt=0,
                       messages=[{"role": "user", "content": self.prompts.sft_user.format(question=item.row["question"])}],
                       sampling=Sampling(n=self.options.n, temperature=self.options.temperature,
                                         max_tokens=self.options.max_tokens, seed=self.options.seed))


def sharegpt(question: str, answer: str, question_id: str) -> dict:
    """One LLaMA-Factory / ShareGPT conversation."""
    return {"question_id": question_id,
            "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}


def _fingerprint(config: RunConfig) -> dict:
    o = config.sft or SFTOptions()
    return {"model": config.sft_model_name, "n": o.n, "nickname": o.nickname, "temperature": o.temperature,
            "max_tokens": o.max_tokens, "seed": o.seed, "limits": msgspec.to_builtins(o.limits),
            "prompt": config.prompts.stage_hash(STAGE)}


PLAN = StagePlan(STAGE, turned_on=lambda c: c.sft is not None, how_to_turn_on="--sft-n N",
                 build=lambda c, clients: [SFTStage(c.sft or SFTOptions(), clients.sft_llm, clients.sandbox,
                                                    clients.concurrency, c.prompts)],
                 fingerprint=_fingerprint)
