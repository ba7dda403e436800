"""The engine: items stream through a chain of stages joined by bounded queues.

    source ──► q[0] ──► stage 0 (c0 tasks) ──► q[1] ──► stage 1 (c1 tasks) ──► … ──► q[n] ──► sink
                           │                               │
                           ├─ Dropped(reason) ─────────────┴──► on_drop   (recorded with its reason)
                           └─ item error (LLM down, …) ────────► on_unfinished (not written: resume redoes it)

A stage says what happens to one item; it is one of three kinds, told apart by what it defines:
* `async def process(item) -> item | Dropped`: c tasks pull from the stage's inbound queue;
* `async def process(item)` as an async generator: fan-out, each yielded item (or Dropped) goes on
  at once, so a seed's first question is being solved while its last is still being written;
* `async def process_stream(items)` (an async iterator in, one out): one task sees the items in
  arrival order, for order-dependent work such as deduplication.

Why these sizes:
* The inbound queue of a stage with c tasks holds c items: a task that finishes one item finds
  the next one waiting (no idle gap), and when the stage is slow its feeder blocks on `put`
  after c waiting items. That block travels upstream queue by queue to the source, which stops
  reading: backpressure, with no counter anyone keeps by hand.
* The sink's queue holds `SINK_QUEUE` items: writes are fast, it only smooths bursts.
So at most `max_in_flight` = Σ (2·c_i) + SINK_QUEUE + 2 items exist at once (each stage's tasks and
queue, the sink's queue, one item held by the source and one by the sink), whatever the input size.

Shutdown is by closing: when the source is exhausted it puts one end marker per task of the
first stage; when every task of a stage has returned, that stage's closer does the same for the
next. Every task belongs to the TaskGroup in `run`; an error that is not an item error stops the
whole chain loudly (CONTRIBUTING rules 3, 4, 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from kodcode_async.stats import StageCounts

SINK_QUEUE = 64


@dataclass(frozen=True, slots=True)
class Dropped:
    """A stage's verdict that an item goes no further, with the reason; `item` is what gets recorded."""

    reason: str
    item: Any = None


class Stage(Protocol):
    name: str
    concurrency: int  # items processed at once (ignored by stream stages: they see one stream)


@dataclass(slots=True)
class StageStats:
    name: str
    kind: str
    concurrency: int
    items_in: int = 0
    items_out: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> items
    unfinished: Counter = field(default_factory=Counter)  # reason -> items left for a resumed run
    in_flight: int = 0
    busy_s: float = 0.0  # time with at least one item in the stage
    _busy_since: float = 0.0

    def enter(self) -> None:
        self.items_in += 1
        if self.in_flight == 0:
            self._busy_since = time.monotonic()
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.busy_s += time.monotonic() - self._busy_since

    def busy_now_s(self) -> float:
        return self.busy_s + (time.monotonic() - self._busy_since if self.in_flight else 0.0)

    def counts(self) -> StageCounts:
        return StageCounts(name=self.name, kind=self.kind, concurrency=self.concurrency, items_in=self.items_in,
                           items_out=self.items_out, dropped=dict(self.dropped), unfinished=dict(self.unfinished),
                           in_flight=self.in_flight, busy_s=round(self.busy_now_s(), 3))

    def as_dict(self) -> dict:
        return msgspec.to_builtins(self.counts())


def stage_kind(stage: object) -> str:
    if hasattr(stage, "process_stream"):
        return "stream"
    process = getattr(stage, "process", None)
    if process is None:
        raise TypeError(f"stage {getattr(stage, 'name', stage)!r} defines neither process nor process_stream")
    return "fanout" if inspect.isasyncgenfunction(process) else "map"


_END = object()  # end marker: one per task of the stage it is put in front of


class Chain:
    """Runs items through `stages` in order. Reusable: each `run` starts with fresh stats."""

    def __init__(self, stages: list[Any], *, item_errors: tuple[type[BaseException], ...] = ()) -> None:
        if not stages:
            raise ValueError("a chain needs at least one stage")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique: {names}")
        self.stages = stages
        self.kinds = [stage_kind(s) for s in stages]
        self.tasks = [1 if k == "stream" else max(1, int(s.concurrency)) for s, k in zip(stages, self.kinds)]
        self.item_errors = item_errors
        self.max_in_flight = sum(2 * c for c in self.tasks) + SINK_QUEUE + 2
        self.stats = self._fresh_stats()
        self.sunk = 0

    def _fresh_stats(self) -> list[StageStats]:
        return [StageStats(s.name, k, c) for s, k, c in zip(self.stages, self.kinds, self.tasks)]

    async def run(self, source: Iterable[Any] | AsyncIterable[Any], sink: Callable[[Any], Awaitable[None]], *,
                  on_drop: Callable[[str, Any, Dropped], Awaitable[None]] | None = None,
                  on_unfinished: Callable[[str, Any, BaseException], None] | None = None,
                  on_tick: Callable[[], None] | None = None, tick_s: float = 1.0) -> None:
        """Stream every source item through the chain.

        Guarantees: each item that reaches the end is passed to `sink` exactly once; each Dropped
        goes to `on_drop`; an item whose stage raised one of `item_errors` goes to `on_unfinished`.
        Any other exception cancels the whole chain and propagates (inside an ExceptionGroup).
        """
        self.stats = self._fresh_stats()
        self.sunk = 0
        queues = [asyncio.Queue(maxsize=c) for c in self.tasks] + [asyncio.Queue(maxsize=SINK_QUEUE)]
        finished = asyncio.Event()

        async def close(i: int) -> None:
            for _ in range(self.tasks[i] if i < len(self.stages) else 1):
                await queues[i].put(_END)

        async def feed() -> None:
            async for item in aiter_items(source):
                await queues[0].put(item)
            await close(0)

        async def drop(i: int, dropped: Dropped) -> None:
            self.stats[i].dropped[dropped.reason] += 1
            if on_drop is not None:
                await on_drop(self.stages[i].name, dropped.item, dropped)

        async def pass_on(i: int, result: Any) -> None:
            if isinstance(result, Dropped):
                await drop(i, result)
            elif result is not None:
                self.stats[i].items_out += 1
                await queues[i + 1].put(result)
            else:
                raise TypeError(f"stage {self.stages[i].name!r} returned None; return the item or Dropped(reason)")

        def unfinished(i: int, item: Any, error: BaseException) -> None:
            self.stats[i].unfinished[getattr(error, "kind", type(error).__name__)] += 1
            if on_unfinished is not None:
                on_unfinished(self.stages[i].name, item, error)

        async def map_task(i: int) -> None:
            stage, stats, inbox = self.stages[i], self.stats[i], queues[i]
            fanout = self.kinds[i] == "fanout"
            while (item := await inbox.get()) is not _END:
                stats.enter()
                try:
                    if fanout:
                        async for result in stage.process(item):
                            await pass_on(i, result)
                    else:
                        await pass_on(i, await stage.process(item))
                except self.item_errors as e:
                    unfinished(i, item, e)
                finally:
                    stats.leave()

        async def stream_task(i: int) -> None:
            stage, stats, inbox = self.stages[i], self.stats[i], queues[i]

            async def inbound() -> AsyncIterator[Any]:
                while (item := await inbox.get()) is not _END:
                    stats.enter()
                    stats.leave()  # a stream stage holds items as it likes; in-flight is its own business
                    yield item

            async for result in stage.process_stream(inbound()):
                await pass_on(i, result)

        async def stage_runner(i: int) -> None:
            work = stream_task if self.kinds[i] == "stream" else map_task
            async with asyncio.TaskGroup() as tg:
                for _ in range(self.tasks[i]):
                    tg.create_task(work(i))
            await close(i + 1)

        async def drain() -> None:
            while (item := await queues[-1].get()) is not _END:
                await sink(item)
                self.sunk += 1
            finished.set()

        async def ticker() -> None:
            while not finished.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(tick_s):
                        await finished.wait()
                on_tick()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(feed())
            for i in range(len(self.stages)):
                tg.create_task(stage_runner(i))
            tg.create_task(drain())
            if on_tick is not None:
                tg.create_task(ticker())

    def in_flight(self) -> int:
        return sum(s.in_flight for s in self.stats)


async def aiter_items(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    """Iterate a plain or an async iterable the same way."""
    if hasattr(items, "__aiter__"):
        async for x in items:  # type: ignore[union-attr]
            yield x
    else:
        for x in items:  # type: ignore[union-attr]
            yield x
