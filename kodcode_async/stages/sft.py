"""SFT data: a reasoning model answers each verified question n times; the tests pick the keepers.

Reject sampling: the final code block of each answer runs against the question's own tests in
the sandbox. The row records `<nick>_pass_sequence`, `<nick>_correctness` (any answer passed) and
the chosen answer (the first that passed); passing questions become ShareGPT conversations.
"""

from __future__ import annotations

from dataclasses import dataclass

from kodcode_async.backends import Request, Sampling
from kodcode_async.parsing import extract_final_code
from kodcode_async.stages.base import Unit
from sandbox import Job, Limits

STAGE = "sft"

PROMPT = """{question}

Think it through, then give your final answer as one complete Python module in a ```python block
(it will be saved as solution.py and tested)."""


@dataclass(frozen=True, slots=True)
class SFTOptions:
    n: int = 3
    nickname: str = "r1"
    temperature: float = 0.6
    max_tokens: int = 16384
    limits: Limits = Limits()


class SFTStage:
    name = STAGE

    def __init__(self, options: SFTOptions) -> None:
        self.options = options

    def request(self, unit: Unit) -> Request:
        return Request(stage=STAGE, item_id=unit.item.question_id, attempt=0,
                       messages=[{"role": "user", "content": PROMPT.format(question=unit.item.question)}],
                       sampling=Sampling(n=self.options.n, temperature=self.options.temperature,
                                         max_tokens=self.options.max_tokens, seed=0))

    def parse(self, unit: Unit) -> None:
        row = unit.item.row or {}
        unit.data["codes"] = codes = [extract_final_code(t) for t in unit.texts]
        unit.jobs = [Job(id=f"{unit.item.question_id}/sft{i}", solution=code, test=row["test"],
                         limits=self.options.limits, coverage=False)
                     for i, code in enumerate(codes) if code is not None]

    def settle(self, unit: Unit) -> list[Unit]:
        q = unit.item
        nick = self.options.nickname
        verdicts = iter(unit.verdicts)
        seq = [int(next(verdicts).passed) if code is not None else 0 for code in unit.data.get("codes", [])]
        chosen = next((i for i, ok in enumerate(seq) if ok), None)
        q.sft_row = {
            "question_id": q.question_id, f"{nick}_pass_sequence": seq, f"{nick}_correctness": any(seq),
            f"{nick}_response": unit.texts[chosen] if chosen is not None else None,
            f"{nick}_solution": unit.data["codes"][chosen] if chosen is not None else None,
            "failure": unit.failure or None,
        }
        return []


def sharegpt(question: str, answer: str, question_id: str) -> dict:
    """One LLaMA-Factory / ShareGPT conversation."""
    return {"question_id": question_id,
            "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}
