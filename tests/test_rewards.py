"""The RL reward (rewards.py) in one process: which code a response is judged by, what a verdict
scores, and the batch call over a real sandbox pool (tests/test_serve.py scores through `serve`,
tests/test_reward_hacking.py scores a corpus of hacks)."""

import asyncio

from kodcode_async.rewards import _result, acompute_score_batch, extract_code
from sandbox.pool import SandboxConfig, SandboxPool

TEST = "from solution import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def test_the_judged_code_is_the_last_python_block_or_else_the_whole_response() -> None:
    two = "First try:\n```python\ndef add(a, b):\n    return 0\n```\nBetter:\n```py\ndef add(a, b):\n    return a + b\n```"
    assert extract_code(two) == "def add(a, b):\n    return a + b\n"
    assert extract_code("<think>```python\nx = 1\n```</think>no code after thinking") == \
        "<think>```python\nx = 1\n```</think>no code after thinking"
    assert extract_code("def add(a, b):\n    return a + b") == "def add(a, b):\n    return a + b"
    assert extract_code("") == "" and extract_code(None) == ""  # type: ignore[arg-type]


def test_only_a_pass_scores_and_the_reason_is_cut_to_500_characters() -> None:
    assert _result("pass", "") == {"score": 1.0, "acc": True, "status": "pass", "reason": ""}
    for status in ("fail", "error", "timeout", "sandbox_error", "flaky"):
        assert _result(status, "why") == {"score": 0.0, "acc": False, "status": status, "reason": "why"}
    assert _result("fail", "x" * 499 + "yz")["reason"] == "x" * 499 + "y"


def test_a_batch_is_scored_in_order_on_the_given_pool_with_the_time_limit_asked(isolated) -> None:
    responses = ["```python\ndef add(a, b):\n    return a + b\n```",
                 "def add(a, b):\n    return a - b\n",
                 "import time\ntime.sleep(30)\ndef add(a, b):\n    return a + b\n",
                 "Sure!\n```python\ndef add(a, b):\n    return b + a\n```\nThat is all."]

    async def go() -> list[dict]:
        async with SandboxPool(SandboxConfig(workers=2)) as pool:
            return await acompute_score_batch(["kodcode"] * 4, responses, [TEST] * 4, [None] * 4, pool=pool,
                                              timeout_s=1.0)

    scores = asyncio.run(go())
    assert [(s["score"], s["acc"], s["status"]) for s in scores] == [
        (1.0, True, "pass"), (0.0, False, "fail"), (0.0, False, "timeout"), (1.0, True, "pass")]
    assert scores[1]["reason"] == "1 of 1 tests failed" and scores[0]["reason"] == ""


def test_a_batch_is_scored_by_a_running_serve_with_its_token_or_by_a_pool_of_its_own(isolated) -> None:
    from kodcode_async.serve import ServeConfig, serve

    responses = ["```python\ndef add(a, b):\n    return a + b\n```", "def add(a, b):\n    return 5\n",
                 "def add(a, b):\n    return a * b\n"]

    async def go() -> tuple[list[dict], list[dict], str]:
        ready = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(serve(ServeConfig(port=0, token="s3cret", sandbox=SandboxConfig(workers=1)),
                                           on_ready=ready.set_result))
        try:
            port = await asyncio.wait_for(ready, 120)
            url = f"http://127.0.0.1:{port}"
            remote = await acompute_score_batch(["k"] * 3, responses, [TEST] * 3, sandbox_url=url, token="s3cret",
                                                timeout_s=5.0)
            try:
                await acompute_score_batch(["k"], responses[:1], [TEST], sandbox_url=url, token="wrong")
                refused = ""
            except RuntimeError as e:
                refused = str(e)
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)
        own = await acompute_score_batch(["k"] * 3, responses, [TEST] * 3, timeout_s=5.0)  # no pool given: its own
        return remote, own, refused

    remote, own, refused = asyncio.run(go())
    assert [s["score"] for s in remote] == [1.0, 1.0, 0.0]  # 2 + 3 == 5: the tests are what they are
    assert [(s["score"], s["status"]) for s in own] == [(s["score"], s["status"]) for s in remote]
    assert refused.startswith("http://127.0.0.1:") and "answered HTTP 401" in refused
