"""Test stand-in for vLLM's public names used by kodcode-async (see ../README.md)."""

from vllm.sampling_params import RequestOutputKind, SamplingParams

__all__ = ["RequestOutputKind", "SamplingParams"]
