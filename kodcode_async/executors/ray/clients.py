"""What a shard's run sees of the cluster: its sandbox pool (`ClusterPool`) and its LLM backend
(`ActorBackend`), both in front of actors shared by every shard, through one way of calling them
(`ActorGroup`: least loaded first, and again elsewhere while an actor is dead or restarting)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from kodcode_async.backends import Completion, LLMRequestError, Request
from kodcode_async.executors.ray.messages import decode_answer, decode_verdict, encode
from sandbox import Job, Verdict
from sandbox.pool import SandboxConfig

log = logging.getLogger("kodcode_async.ray")

# How long one job or request keeps being sent again while its actors are dead or restarting: a
# pool actor comes back in ~2-5 s on an idle node, but a busy one takes much longer to start a
# process, import the engine and warm its workers.
ACTOR_RETRY_S = 180.0
AVOID_S = 10.0  # an actor that just failed gets no new work for this long while another can take it

T = TypeVar("T")


def _pick(load: list[int], sizes: list[int], failed_at: list[float]) -> int:
    """The actor with the lowest load for its size; one that failed in the last AVOID_S seconds only
    when all did (its node may be gone: the job goes to a live one)."""
    now = time.monotonic()
    return min(range(len(load)), key=lambda j: (now - failed_at[j] < AVOID_S, (load[j] + 1) / sizes[j]))


class ActorsUnreachable(Exception):
    """No actor of a group answered one call within ACTOR_RETRY_S."""


class ActorGroup:
    """Actors of one kind, shared by every shard. Each call goes to the least loaded for its size;
    a call that meets a dead or restarting actor goes again to another (the failed one is avoided
    for AVOID_S, or for good when its node is gone), with a growing pause, for ACTOR_RETRY_S."""

    def __init__(self, actors: list, sizes: list[int], what: str) -> None:
        self.actors, self.sizes, self.what = actors, sizes, what
        self.load = [0] * len(actors)
        self.failed_at = [-AVOID_S] * len(actors)
        self.failures = 0  # calls that met a dead or restarting actor

    async def call(self, send: Callable[[object], Awaitable[T]], label: str) -> T:
        """`send(actor)`'s answer from the first actor that gives one. Raises ActorsUnreachable."""
        from ray.exceptions import ActorUnavailableError, ActorUnschedulableError, RayActorError

        problem = ""
        deadline = time.monotonic() + ACTOR_RETRY_S
        attempt = 0
        while attempt == 0 or time.monotonic() < deadline:
            attempt += 1
            i = _pick(self.load, self.sizes, self.failed_at)
            self.load[i] += 1
            try:
                return await send(self.actors[i])
            except (RayActorError, ActorUnavailableError, ActorUnschedulableError) as e:
                self.failures += 1
                # Unschedulable: its node is gone for good (the actor is pinned to it); avoid it
                # from now on. Otherwise it may be restarting: avoid it for a while.
                self.failed_at[i] = float("inf") if isinstance(e, ActorUnschedulableError) else time.monotonic()
                problem = f"{type(e).__name__}: {str(e)[:300]}"
                log.warning("%s %d unreachable for %s (try %d): %s", self.what, i, label, attempt, problem)
                await asyncio.sleep(min(5.0, 0.25 * 2 ** attempt))
            finally:
                self.load[i] -= 1
        raise ActorsUnreachable(f"no {self.what} answered in {ACTOR_RETRY_S:g} s ({attempt} tries): {problem}")


class ClusterPool:
    """What a shard's run sees as its sandbox pool (SandboxPool's interface): the cluster's pool
    actors, each job sent to the least loaded; at most `size` jobs in flight from this runner."""

    def __init__(self, config: SandboxConfig, actors: list, sizes: list[int], isolation: str) -> None:
        self.config = replace(config, workers=max(1, sum(sizes)))
        self.pools = ActorGroup(actors, sizes, "sandbox pool actor")
        self.isolation = isolation
        self._slots = asyncio.Semaphore(self.size)
        self.busy = self.restarts = self.flaky = 0

    @property
    def size(self) -> int:
        return self.config.workers

    @property
    def actor_failures(self) -> int:
        return self.pools.failures

    def check_isolation(self) -> None:
        """Checked by the driver on every pool actor before any runner started."""

    async def start(self) -> None:
        """The pool actors are started (and closed) by the driver."""

    async def close(self) -> None:
        """See start."""

    async def verify(self, job: Job) -> Verdict:
        body = encode(job)
        async with self._slots:
            self.busy += 1
            try:
                verdict = decode_verdict(await self.pools.call(lambda actor: actor.verify.remote(body),
                                                               f"job {job.id!r}"))
            except ActorsUnreachable as e:
                return Verdict(id=job.id, status="sandbox_error", isolation=self.isolation, reason=str(e))
            finally:
                self.busy -= 1
        self.flaky += verdict.status == "flaky"
        return verdict


class ActorBackend:
    """A shard's LLM backend: requests go to the generation actors, least loaded first; a request
    whose actor died goes to another one."""

    name = "vllm-actors"

    def __init__(self, actors: list, max_in_flight: int) -> None:
        self.engines = ActorGroup(actors, [1] * len(actors), "generation actor")
        self.max_in_flight = max_in_flight
        self.completion_tokens = 0

    @property
    def actor_failures(self) -> int:
        return self.engines.failures

    async def generate(self, request: Request) -> Completion:
        body = encode(request)
        try:
            answer = decode_answer(await self.engines.call(lambda actor: actor.generate.remote(body),
                                                           f"request {request.item_id!r}"))
        except ActorsUnreachable as e:
            raise LLMRequestError("actor_unreachable", str(e)) from None
        if answer.error_kind:
            raise LLMRequestError(answer.error_kind, answer.error)
        self.completion_tokens += answer.completion_tokens
        return Completion(texts=answer.texts, prompt_tokens=answer.prompt_tokens,
                          completion_tokens=answer.completion_tokens)

    async def close(self) -> None:
        """The actors belong to the driver."""
