"""A fake in-process engine with vLLM's async interface that "answers" the add questions of the tests.

Built inside Ray generation actors by `engine_factory="tests.fake_vllm:make_engine"`: the actor runs
the real VLLMBackend over it (with tests/vllm_shim standing in for vLLM's own modules when vLLM is
not installed), so only the model itself is fake.
"""

import asyncio
import re

# One "generation". Long against the driver's 1 s progress cadence: the test kills an actor at the
# first snapshot with 3 questions finished, and 15 questions per shard at 4 in flight then still
# have requests out (at 0.3 s, a fast sandbox let a shard's generations all end before that snapshot).
DELAY_S = 1.0


class _Output:
    def __init__(self, text):
        self.text = text
        self.token_ids = list(range(len(text) // 4))


class _RequestOutput:
    def __init__(self, texts):
        self.outputs = [_Output(t) for t in texts]
        self.prompt_token_ids = [0]
        self.finished = True


class _Tokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


def answer(prompt: str) -> str:
    """A passing solution with tests for "Write addN(a, b) returning a + b + N.", else nonsense."""
    m = re.search(r"Write add(\d+)\(a, b\) returning a \+ b \+ (\d+)\.", prompt)
    if m is None:
        return "I cannot help with that."
    i = int(m.group(1))
    sol = f"def add{i}(a, b):\n    return a + b + {i}\n"
    test = f"from solution import add{i}\n\ndef test_add():\n    assert add{i}(1, 2) == {3 + i}\n"
    return (f"<|Solution Begin|>\n```python\n{sol}```\n<|Solution End|>\n<|Test Begin|>\n```python\n{test}```\n"
            "<|Test End|>")


class FakeAsyncLLM:
    def __init__(self):
        self.requests = 0

    async def get_tokenizer(self):
        return _Tokenizer()

    async def generate(self, prompt, sampling_params, request_id):
        self.requests += 1
        await asyncio.sleep(DELAY_S)
        yield _RequestOutput([answer(prompt)] * sampling_params.n)

    async def abort(self, request_id):
        pass

    def shutdown(self):
        pass


def make_engine():
    return FakeAsyncLLM()
