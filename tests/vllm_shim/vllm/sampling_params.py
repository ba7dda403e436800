"""Stand-in for vllm/sampling_params.py: the names the backend uses, with vLLM's values."""

from dataclasses import dataclass
from enum import Enum


class RequestOutputKind(Enum):
    CUMULATIVE = 0  # every step: the whole text so far, for every sequence (vLLM's default)
    DELTA = 1  # every step: the new tokens only
    FINAL_ONLY = 2  # one output, when the request is finished


@dataclass
class SamplingParams:
    """The keyword arguments vLLM's SamplingParams accepts that the backend passes."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = 16
    seed: int | None = None
    stop: list[str] | str | None = None
    output_kind: RequestOutputKind = RequestOutputKind.CUMULATIVE
