"""The chain of stages: fan-out, drops with reasons, stream stages, backpressure, errors, cancellation."""

import asyncio
import os
import tempfile

import psutil
import pytest

from kodcode_async.engine import Chain, Dropped


class Double:
    """map: x -> 2x"""

    name, concurrency = "double", 4

    async def process(self, x):
        await asyncio.sleep(0)
        return 2 * x


class Fan:
    """fan-out: x -> x copies of x (0 gives nothing)"""

    name, concurrency = "fan", 3

    async def process(self, x):
        for i in range(x):
            await asyncio.sleep(0)
            yield (x, i)


class DropOdd:
    name, concurrency = "drop_odd", 2

    async def process(self, x):
        return Dropped("odd", x) if x % 2 else x


class Dedup:
    """stream: keeps the first of equal items; records the order it saw them in."""

    name, concurrency = "dedup", 1

    def __init__(self):
        self.seen_order = []

    async def process_stream(self, items):
        seen = set()
        async for x in items:
            self.seen_order.append(x)
            if x in seen:
                yield Dropped("duplicate", x)
            else:
                seen.add(x)
                yield x


def run(chain, source, **kw):
    out, drops = [], []

    async def sink(x):
        out.append(x)

    async def on_drop(stage, item, dropped):
        drops.append((stage, dropped.reason, item))

    asyncio.run(chain.run(source, sink, on_drop=on_drop, **kw))
    return out, drops


def test_a_fan_out_stage_sends_every_child_downstream_exactly_once():
    chain = Chain([Fan(), Double()])
    out, drops = run(chain, [0, 1, 2, 3])
    assert sorted(out) == sorted([(1, 0) * 2, (2, 0) * 2, (2, 1) * 2, (3, 0) * 2, (3, 1) * 2, (3, 2) * 2])
    assert chain.stats[0].items_in == 4 and chain.stats[0].items_out == 6 and drops == []


def test_a_drop_is_recorded_with_its_stage_and_reason_and_goes_no_further():
    chain = Chain([DropOdd(), Double()])
    out, drops = run(chain, range(10))
    assert sorted(out) == [0, 4, 8, 12, 16]
    assert sorted(drops) == [("drop_odd", "odd", x) for x in (1, 3, 5, 7, 9)]
    assert dict(chain.stats[0].dropped) == {"odd": 5} and chain.stats[1].items_in == 5


def test_a_stream_stage_sees_items_in_arrival_order():
    dedup = Dedup()
    chain = Chain([dedup])  # the source is its only feeder: arrival order is the source order
    source = [3, 1, 3, 2, 1, 5]
    out, drops = run(chain, source)
    assert dedup.seen_order == source
    assert out == [3, 1, 2, 5] and [d[2] for d in drops] == [3, 1]


def test_a_stage_returning_none_is_a_loud_error():
    class Forgetful:
        name, concurrency = "forgetful", 1

        async def process(self, x):
            return None

    with pytest.raises(ExceptionGroup) as info:
        run(Chain([Forgetful()]), [1])
    assert "returned None" in str(info.value.exceptions[0].exceptions[0])


class ItemFailure(Exception):
    kind = "server_down"


class Down(RuntimeError):
    """An item error with the kind the backend gives a 503."""

    kind = "http_503"


def test_item_errors_leave_items_unfinished_and_other_errors_stop_the_chain():
    class Flaky:
        name, concurrency = "flaky", 2

        async def process(self, x):
            if x == 3:
                raise ItemFailure("no answer")
            return x

    unfinished = []
    chain = Chain([Flaky()], item_errors=(ItemFailure,))
    out, _ = run(chain, range(6), on_unfinished=lambda stage, item, e: unfinished.append((stage, item)))
    assert sorted(out) == [0, 1, 2, 4, 5] and unfinished == [("flaky", 3)]
    assert dict(chain.stats[0].unfinished) == {"server_down": 1}
    with pytest.raises(ExceptionGroup):
        run(Chain([Flaky()]), range(6))  # not declared an item error: the run stops


def test_backpressure_a_slow_last_stage_stops_the_source_pulling():
    pulled = []
    chain_done = []

    class Slow:
        name, concurrency = "slow", 2

        async def process(self, x):
            await asyncio.sleep(0.01)
            chain_done.append(x)
            return x

    def source():
        for i in range(200):
            pulled.append(i)
            # Never more than the chain can hold: Slow's 2 tasks and queue, Double's, the sink's queue.
            assert len(pulled) - len(chain_done) <= chain.max_in_flight
            yield i

    chain = Chain([Double(), Slow()])
    out, _ = run(chain, source())
    assert len(out) == 200
    # At the moment the last item was pulled, most of the input was already through the slow stage.
    assert chain.max_in_flight == 2 * 4 + 2 * 2 + 64 + 2


def test_in_flight_never_exceeds_the_bound_across_a_three_stage_chain():
    peak = []

    class Watch:
        name, concurrency = "watch", 5

        async def process(self, x):
            peak.append(chain.in_flight())
            await asyncio.sleep(0.001)
            return x

    chain = Chain([Fan(), Double(), Watch()])
    out, _ = run(chain, [3] * 200)
    assert len(out) == 600 and max(peak) <= chain.max_in_flight


def test_empty_input_finishes_and_names_must_be_unique():
    out, drops = run(Chain([Double()]), [])
    assert out == [] and drops == []
    with pytest.raises(ValueError, match="unique"):
        Chain([Double(), Double()])


def test_cancelling_mid_chain_leaves_no_task_and_reaps_every_sandbox_child(isolated):
    from kodcode_async.journal import Journal
    from kodcode_async.resources import SandboxClient
    from sandbox import Job, Limits
    from sandbox.pool import SandboxConfig, SandboxPool

    started = asyncio.Event()

    class Hang:
        name, concurrency = "hang", 2

        def __init__(self, sandbox):
            self.sandbox = sandbox

        async def process(self, x):
            started.set()
            job = Job(id=str(x), solution="import time\ntime.sleep(60)\n", test="import solution\n\ndef test_x():\n    pass\n",
                      limits=Limits(wall_s=120))
            return await self.sandbox.verify("hang", str(x), 0, job)

    async def main(tmp):
        pool = SandboxPool(SandboxConfig(workers=2))
        async with pool:
            pids = pool.pids()
            chain = Chain([Double(), Hang(SandboxClient(pool, Journal(os.path.join(tmp, "j.sqlite"))))])

            async def sink(x):
                pass

            task = asyncio.create_task(chain.run(range(10), sink))
            await started.wait()
            await asyncio.sleep(0.5)  # the jobs are running inside the sandbox now
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert others == []
        return pids

    with tempfile.TemporaryDirectory() as tmp:
        pids = asyncio.run(main(tmp))
    assert len(pids) == 2
    assert psutil.Process().children(recursive=True) == []  # every worker and job process reaped


class Clock:
    """A clock the test moves by hand (patched in for the engine's time.monotonic)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_busy_time_is_the_time_with_at_least_one_item_in_the_stage(monkeypatch):
    from kodcode_async import engine

    clock = Clock()
    monkeypatch.setattr(engine.time, "monotonic", clock)
    s = engine.StageStats("solve", "map", 4)
    assert s.busy_now_s() == 0.0 and s.in_flight == 0
    s.enter()  # t=100: busy from here
    clock.now = 101.0
    s.enter()  # a second item does not restart the clock
    assert s.in_flight == 2 and s.items_in == 2
    clock.now = 103.0
    s.leave()
    assert s.in_flight == 1 and s.busy_s == 0.0 and s.busy_now_s() == 3.0  # still busy: counted up to now
    clock.now = 104.5
    s.leave()  # idle at 104.5: 4.5 s busy
    assert s.in_flight == 0 and s.busy_s == 4.5
    clock.now = 110.0
    assert s.busy_now_s() == 4.5  # idle time is not busy time
    s.enter()  # busy again from 110
    clock.now = 112.25
    assert s.busy_now_s() == 6.75
    s.leave()
    assert s.busy_s == 6.75 and s.items_in == 3
    s.items_out, s.dropped["failed"], s.unfinished["http_500"] = 2, 1, 1
    clock.now = 120.0
    assert s.as_dict() == {"name": "solve", "kind": "map", "concurrency": 4, "items_in": 3, "items_out": 2,
                           "dropped": {"failed": 1}, "unfinished": {"http_500": 1}, "in_flight": 0, "busy_s": 6.75}
    s.busy_s = 1.23456
    assert s.as_dict()["busy_s"] == 1.235  # three decimals


def test_each_stage_counts_what_came_in_went_out_was_dropped_or_left_unfinished():
    class Flaky:
        name, concurrency = "flaky", 2

        async def process(self, x):
            if x == 7:
                raise Down("server down")
            if x == 9:
                raise KeyError("no kind attribute")
            return x

    unfinished = []
    chain = Chain([Fan(), Double(), Dedup()])
    assert chain.kinds == ["fanout", "map", "stream"] and chain.tasks == [3, 4, 1]
    assert chain.max_in_flight == 2 * (3 + 4 + 1) + 64 + 2
    out, drops = run(chain, [1, 2, 3])
    assert sorted(out) == sorted([(1, 0, 1, 0), (2, 0, 2, 0), (2, 1, 2, 1), (3, 0, 3, 0), (3, 1, 3, 1), (3, 2, 3, 2)])
    stats = {s.name: s.as_dict() for s in chain.stats}
    assert (stats["fan"]["items_in"], stats["fan"]["items_out"]) == (3, 6)
    assert (stats["double"]["items_in"], stats["double"]["items_out"]) == (6, 6)
    assert (stats["dedup"]["items_in"], stats["dedup"]["items_out"]) == (6, 6)
    assert all(s["in_flight"] == 0 for s in stats.values()) and chain.in_flight() == 0
    assert chain.sunk == 6 and drops == []

    chain = Chain([DropOdd(), Flaky(), Dedup()], item_errors=(Down, KeyError))
    out, drops = run(chain, [2, 3, 4, 7, 9, 4], on_unfinished=lambda stage, item, e: unfinished.append((stage, item)))
    assert sorted(out) == [2, 4] and unfinished == []
    stats = {s.name: s.as_dict() for s in chain.stats}
    assert stats["drop_odd"] == {**stats["drop_odd"], "items_in": 6, "items_out": 3, "dropped": {"odd": 3}}
    assert stats["flaky"]["items_in"] == 3 and stats["flaky"]["items_out"] == 3 and stats["flaky"]["unfinished"] == {}
    assert stats["dedup"]["dropped"] == {"duplicate": 1} and stats["dedup"]["items_out"] == 2 and chain.sunk == 2
    assert sorted(drops) == [("dedup", "duplicate", 4), ("drop_odd", "odd", 3), ("drop_odd", "odd", 7),
                             ("drop_odd", "odd", 9)]

    chain = Chain([Flaky()], item_errors=(Down, KeyError))
    unfinished.clear()
    out, _ = run(chain, [1, 7, 9, 2], on_unfinished=lambda stage, item, e: unfinished.append((stage, item)))
    assert sorted(out) == [1, 2] and sorted(unfinished) == [("flaky", 7), ("flaky", 9)]
    assert chain.stats[0].unfinished == {"http_503": 1, "KeyError": 1}  # the error's kind, else its type
    out, _ = run(chain, [1])  # reusable: a new run starts with fresh figures
    assert out == [1] and chain.stats[0].items_in == 1 and chain.stats[0].unfinished == {} and chain.sunk == 1


def test_a_stage_with_no_process_is_refused_and_concurrency_is_at_least_one():
    class Nothing:
        name, concurrency = "nothing", 2

    with pytest.raises(TypeError, match="stage 'nothing' defines neither process nor process_stream"):
        Chain([Nothing()])
    with pytest.raises(ValueError, match="at least one stage"):
        Chain([])

    class Zero:
        name, concurrency = "zero", 0

        async def process(self, x):
            return x

    chain = Chain([Zero()])
    assert chain.tasks == [1] and run(chain, [5, 6])[0] == [5, 6]


def test_ticks_come_while_the_chain_runs_and_once_more_at_the_end():
    ticks = []

    class Slow:
        name, concurrency = "slow", 1

        async def process(self, x):
            await asyncio.sleep(0.05)
            return x

    chain = Chain([Slow()])
    out, _ = run(chain, range(6), on_tick=lambda: ticks.append(chain.sunk), tick_s=0.04)
    assert out == list(range(6))
    assert len(ticks) >= 3 and ticks[-1] == 6 and ticks[0] < 6  # during the run, and after the last item
    ticks.clear()
    run(Chain([Double()]), [1], on_tick=lambda: ticks.append(1), tick_s=60)
    assert ticks == [1]  # a run shorter than one tick still ticks once, at its end


def test_plain_and_async_sources_stream_the_same():
    from kodcode_async.engine import aiter_items

    async def gen():
        for x in (1, 2, 3):
            yield x

    async def collect(src):
        return [x async for x in aiter_items(src)]

    assert asyncio.run(collect([1, 2, 3])) == asyncio.run(collect(gen())) == [1, 2, 3]
    assert run(Chain([Double()]), gen())[0] and sorted(run(Chain([Double()]), gen())[0]) == [2, 4, 6]


def test_exact_refusals_and_a_stream_stage_runs_as_one_task():
    class NoName:
        concurrency = 1

    from kodcode_async.engine import stage_kind

    with pytest.raises(TypeError) as e:
        stage_kind(NoName())
    assert "defines neither process nor process_stream" in str(e.value) and "NoName object" in str(e.value)
    with pytest.raises(ValueError) as e:
        Chain([])
    assert str(e.value) == "a chain needs at least one stage"

    class Wide(Dedup):
        name, concurrency = "wide", 8

    chain = Chain([Wide()])
    assert chain.tasks == [1] and chain.stats[0].concurrency == 1 and chain.stats[0].kind == "stream"
    assert chain.sunk == 0 and chain.in_flight() == 0  # figures exist before the first run
    out, drops = run(chain, [1, 1, 2])
    assert out == [1, 2] and drops == [("wide", "duplicate", 1)] and chain.sunk == 2


def test_the_error_itself_reaches_on_unfinished_and_every_failure_is_counted():
    class Failing:
        name, concurrency = "failing", 2

        async def process(self, x):
            raise Down(f"down {x}")

    seen = []
    chain = Chain([Failing()], item_errors=(Down,))
    run(chain, [1, 2, 3], on_unfinished=lambda stage, item, e: seen.append((stage, item, str(e))))
    assert sorted(seen) == [("failing", 1, "down 1"), ("failing", 2, "down 2"), ("failing", 3, "down 3")]
    assert chain.stats[0].unfinished == {"http_503": 3}
