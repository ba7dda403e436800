"""The actors: what runs on the cluster's nodes. Plain classes, made Ray actors with ray.remote
when the executor starts (driver.py).

* `PoolActor`: one node's warm sandbox pool, shared by every shard;
* `GenerationActor`: an in-process vLLM engine on the GPUs of its placement group;
* `ShardRunner`: runs run.execute for one shard (or the questions phase) and reports its progress.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import replace

from kodcode_async.backends import Backend, LLMRequestError, make_backend
from kodcode_async.executors.ray.clients import ActorBackend, ClusterPool
from kodcode_async.executors.ray.messages import (
    GenerationAnswer,
    ShardResult,
    ShardTask,
    decode_job,
    decode_request,
    encode,
)
from kodcode_async.executors.storage import MIRROR_S, Mirror, fetch, is_url
from kodcode_async.options import DEFAULTS
from kodcode_async.run import RunConfig, execute
from kodcode_async.stats import Snapshot
from sandbox.pool import SandboxConfig, SandboxPool

LOCK_WAIT_S = 120.0  # how long a runner waits for a dead predecessor's lock on its shard directory


class PoolActor:
    """One node's sandbox pool. Starts its workers on first use, so a restarted actor (Ray's
    max_restarts) comes back by itself."""

    def __init__(self, config: SandboxConfig) -> None:
        self.pool = SandboxPool(config)
        self._lock = asyncio.Lock()
        self._up = False

    async def _ready(self) -> None:
        async with self._lock:
            if not self._up:
                await self.pool.start()  # SandboxUnavailable reaches the caller
                self._up = True

    async def check(self) -> dict:
        """Isolation on this node (the fast probe; SandboxUnavailable reaches the caller) and who we are."""
        self.pool.check_isolation()
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "host": os.uname().nodename,
                "isolation": self.pool.isolation, "workers": self.pool.size, "pid": os.getpid()}

    async def start(self) -> None:
        await self._ready()

    async def verify(self, job: bytes) -> bytes:
        await self._ready()
        return encode(await self.pool.verify(decode_job(job)))

    async def stats(self) -> dict:
        return {"busy": self.pool.busy, "workers": self.pool.size, "restarts": self.pool.restarts,
                "flaky": self.pool.flaky}

    async def close(self) -> None:
        await self.pool.close()


class GenerationActor:
    """An in-process vLLM engine (backend "vllm") on the GPUs of its placement group.

    `engine_factory` ("module:function") builds another engine with vLLM's async interface
    instead of vLLM's own (a CPU build, a wrapper, or the tests' fake)."""

    def __init__(self, spec: dict) -> None:
        spec = dict(spec)
        factory = spec.pop("engine_factory", "")
        engine = None
        if factory:
            import importlib

            module, _, name = factory.partition(":")
            engine = getattr(importlib.import_module(module), name)()
        self.backend = make_backend(**spec, engine=engine)

    async def ready(self) -> str:
        return os.uname().nodename

    async def generate(self, request: bytes) -> bytes:
        try:
            done = await self.backend.generate(decode_request(request))
        except LLMRequestError as e:
            return encode(GenerationAnswer(error_kind=e.kind, error=str(e)))
        return encode(GenerationAnswer(texts=done.texts, prompt_tokens=done.prompt_tokens,
                                       completion_tokens=done.completion_tokens))

    async def close(self) -> None:
        await self.backend.close()


async def _lock(f, wait_s: float) -> None:  # noqa: ANN001
    import fcntl

    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{f.name}: another runner still writes this shard after {wait_s:.0f} s") from None
            await asyncio.sleep(0.2)


class ShardRunner:
    """Runs run.execute for one shard (or the questions phase) and reports its progress."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    async def run(self, task: ShardTask) -> ShardResult:
        config = task.config
        if is_url(config.out_dir):
            return await self._run_mirrored(task, config)
        os.makedirs(config.out_dir, exist_ok=True)
        # One writer per shard directory: a runner started again while its dead predecessor is
        # still being reaped (driver gone, node lost) waits for it instead of writing beside it.
        lock = open(os.path.join(config.out_dir, ".runner.lock"), "a")  # noqa: ASYNC230, SIM115 - tiny; held for the run
        try:
            await _lock(lock, LOCK_WAIT_S)
            return await self._run(task, config)
        finally:
            lock.close()  # releases the lock

    async def _run_mirrored(self, task: ShardTask, config: RunConfig) -> ShardResult:
        """The shard's run directory at a URL: run in a local mirror, pushed as it goes (storage.py)."""
        with tempfile.TemporaryDirectory(prefix="kodcode-shard-") as scratch:
            mirror = Mirror(config.out_dir, os.path.join(scratch, "run"))
            await asyncio.to_thread(mirror.pull)
            local = replace(config, out_dir=mirror.local)
            if is_url(config.input_path):
                local = replace(local, input_path=await asyncio.to_thread(fetch, config.input_path, scratch))
            stop = asyncio.Event()

            async def push_every() -> None:
                while not stop.is_set():
                    try:
                        await asyncio.wait_for(stop.wait(), MIRROR_S)
                    except TimeoutError:
                        await asyncio.to_thread(mirror.push)

            async with asyncio.TaskGroup() as tg:
                pusher = tg.create_task(push_every())
                try:
                    result = await self._run(task, local)
                finally:
                    stop.set()
                    await pusher  # a push under way ends before the last one starts
                    await asyncio.to_thread(mirror.push)  # also after an error: what was done is kept
            return result

    async def _run(self, task: ShardTask, config: RunConfig) -> ShardResult:
        pool = ClusterPool(config.sandbox, task.pools, task.pool_sizes, task.isolation)
        backend = self._backend(task.backend, task.generation_actors)
        sft_backend = self._backend(task.sft_backend, None) if task.sft_backend else None
        try:
            report = await execute(config, backend, sft_backend=sft_backend, pool=pool, shard=task.shard,
                                   on_progress=self._progress)
        finally:
            await backend.close()
            if sft_backend is not None:
                await sft_backend.close()
        return ShardResult(report=report, host=os.uname().nodename, actor_failures=pool.actor_failures,
                           generation_failures=getattr(backend, "actor_failures", 0))

    @staticmethod
    def _backend(spec: dict, actors: list | None) -> Backend:
        if actors:
            return ActorBackend(actors, max_in_flight=spec.get("workers", DEFAULTS["workers"]))
        return make_backend(**spec)

    def _progress(self, snap: Snapshot) -> None:
        self.snapshot = snap

    async def progress(self) -> Snapshot | None:
        return self.snapshot
