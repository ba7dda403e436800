"""The engine with in-process flows: every item exactly once, loop-backs, backpressure, errors."""

import asyncio

import pytest

from kodcode_async.engine import Engine


class CountingFlow:
    """Each item needs `tries[item]` passes through generate/verify before it finishes."""

    def __init__(self, tries, verify_delay=0.0):
        self.tries = tries
        self.verify_delay = verify_delay
        self.seen = {}
        self.gen_in_flight = 0
        self.max_gen_in_flight = 0
        self.generated = 0
        self.verified = 0
        self.max_ahead = 0  # generated but not yet verified, seen when a generation starts

    def admit(self, item):
        self.seen[item] = 0
        return [item]

    async def generate(self, item):
        self.max_ahead = max(self.max_ahead, self.generated - self.verified)
        self.generated += 1
        self.gen_in_flight += 1
        self.max_gen_in_flight = max(self.max_gen_in_flight, self.gen_in_flight)
        await asyncio.sleep(0)
        self.gen_in_flight -= 1
        return item

    async def verify(self, item):
        await asyncio.sleep(self.verify_delay)
        self.verified += 1
        self.seen[item] += 1
        return item

    def settle(self, item):
        if self.seen[item] < self.tries.get(item, 1):
            return [item], None  # loop back: another attempt
        return [], item


def run(flow, items, **kw):
    out = []

    async def sink(x):
        out.append(x)

    engine = Engine(flow, **kw)
    asyncio.run(engine.run(items, sink))
    return out, engine


def test_every_item_finishes_exactly_once_with_loop_backs():
    tries = {i: 1 + i % 4 for i in range(500)}
    flow = CountingFlow(tries)
    out, engine = run(flow, range(500), llm_workers=16, verify_workers=4)
    assert sorted(out) == list(range(500))
    assert all(flow.seen[i] == tries[i] for i in range(500))
    assert engine.stats.verify.done == sum(tries.values())


def test_admission_bounds_items_in_flight():
    flow = CountingFlow({}, verify_delay=0.001)
    admitted_at_once = []

    async def items():
        for i in range(200):
            admitted_at_once.append(i - len(out))
            yield i

    out = []

    async def sink(x):
        out.append(x)

    engine = Engine(flow, llm_workers=8, verify_workers=2, max_items_in_flight=10)
    asyncio.run(engine.run(items(), sink))
    assert len(out) == 200 and max(admitted_at_once) <= 10


def test_slow_verification_holds_back_generation():
    flow = CountingFlow({}, verify_delay=0.01)
    out, engine = run(flow, range(300), llm_workers=50, verify_workers=2, max_items_in_flight=300)
    assert len(out) == 300
    # At most: one unit held by each LLM worker waiting to enqueue, 2 queued and 1 running per
    # verify worker. Without backpressure generation would run 300 ahead.
    assert flow.max_ahead <= 50 + 3 * 2


def test_a_flow_error_stops_the_run_loudly():
    class Broken(CountingFlow):
        async def verify(self, item):
            if item == 7:
                raise RuntimeError("engine-level failure")
            return await super().verify(item)

    with pytest.raises(ExceptionGroup) as e:
        run(Broken({}), range(20), llm_workers=4, verify_workers=2)
    assert e.group_contains(RuntimeError, match="^engine-level failure$")
    assert all(isinstance(x, RuntimeError) for x in e.value.exceptions), e.value.exceptions


def test_empty_input_finishes():
    out, _ = run(CountingFlow({}), [], llm_workers=2, verify_workers=1)
    assert out == []
