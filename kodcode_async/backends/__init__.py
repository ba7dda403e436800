"""LLM backends behind one small async interface, picked by `make_backend`."""

from __future__ import annotations

from kodcode_async.backends.base import Backend, BackendDead, Completion, LLMRequestError, Request, Sampling
from kodcode_async.options import DEFAULTS


def make_backend(kind: str, *, model: str = "", base_url: str = "", api_key: str | None = None,
                 recorded_path: str = "", workers: int = DEFAULTS["workers"],
                 timeout_s: float = DEFAULTS["request_timeout"], max_retries: int = DEFAULTS["max_retries"],
                 engine=None, tensor_parallel_size: int = 1) -> Backend:  # noqa: ANN001
    """The factory: one place that knows every backend."""
    if kind == "openai":
        from kodcode_async.backends.openai import OpenAIBackend, OpenAIConfig

        if not base_url:
            raise ValueError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        if not model:
            raise ValueError("--backend openai needs --model")
        return OpenAIBackend(OpenAIConfig(base_url=base_url, model=model, api_key=api_key, timeout_s=timeout_s,
                                          max_retries=max_retries, max_in_flight=workers))
    if kind == "vllm":
        from kodcode_async.backends.vllm import VLLMBackend, VLLMConfig

        if not model:
            raise ValueError("--backend vllm needs --model")
        # --workers is the engine's batch (max_num_seqs); the backend keeps a little more in flight.
        return VLLMBackend(VLLMConfig(model=model, max_num_seqs=workers, tensor_parallel_size=tensor_parallel_size),
                           engine=engine)
    if kind == "recorded":
        from kodcode_async.backends.recorded import RecordedBackend

        if not recorded_path:
            raise ValueError("--backend recorded needs --recorded FILE.jsonl")
        return RecordedBackend(recorded_path, max_in_flight=workers)
    raise ValueError(f"unknown backend {kind!r}: choose openai, vllm or recorded")


__all__ = ["Backend", "BackendDead", "Completion", "LLMRequestError", "Request", "Sampling", "make_backend"]
