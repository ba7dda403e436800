"""Test stand-in for vLLM's public names used by kodcode-async (see ../README.md)."""

from dataclasses import dataclass


@dataclass
class SamplingParams:
    """The keyword arguments vLLM's SamplingParams accepts that the backend passes."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = 16
    seed: int | None = None
