"""The OpenAI backend against a real HTTP server on 127.0.0.1; the vLLM backend against a fake engine."""

import asyncio
import importlib.util
import sys
import time
from pathlib import Path

import pytest

from kodcode_async.backends import LLMRequestError, Request, make_backend
from kodcode_async.backends.openai import OpenAIBackend, OpenAIConfig
from kodcode_async.backends.vllm import VLLMBackend, VLLMConfig
from tests.openai_server import Script, start_server

REQ = Request(stage="s", item_id="q", attempt=0, messages=[{"role": "user", "content": "hi"}])
SHIM = Path(__file__).parent / "vllm_shim"
REAL_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture
def vllm_names(monkeypatch):
    """vLLM's own module when installed (a GPU machine), else the shim with its names and paths."""
    if not REAL_VLLM:
        monkeypatch.syspath_prepend(str(SHIM))
    import vllm.v1.engine.exceptions as exceptions

    yield exceptions
    if not REAL_VLLM:  # the next test starts without the shim's modules
        for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
            del sys.modules[name]


def run_with_server(script: Script, body, **cfg):  # noqa: ANN001
    async def main():
        runner, url = await start_server(script)
        backend = OpenAIBackend(OpenAIConfig(base_url=url, model="m", backoff_base_s=0.01, **cfg))
        try:
            return await body(backend)
        finally:
            await backend.close()
            await runner.cleanup()

    return asyncio.run(main())


def test_retries_500s_then_succeeds_and_counts_tokens():
    script = Script(faults=["500", "500"], text="answer")
    out, backend = run_with_server(script, lambda b: _gen(b))
    assert out.texts == ["answer"] and script.requests == 3
    assert backend.errors["server_error"] == 2 and backend.prompt_tokens == 10 and backend.completion_tokens == 5


async def _gen(b):
    return await b.generate(REQ), b


def test_gives_up_after_max_retries():
    script = Script(faults=["500"] * 10)
    with pytest.raises(LLMRequestError) as e:
        run_with_server(script, lambda b: b.generate(REQ), max_retries=2)
    assert e.value.kind == "server_error" and script.requests == 3


def test_429_honours_retry_after_through_a_shared_cooldown_without_burning_retries():
    script = Script(faults=["429", "429"], retry_after="1")

    async def body(b):
        t = time.monotonic()
        results = await asyncio.gather(*(b.generate(REQ) for _ in range(4)))
        return results, time.monotonic() - t

    (results, elapsed) = run_with_server(script, body, max_retries=0)
    assert len(results) == 4 and elapsed >= 0.9  # everyone waited out the cooldown; no retry budget used
    assert script.requests == 6


def test_a_request_started_after_a_429_waits_out_the_shared_cooldown():
    script = Script(faults=["429"], retry_after="1")

    async def body(b):
        first = asyncio.create_task(b.generate(REQ))
        deadline = time.monotonic() + 10
        while script.requests < 1 and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the server's count
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the 429 has been read: the cooldown is on
        started = time.monotonic()
        second = await b.generate(REQ)  # never saw a 429 itself
        return await first, second, started

    first, second, started = run_with_server(script, body, max_retries=0)
    assert first.texts == second.texts == ["hello"] and script.requests == 3
    t429 = script.arrivals[0]
    later = script.arrivals[1:]
    # Neither the retry of the first request nor the brand-new second one reached the server
    # before Retry-After had passed, although the second started 0.2 s after the 429.
    assert started - t429 < 0.6 and all(t - t429 >= 0.95 for t in later), [t - t429 for t in later]


def test_other_4xx_is_a_recorded_failure_not_retried():
    script = Script(faults=["400"])
    with pytest.raises(LLMRequestError) as e:
        run_with_server(script, lambda b: b.generate(REQ))
    assert e.value.kind == "client_error" and script.requests == 1


@pytest.mark.parametrize("fault,kind", [("slow", "timeout"), ("reset", "connection"), ("malformed", "malformed"),
                                        ("endless", "timeout")])
def test_transient_faults_are_retried(fault, kind):
    script = Script(faults=[fault], text="fine")
    out, backend = run_with_server(script, lambda b: _gen(b), timeout_s=1.0)
    assert out.texts == ["fine"] and backend.errors[kind] == 1


def test_completions_endpoint_with_n_samples():
    from kodcode_async.backends import Sampling

    request = Request(stage="s", item_id="q", attempt=0, prompt="def f(", sampling=Sampling(n=2))
    out = run_with_server(Script(text="t"), lambda b: b.generate(request))
    assert out.texts == ["t:def f(", "t:def f("] and out.completion_tokens == 2


def test_api_key_is_never_in_repr():
    cfg = OpenAIConfig(base_url="http://x", model="m", api_key="sk-secret")
    assert "sk-secret" not in repr(cfg)


class FakeOutput:
    def __init__(self, text):
        self.text = text
        self.token_ids = [1, 2, 3]


class FakeRequestOutput:
    def __init__(self, texts, finished):
        self.outputs = [FakeOutput(t) for t in texts]
        self.prompt_token_ids = [9, 9]
        self.finished = finished


class FakeTokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


class FakeAsyncLLM:
    """vLLM v1 AsyncLLM's interface: generate() is an async generator of RequestOutputs."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.aborted = []
        self.prompts = []
        self.params = []

    async def get_tokenizer(self):
        return FakeTokenizer()

    async def generate(self, prompt, sampling_params, request_id):
        self.prompts.append(prompt)
        self.params.append(sampling_params)
        final_only = sampling_params.output_kind.name == "FINAL_ONLY"
        for i in range(3):
            await asyncio.sleep(self.delay)
            if not final_only:  # vLLM's default: an output at every step
                yield FakeRequestOutput([f"partial{i}"] * sampling_params.n, finished=False)
        yield FakeRequestOutput(["final"] * sampling_params.n, finished=True)

    async def abort(self, request_id):
        self.aborted.append(request_id)

    def shutdown(self):
        pass


def test_vllm_backend_with_fake_engine_returns_final_output_and_applies_chat_template(vllm_names):
    engine = FakeAsyncLLM()
    backend = VLLMBackend(VLLMConfig(model="m", max_num_seqs=8), engine=engine)
    out = asyncio.run(backend.generate(REQ))
    assert out.texts == ["final"] and engine.prompts == ["<user>hi<assistant>"]
    assert engine.params[-1].output_kind.name == "FINAL_ONLY"  # no per-token copies waking the loop
    assert backend.max_in_flight == 10
    from kodcode_async.backends import Sampling

    two = Request(stage="s", item_id="q", attempt=3, prompt="p", sampling=Sampling(n=2, temperature=0.5, seed=3))
    assert asyncio.run(backend.generate(two)).texts == ["final", "final"]
    assert engine.params[-1].n == 2 and engine.params[-1].temperature == 0.5 and engine.params[-1].seed == 3


def test_vllm_cancelling_the_consumer_aborts_the_request(vllm_names):
    engine = FakeAsyncLLM(delay=1.0)
    backend = VLLMBackend(VLLMConfig(model="m"), engine=engine)

    async def main():
        task = asyncio.create_task(backend.generate(REQ))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert len(engine.aborted) == 1


def test_factory_rejects_incomplete_configuration():
    with pytest.raises(ValueError, match="base-url"):
        make_backend("openai", model="m")
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("nope")


def test_vllm_engine_death_stops_the_run_but_a_request_error_does_not(vllm_names):
    from kodcode_async.backends import BackendDead

    EngineDeadError, EngineGenerateError = vllm_names.EngineDeadError, vllm_names.EngineGenerateError

    class Failing(FakeAsyncLLM):
        def __init__(self, error):
            super().__init__()
            self.error = error

        async def generate(self, prompt, sampling_params, request_id):
            raise self.error
            yield  # an async generator, like vLLM's

    dead = VLLMBackend(VLLMConfig(model="m"), engine=Failing(EngineDeadError()))
    with pytest.raises(BackendDead):
        asyncio.run(dead.generate(REQ))
    one = VLLMBackend(VLLMConfig(model="m"), engine=Failing(EngineGenerateError()))
    with pytest.raises(LLMRequestError):
        asyncio.run(one.generate(REQ))


def test_an_api_key_with_a_line_break_is_refused_without_showing_it():
    with pytest.raises(ValueError, match="API key has a line break") as e:
        OpenAIBackend(OpenAIConfig(base_url="http://127.0.0.1:1/v1", model="m", api_key="sk-secret\nX-Evil: 1"))
    assert "sk-secret" not in str(e.value)
