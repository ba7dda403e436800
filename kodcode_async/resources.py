"""The clients stages are given: `llm` and `sandbox`, journaled, each with its own limit.

Every answer and verdict is recorded in the journal before a stage sees it, keyed by
(stage, item, attempt, payload hash); the same request in a resumed run is answered from there.
The counters tell real work (requests sent, jobs run) from replays, for progress and stats.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec

from kodcode_async.backends import Backend, LLMRequestError, Request
from kodcode_async.journal import Journal, payload_hash
from sandbox import Job, Verdict
from sandbox.pool import SandboxPool


class Limiter:
    """At most `limit` holders at once, with the count visible (for the timeline)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a limit must be >= 1")
        self.limit = limit
        self.in_flight = 0
        self._sem = asyncio.Semaphore(limit)

    async def __aenter__(self) -> None:
        await self._sem.acquire()
        self.in_flight += 1

    async def __aexit__(self, *exc: object) -> None:
        self.in_flight -= 1
        self._sem.release()


class LLMClient:
    """`await llm.complete(request)` -> the answer texts. One per model; stages that share a
    Limiter share its limit (`--workers` requests in flight across every stage that asks a model).

    Raises LLMRequestError when the request failed for good (the item stays unfinished and a
    resumed run asks again), BackendDead when no request can succeed."""

    def __init__(self, backend: Backend, journal: Journal, limiter: Limiter, model_name: str) -> None:
        self.backend = backend
        self.journal = journal
        self.limiter = limiter
        self.model_name = model_name
        self.requests = 0  # sent to the backend this run
        self.replayed = 0  # answered from the journal
        self.errors: Counter[str] = Counter()

    async def complete(self, request: Request) -> list[str]:
        sampling = msgspec.to_builtins(request.sampling)
        if not request.sampling.stop:
            del sampling["stop"]  # journals written before stop sequences existed keep their keys
        phash = payload_hash({"messages": request.messages, "prompt": request.prompt, "sampling": sampling,
                              "model": self.model_name})
        key = (request.stage, request.item_id, request.attempt, phash)
        cached = self.journal.get("response", *key)
        if cached is not None:
            self.replayed += 1
            return list(cached["texts"])  # type: ignore[index]
        async with self.limiter:
            self.requests += 1
            try:
                completion = await self.backend.generate(request)
            except LLMRequestError as e:
                self.errors[e.kind] += 1
                raise
        await self.journal.put("response", *key, {"texts": completion.texts})
        return list(completion.texts)

    @property
    def completion_tokens(self) -> int:
        return int(getattr(self.backend, "completion_tokens", 0))


class SandboxClient:
    """`await sandbox.verify(stage, item_id, attempt, job)` -> Verdict, from the pool's workers.

    A `sandbox_error` verdict (the pool could not run the job twice) is not journaled: a resumed
    run tries it again. `started`, when given, is the pool's start-up, still under way: jobs wait
    for it (so the LLM side gets going while the workers warm up); if it fails, its error is
    raised to every job."""

    def __init__(self, pool: SandboxPool, journal: Journal, started: asyncio.Future | None = None) -> None:
        self.pool = pool
        self.journal = journal
        self.started = started
        self.jobs = 0  # run this run
        self.replayed = 0
        self.statuses: Counter[str] = Counter()

    async def verify(self, stage: str, item_id: str, attempt: int, job: Job) -> Verdict:
        reruns = self.pool.config.flaky_reruns
        phash = payload_hash({"solution": job.solution, "test": job.test, "limits": msgspec.to_builtins(job.limits),
                              **({"coverage": False} if not job.coverage else {}),
                              **({"flaky_reruns": reruns} if reruns else {})})
        cached = self.journal.get("verdict", stage, item_id, attempt, phash)
        if cached is not None:
            self.replayed += 1
            return msgspec.convert(cached, Verdict)
        if self.started is not None and not self.started.done():
            await asyncio.shield(self.started)
        self.jobs += 1
        verdict = await self.pool.verify(job)
        self.statuses[verdict.status] += 1
        if verdict.status != "sandbox_error":
            await self.journal.put("verdict", stage, item_id, attempt, phash, msgspec.to_builtins(verdict))
        return verdict

    @property
    def busy(self) -> int:
        return self.pool.busy

    @property
    def size(self) -> int:
        return self.pool.size
