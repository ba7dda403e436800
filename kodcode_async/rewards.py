"""KodCode rewards for RL: the question's pytest tests are the reward (verl's custom reward function).

    # verl config: custom_reward_function.path=<this file>, name=compute_score
    #              (reward_kwargs: sandbox_url: http://127.0.0.1:8080 to use a running `serve`)
    compute_score(data_source, solution_str, ground_truth, extra_info=None) -> {"score": 1.0 | 0.0, ...}

The code is the last fenced Python block of the response (or the whole text when it has none);
`ground_truth` is the test module our verl export writes. Without `sandbox_url`, a warm pool is
started once per process, in a background thread with its own event loop, and reused by every
call; with it, the batch goes to `serve`'s /verify (503s are waited out as Retry-After says).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
from collections.abc import Sequence

import aiohttp
import orjson

from kodcode_async.parsing import extract_final_code
from sandbox import Job, Limits
from sandbox.pool import SandboxConfig, SandboxPool

DEFAULT_TIMEOUT_S = 10.0


def extract_code(solution_str: str) -> str:
    """The last fenced Python block of a response, or the whole text when there is none."""
    text = solution_str or ""
    return extract_final_code(text) or text


def _result(status: str, reason: str) -> dict:
    return {"score": 1.0 if status == "pass" else 0.0, "acc": status == "pass", "status": status,
            "reason": reason[:500]}


class _LocalPool:
    """One warm pool per process, on its own event loop thread, for synchronous callers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pools: dict[SandboxConfig, SandboxPool] = {}

    def pool(self, config: SandboxConfig) -> tuple[asyncio.AbstractEventLoop, SandboxPool]:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="kodcode-rewards", daemon=True).start()
                atexit.register(self.close)
            if config not in self._pools:
                pool = SandboxPool(config)
                asyncio.run_coroutine_threadsafe(pool.start(), self._loop).result()
                self._pools[config] = pool
            return self._loop, self._pools[config]

    def close(self) -> None:
        with self._lock:
            if self._loop is not None:
                for pool in self._pools.values():
                    asyncio.run_coroutine_threadsafe(pool.close(), self._loop).result(timeout=30)
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._pools, self._loop = {}, None


_LOCAL = _LocalPool()


def close() -> None:
    """Stop this process's reward pool now (it is also stopped at exit); the next call starts another."""
    _LOCAL.close()


async def _score_with_pool(pool: SandboxPool, codes: Sequence[str], tests: Sequence[str], timeout_s: float) -> list[dict]:
    limits = Limits(wall_s=timeout_s)
    # The id names a job in the pool's logs; coverage is not read: neither changes a score.
    jobs = [Job(id=str(i), solution=c, test=t, limits=limits, coverage=False)  # pragma: no mutate
            for i, (c, t) in enumerate(zip(codes, tests))]
    return [_result(v.status, v.reason) for v in await asyncio.gather(*(pool.verify(j) for j in jobs))]


async def _score_with_server(url: str, codes: Sequence[str], tests: Sequence[str], timeout_s: float,
                             token: str | None) -> list[dict]:
    rows = [{"id": str(i), "solution": c, "test": t} for i, (c, t) in enumerate(zip(codes, tests))]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    results: dict[str, dict] = {}
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            async with session.post(url.rstrip("/") + "/verify", params={"timeout": str(timeout_s), "coverage": "0"},
                                    data=orjson.dumps(rows)) as resp:
                if resp.status == 503:  # full: wait as told, then ask again
                    await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                    continue
                if resp.status != 200:
                    raise RuntimeError(f"{url}/verify answered HTTP {resp.status}: {(await resp.text())[:300]}")
                async for line in resp.content:
                    if line.strip():
                        row = orjson.loads(line)
                        results[row["id"]] = _result(row["status"], str(row.get("reason", "")))
            break
    return [results.get(str(i), _result("sandbox_error", "no verdict came back")) for i in range(len(rows))]


async def acompute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str],
                               ground_truths: Sequence[str], extra_infos: Sequence[dict | None] | None = None, *,
                               sandbox_url: str | None = None, token: str | None = None,
                               timeout_s: float = DEFAULT_TIMEOUT_S, pool: SandboxPool | None = None) -> list[dict]:
    """Score many rollouts at once (async): one result dict per rollout, in order."""
    del data_sources, extra_infos  # every KodCode row is scored the same way: by its tests
    codes = [extract_code(s) for s in solution_strs]
    if sandbox_url:
        return await _score_with_server(sandbox_url, codes, ground_truths, timeout_s, token)
    if pool is not None:
        return await _score_with_pool(pool, codes, ground_truths, timeout_s)
    async with SandboxPool() as own:  # the default configuration
        return await _score_with_pool(own, codes, ground_truths, timeout_s)


def compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str], ground_truths: Sequence[str],
                        extra_infos: Sequence[dict | None] | None = None, *, sandbox_url: str | None = None,
                        token: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                        strict: bool = False) -> list[dict]:
    """Synchronous batch scoring (verl's batch reward manager): a running `serve`, or this process's pool.

    `strict` (in-process pool only; for a server, start it with --strict-compare) refuses
    `assert a == b` where a side of another type brings its own __eq__ (objects equal to everything)."""
    if sandbox_url:
        return asyncio.run(acompute_score_batch(data_sources, solution_strs, ground_truths, extra_infos,
                                                sandbox_url=sandbox_url, token=token, timeout_s=timeout_s))
    loop, pool = _LOCAL.pool(SandboxConfig(strict_compare=strict))
    codes = [extract_code(s) for s in solution_strs]
    return asyncio.run_coroutine_threadsafe(_score_with_pool(pool, codes, ground_truths, timeout_s), loop).result()


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, *,
                  sandbox_url: str | None = None, token: str | None = None,
                  timeout_s: float = DEFAULT_TIMEOUT_S, strict: bool = False) -> dict:
    """verl's custom reward function: {"score": 1.0 when the question's tests pass, else 0.0, ...}."""
    started = time.monotonic()
    result = compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info],
                                 sandbox_url=sandbox_url, token=token, timeout_s=timeout_s, strict=strict)[0]
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
