"""Engine overhead: requests/s, saturation of a capped server, and RSS against input size.

A local OpenAI-compatible server (aiohttp, its own process, so it does not share the engine's
core) answers after a fixed latency and serves at most `--cap` requests at once, like a GPU
server's batch. It integrates its in-flight count over time, so saturation = mean in flight / cap.

Measured in one run, side by side:
* the engine (a chain: one stage asking the real OpenAI backend over HTTP with `--workers` items at
  once, then a trivial stage);
* the peers' way: send `--workers` requests, `asyncio.gather` them, then the next batch;
* peak RSS of streaming N small items through a three-stage chain (map, fan-out 1:1, stream), for
  growing N. The whole `kodcode-async run` command is measured by benchmarks/run_command.py.

Usage: python benchmarks/engine_overhead.py [--requests 20000] [--workers 256] [--cap 256] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kodcode_async.backends.base import Request  # noqa: E402
from kodcode_async.backends.openai import OpenAIBackend, OpenAIConfig  # noqa: E402
from kodcode_async.engine import Chain  # noqa: E402

# ---- the capped server (runs in a child process) --------------------------------------------

def serve(cap: int, latency: float) -> None:
    from aiohttp import web

    state = {"in_flight": 0, "busy": 0.0, "last": time.monotonic(), "requests": 0, "start": time.monotonic()}
    slots = asyncio.Semaphore(cap)
    body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()

    def tick(delta: int) -> None:
        now = time.monotonic()
        state["busy"] += state["in_flight"] * (now - state["last"])
        state["last"] = now
        state["in_flight"] += delta

    async def chat(request: web.Request) -> web.Response:
        state.setdefault("first", time.monotonic())
        await request.read()
        async with slots:
            tick(+1)
            try:
                await asyncio.sleep(latency)
            finally:
                tick(-1)
        state["requests"] += 1
        state["last_answer"] = time.monotonic()
        return web.Response(body=body, content_type="application/json")

    async def stats(_: web.Request) -> web.Response:
        tick(0)
        return web.json_response({"requests": state["requests"], "busy": state["busy"],
                                  "elapsed": time.monotonic() - state["start"], "first": state.get("first"),
                                  "last_answer": state.get("last_answer")})

    async def reset(_: web.Request) -> web.Response:
        tick(0)
        state.update(busy=0.0, requests=0, start=time.monotonic(), last=time.monotonic())
        state.pop("first", None)
        return web.json_response({})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/stats", stats)
        app.router.add_post("/reset", reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    _run(main())


def _run(coro):  # noqa: ANN001, ANN202
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# ---- clients --------------------------------------------------------------------------------

class Ask:
    """One request per item, `concurrency` items at once."""

    name = "ask"

    def __init__(self, backend: OpenAIBackend, concurrency: int) -> None:
        self.backend, self.concurrency = backend, concurrency

    async def process(self, i: int) -> int:
        await self.backend.generate(_request(i))
        return i


class Pass:
    name, concurrency = "pass", 4

    async def process(self, i: int) -> int:
        return i


def _request(i: int) -> Request:
    return Request(stage="bench", item_id=str(i), attempt=0, messages=[{"role": "user", "content": "hi"}])


async def _server_stats(session, base: str, path: str, post: bool = False) -> dict:  # noqa: ANN001
    method = session.post if post else session.get
    async with method(base + path) as r:
        return await r.json()


async def measure(port: int, n: int, workers: int, cap: int, way: str) -> dict:
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    backend = OpenAIBackend(OpenAIConfig(base_url=base + "/v1", model="m", max_in_flight=workers))
    async with aiohttp.ClientSession() as s:
        await _server_stats(s, base, "/reset", post=True)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        if way == "engine":
            done = 0

            async def sink(_: int) -> None:
                nonlocal done
                done += 1

            await Chain([Ask(backend, workers), Pass()]).run(range(n), sink)
        else:
            for start in range(0, n, workers):
                await asyncio.gather(*(backend.generate(_request(i)) for i in range(start, min(n, start + workers))))
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        st = await _server_stats(s, base, "/stats")
    await backend.close()
    return {"way": way, "requests": st["requests"], "wall": wall, "rps": st["requests"] / wall,
            "saturation": st["busy"] / (cap * st["elapsed"]), "client_cpu": cpu}


# ---- memory against input size (each size in a fresh process) -------------------------------

class Map:
    name, concurrency = "map", 128

    async def process(self, i: int) -> dict:
        return {"id": i, "row": "x" * 64}


class FanOne:
    name, concurrency = "fan", 64

    async def process(self, item: dict):  # noqa: ANN201
        yield item


class Stream:
    name, concurrency = "stream", 1

    async def process_stream(self, items):  # noqa: ANN001, ANN201
        async for item in items:
            yield item


def rss_child(n: int) -> None:
    count = 0

    async def sink(_: int) -> None:
        nonlocal count
        count += 1

    async def main() -> None:
        await Chain([Map(), FanOne(), Stream()]).run(range(n), sink)

    t = time.perf_counter()
    _run(main())
    assert count == n
    print(json.dumps({"n": n, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "items_per_s": n / (time.perf_counter() - t)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=256)
    ap.add_argument("--cap", type=int, default=256)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.cap, args.latency)
    if args.rss_child:
        return rss_child(args.rss_child)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"server cap {args.cap}, latency {args.latency * 1000:.0f} ms, workers {args.workers}, "
          f"{args.requests} requests per way")
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--cap", str(args.cap),
                               "--latency", str(args.latency)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        os.sched_setaffinity(0, {0})  # the engine gets one core; the server may use the other
        rows = [_run(measure(port, args.requests, args.workers, args.cap, way)) for way in ("gather-batches", "engine")]
    finally:
        server.terminate()
        server.wait()
    ideal = args.cap / args.latency
    print(f"\n{'way':<18}{'requests':>9}{'wall s':>8}{'req/s':>9}{'saturation':>12}{'client CPU s':>14}")
    for r in rows:
        print(f"{r['way']:<18}{r['requests']:>9}{r['wall']:>8.2f}{r['rps']:>9.0f}{r['saturation']:>11.1%}"
              f"{r['client_cpu']:>14.2f}")
    print(f"ideal for this server: {ideal:.0f} req/s; engine / gather-batches: {rows[1]['rps'] / rows[0]['rps']:.2f}x")

    print(f"\n{'items':>10}{'peak RSS MB':>13}{'items/s':>10}")
    for n in (int(x) for x in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(n)], capture_output=True, text=True,
                             check=True)
        r = json.loads(out.stdout)
        print(f"{r['n']:>10}{r['rss_mb']:>13.1f}{r['items_per_s']:>10.0f}")


if __name__ == "__main__":
    main()
