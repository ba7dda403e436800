"""The one small interface every LLM backend honours."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Sampling:
    n: int = 1
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 4096
    seed: int | None = None
    stop: tuple[str, ...] = ()  # generation ends at the first of these (not included in the text)


@dataclass(frozen=True, slots=True)
class Request:
    """A chat request (messages) or a completion request (prompt), plus the key that identifies it."""

    stage: str
    item_id: str
    attempt: int
    messages: list[dict] | None = None
    prompt: str | None = None
    sampling: Sampling = field(default_factory=Sampling)


@dataclass(slots=True)
class Completion:
    texts: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LLMRequestError(Exception):
    """One request failed for good (4xx, retries exhausted, no recording). Per item: recorded, not fatal."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class BackendDead(RuntimeError):
    """The backend cannot serve any request (engine died, bad configuration). Stops the run."""


class Backend(Protocol):
    name: str
    max_in_flight: int

    async def generate(self, request: Request) -> Completion: ...

    async def close(self) -> None: ...
