"""What every stage works on, and the three hooks a stage writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from kodcode_async.backends import Request
from sandbox import Job, Verdict


@dataclass(slots=True)
class Question:
    """One item moving through the pipeline, with everything its stages have recorded so far."""

    question_id: str
    question: str
    subset: str
    extra: dict = field(default_factory=dict)
    started: int = 0  # solve attempts started
    trials: dict[int, dict] = field(default_factory=dict)
    pending: int = 0  # units of this item not yet settled
    row: dict | None = None  # the KodCode-V1 row, once solving is over
    complete_row: dict | None = None  # style-converted row, when accepted
    style_rejection: dict | None = None
    sft_row: dict | None = None


@dataclass(slots=True)
class Unit:
    """One LLM request for one item, and the sandbox jobs its answer leads to."""

    item: Question
    stage: str
    attempt: int
    texts: list[str] = field(default_factory=list)
    failure: str = ""  # llm_error:<kind>, parse_error, ... ; empty when there is something to run
    jobs: list[Job] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # what parse() extracted, for settle()


class Stage(Protocol):
    name: str

    def request(self, unit: Unit) -> Request:
        """The LLM request for this unit (deterministic: it is hashed for the journal)."""

    def parse(self, unit: Unit) -> None:
        """Read unit.texts; set unit.jobs to run, or unit.failure."""

    def settle(self, unit: Unit) -> list[Unit]:
        """Record the outcome on unit.item; return follow-up units (same or later stages)."""
