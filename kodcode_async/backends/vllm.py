"""vLLM's in-process async engine (v1 `AsyncLLM`, exported as `vllm.AsyncLLMEngine`).

vLLM is an optional extra (`pip install 'kodcode-async[vllm]'`) and needs a GPU; it is imported
only when this backend is selected. Tests drive this class with a fake engine that has the
same async interface (`generate(prompt, sampling_params, request_id)` as an async generator,
`abort`, `get_tokenizer`, `shutdown`), because no model can run on CI; where vLLM itself is not
installed they put tests/vllm_shim (vLLM's SamplingParams and exception types, at vLLM's module
paths) on sys.path, so the code below is the code that runs in production.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from dataclasses import dataclass

from kodcode_async.backends.base import BackendDead, Completion, LLMRequestError, Request


@dataclass(frozen=True, slots=True)
class VLLMConfig:
    model: str
    max_num_seqs: int = 256
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    # Keep a little more in flight than the engine schedules at once, so a finished sequence
    # is replaced at once (no idle GPU) without bloating vLLM's own waiting queue.
    in_flight_margin: float = 1.25


def make_engine(config: VLLMConfig):  # noqa: ANN201 - vllm types are optional
    try:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM
    except ImportError as e:
        raise BackendDead("the vllm backend needs vLLM: pip install 'kodcode-async[vllm]' (and a CUDA GPU)") from e
    args = AsyncEngineArgs(model=config.model, max_num_seqs=config.max_num_seqs,
                           tensor_parallel_size=config.tensor_parallel_size,
                           gpu_memory_utilization=config.gpu_memory_utilization, max_model_len=config.max_model_len,
                           # prefill prompts (and few-shot prompts) share long prefixes: reuse their KV cache
                           enable_prefix_caching=True)
    return AsyncLLM.from_engine_args(args)


def _sampling_params(request: Request):  # noqa: ANN202
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    s = request.sampling
    # FINAL_ONLY: one output per request. vLLM's default (CUMULATIVE) builds a detokenised copy of
    # every sequence at every step and wakes this loop for it: at 256 sequences that starves the
    # loop (benchmarks/vllm_output_kind.py measures both).
    return SamplingParams(n=s.n, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed,
                          stop=list(s.stop) or None, output_kind=RequestOutputKind.FINAL_ONLY)


def _engine_dead_type() -> type[BaseException]:
    """vLLM's engine-dead error type (the run must stop), as opposed to one failed request."""
    try:
        from vllm.v1.engine.exceptions import EngineDeadError
    except ImportError as e:
        raise BackendDead("the vllm backend needs vLLM: pip install 'kodcode-async[vllm]' (and a CUDA GPU)") from e
    return EngineDeadError


class VLLMBackend:
    name = "vllm"

    def __init__(self, config: VLLMConfig, engine=None) -> None:  # noqa: ANN001
        self.config = config
        self._dead_type = _engine_dead_type()
        self.engine = engine if engine is not None else make_engine(config)
        self.max_in_flight = max(1, int(config.max_num_seqs * config.in_flight_margin))
        self._tokenizer = None
        self.prompt_tokens = 0
        self.completion_tokens = 0

    async def _prompt(self, request: Request) -> str:
        if request.messages is None:
            return request.prompt or ""
        if self._tokenizer is None:
            tok = self.engine.get_tokenizer()
            self._tokenizer = await tok if inspect.isawaitable(tok) else tok
        return self._tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)

    async def generate(self, request: Request) -> Completion:
        prompt = await self._prompt(request)
        request_id = f"{request.stage}-{request.item_id}-{request.attempt}-{uuid.uuid4().hex[:8]}"
        final = None
        try:
            async for output in self.engine.generate(prompt, _sampling_params(request), request_id):
                final = output
        except asyncio.CancelledError:
            # The consumer went away: free the sequence slots at once.
            result = self.engine.abort(request_id)
            if inspect.isawaitable(result):
                await result
            raise
        except Exception as e:  # noqa: BLE001 - vLLM raises EngineDeadError / EngineGenerateError
            if isinstance(e, self._dead_type):
                raise BackendDead(f"vLLM engine died: {e}") from e
            raise LLMRequestError("engine_error", f"{type(e).__name__}: {e}") from e
        if final is None:
            raise LLMRequestError("engine_error", "vLLM returned no output")
        self.prompt_tokens += len(getattr(final, "prompt_token_ids", None) or [])
        texts = []
        for o in final.outputs:
            texts.append(o.text)
            self.completion_tokens += len(getattr(o, "token_ids", None) or [])
        return Completion(texts=texts)

    async def close(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown is not None:
            result = shutdown()
            if inspect.isawaitable(result):
                await result
