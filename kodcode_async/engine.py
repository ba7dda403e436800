"""The event loop: items stream through a generation stage and a verification stage.

    input rows ──admit (≤ max_items_in_flight items; the reader waits here)──┐
                                                                            ▼
             ┌──────────────► gen_queue ──► LLM workers (--workers) ──► verify_queue (bounded)
             │   loop back:                                                 │
             │   a failed attempt                                           ▼
             └──────────────── flow.settle ◄──── sandbox workers (pool size)
                                    │
                                    ▼ finished item
                                  sink (writers) ── frees one admission slot

Why these sizes:
* Admission bounds memory: at most `max_items_in_flight` items exist at once, whatever the
  input size. gen_queue needs no bound of its own (it holds at most one unit per started
  attempt of an admitted item) and must not have one: the sandbox workers put loop-backs
  into it, and a full gen_queue behind a full verify_queue would deadlock.
* verify_queue holds two units per sandbox worker: enough that a worker never waits for the
  LLM side when it finishes, small enough that a slow sandbox stops the LLM workers pulling
  new work (backpressure), so requests are not bought that cannot be verified soon.

The engine owns looping, concurrency, stats and shutdown; the flow says what happens to one
unit (STYLE rule 1). Every task belongs to the TaskGroup in `run` (rule 3).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Flow(Protocol):
    def admit(self, item: Any) -> list[Any]:
        """Initial work units for a new item."""

    async def generate(self, unit: Any) -> Any:
        """LLM step for one unit; returns the unit to verify."""

    async def verify(self, unit: Any) -> Any:
        """Sandbox step for one unit."""

    def settle(self, unit: Any) -> tuple[list[Any], Any | None]:
        """After verification: (more units for the same item, finished item or None)."""


@dataclass(slots=True)
class StageStats:
    done: int = 0
    in_flight: int = 0
    busy_s: float = 0.0


@dataclass(slots=True)
class EngineStats:
    started: float = field(default_factory=time.monotonic)
    items_admitted: int = 0
    items_finished: int = 0
    gen: StageStats = field(default_factory=StageStats)
    verify: StageStats = field(default_factory=StageStats)
    queued_gen: int = 0
    queued_verify: int = 0
    errors: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        elapsed = max(1e-9, time.monotonic() - self.started)
        return {
            "elapsed_s": round(elapsed, 3), "items_admitted": self.items_admitted,
            "items_finished": self.items_finished, "items_per_s": round(self.items_finished / elapsed, 3),
            "generation": {"done": self.gen.done, "in_flight": self.gen.in_flight, "queued": self.queued_gen,
                           "per_s": round(self.gen.done / elapsed, 3)},
            "verification": {"done": self.verify.done, "in_flight": self.verify.in_flight,
                             "queued": self.queued_verify, "per_s": round(self.verify.done / elapsed, 3)},
            "errors": dict(self.errors),
        }


_CLOSE = object()  # sentinel: one per worker, put when every item is finished


class Engine:
    def __init__(self, flow: Flow, *, llm_workers: int, verify_workers: int, max_items_in_flight: int | None = None,
                 on_progress: Callable[[EngineStats], None] | None = None) -> None:
        if llm_workers < 1 or verify_workers < 1:
            raise ValueError("llm_workers and verify_workers must be >= 1")
        self.flow = flow
        self.llm_workers = llm_workers
        self.verify_workers = verify_workers
        self.max_items_in_flight = max_items_in_flight or max(8, 2 * llm_workers)
        self.on_progress = on_progress
        self.stats = EngineStats()

    async def run(self, items: Iterable[Any] | AsyncIterable[Any], sink: Callable[[Any], Awaitable[None]]) -> None:
        """Stream every item through the flow; `sink` gets each finished item exactly once."""
        gen_q: asyncio.Queue = asyncio.Queue()
        verify_q: asyncio.Queue = asyncio.Queue(maxsize=2 * self.verify_workers)
        slots = asyncio.Semaphore(self.max_items_in_flight)
        state = {"reading": True, "open_items": 0}
        all_done = asyncio.Event()
        stats = self.stats

        def maybe_close() -> None:
            if not state["reading"] and state["open_items"] == 0 and not all_done.is_set():
                all_done.set()
                for _ in range(self.llm_workers):
                    gen_q.put_nowait(_CLOSE)

        async def reader() -> None:
            async for item in aiter_items(items):
                await slots.acquire()
                units = self.flow.admit(item)
                stats.items_admitted += 1
                if not units:
                    slots.release()
                    continue
                state["open_items"] += 1
                for u in units:
                    gen_q.put_nowait(u)
            state["reading"] = False
            maybe_close()

        async def stage_worker(queue: asyncio.Queue, stage: StageStats, step: Callable[[Any], Awaitable[Any]],
                               forward: Callable[[Any], Awaitable[None]]) -> None:
            while True:
                unit = await queue.get()
                if unit is _CLOSE:
                    return
                stage.in_flight += 1
                t = time.monotonic()
                try:
                    unit = await step(unit)
                finally:
                    stage.in_flight -= 1
                    stage.busy_s += time.monotonic() - t
                stage.done += 1
                await forward(unit)

        async def settle(unit: Any) -> None:
            more, finished = self.flow.settle(unit)
            for u in more:
                gen_q.put_nowait(u)
            if finished is not None:
                await sink(finished)
                stats.items_finished += 1
                state["open_items"] -= 1
                slots.release()
                maybe_close()

        async def closer() -> None:
            await all_done.wait()
            # LLM workers have all returned once the gen queue drained; then stop verifiers.
            await asyncio.gather(*llm_tasks)
            for _ in range(self.verify_workers):
                await verify_q.put(_CLOSE)

        async def progress() -> None:
            while not all_done.is_set():
                stats.queued_gen, stats.queued_verify = gen_q.qsize(), verify_q.qsize()
                if self.on_progress is not None:
                    self.on_progress(stats)
                try:
                    async with asyncio.timeout(0.5):
                        await all_done.wait()
                except TimeoutError:
                    pass

        async with asyncio.TaskGroup() as tg:
            # An LLM worker blocks on verify_q.put when the sandbox is behind: backpressure.
            llm_tasks = [tg.create_task(stage_worker(gen_q, stats.gen, self.flow.generate, verify_q.put))
                         for _ in range(self.llm_workers)]
            for _ in range(self.verify_workers):
                tg.create_task(stage_worker(verify_q, stats.verify, self.flow.verify, settle))
            tg.create_task(reader())
            tg.create_task(closer())
            tg.create_task(progress())
        stats.queued_gen = stats.queued_verify = 0
        if self.on_progress is not None:
            self.on_progress(stats)


async def aiter_items(items: Iterable[Any] | AsyncIterable[Any]):  # noqa: ANN201
    """Iterate a plain or an async iterable the same way."""
    if hasattr(items, "__aiter__"):
        async for x in items:  # type: ignore[union-attr]
            yield x
    else:
        for x in items:  # type: ignore[union-attr]
            yield x
