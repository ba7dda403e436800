"""Engine overhead: requests/s, saturation of a capped server, and RSS against input size.

A local OpenAI-compatible server (its own process) answers after a fixed latency and serves at
most `--cap` requests at once, like a GPU server's batch. It integrates its in-flight count over
time, so saturation = mean in flight / cap. By default it is a bare asyncio protocol that costs
little CPU per request: a GPU server's HTTP front end runs on its own machine, while here it
shares two cores with the client. `--server aiohttp` runs the same server on aiohttp.web, which
takes ~0.08 ms of CPU per request and holds each answer back by a few ms under a burst.

Measured in one run, side by side:
* the engine (a chain: one stage asking the real OpenAI backend over HTTP with `--workers` items at
  once, then a trivial stage);
* the peers' way: send `--workers` requests, `asyncio.gather` them, then the next batch;
* peak RSS of streaming N small items through a three-stage chain (map, fan-out 1:1, stream), for
  growing N. The whole `kodcode-async run` command is measured by benchmarks/run_command.py.

Usage: python benchmarks/engine_overhead.py [--requests 20000] [--workers 256] [--cap 256] [--latency 0.05]
                                           [--server lean|aiohttp]
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
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kodcode_async.backends.base import Request  # noqa: E402
from kodcode_async.backends.openai import OpenAIBackend, OpenAIConfig  # noqa: E402
from kodcode_async.engine import Chain  # noqa: E402

# ---- the capped server (runs in a child process) --------------------------------------------

class _Slots:
    """At most `cap` requests in their latency at once (FIFO beyond), with busy slot-seconds integrated."""

    def __init__(self, cap: int, latency: float) -> None:
        self.cap, self.latency = cap, latency
        self.in_flight, self.waiting = 0, deque()
        self.reset()

    def reset(self) -> None:
        self.busy, self.requests, self.start = 0.0, 0, time.monotonic()
        self.last, self.first, self.last_answer = self.start, None, None

    def tick(self, delta: int) -> None:
        now = time.monotonic()
        self.busy += self.in_flight * (now - self.last)
        self.last = now
        self.in_flight += delta

    def stats(self) -> dict:
        self.tick(0)
        return {"requests": self.requests, "busy": self.busy, "elapsed": time.monotonic() - self.start,
                "first": self.first, "last_answer": self.last_answer}

    def submit(self, answer) -> None:  # noqa: ANN001 - answer() writes the response
        if self.first is None:
            self.first = time.monotonic()
        if self.in_flight < self.cap:
            self._start(answer)
        else:
            self.waiting.append(answer)

    def _start(self, answer) -> None:  # noqa: ANN001
        self.tick(+1)
        asyncio.get_running_loop().call_later(self.latency, self._done, answer)

    def _done(self, answer) -> None:  # noqa: ANN001
        self.tick(-1)
        self.requests += 1
        self.last_answer = time.monotonic()
        answer()
        if self.waiting and self.in_flight < self.cap:
            self._start(self.waiting.popleft())


CHAT_ANSWER = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()


def _response(body: bytes, status: str = "200 OK") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)


class _Lean(asyncio.Protocol):
    """HTTP/1.1 on a bare protocol: a GPU server's HTTP front end does not share the client's cores,
    so this one costs as little CPU per request as it can (requests with Content-Length, in order)."""

    ANSWER = _response(CHAT_ANSWER)

    def __init__(self, slots: _Slots) -> None:
        self.slots, self.buf, self.pending, self.transport = slots, b"", deque(), None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].split(b"\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head[1:]
                           if line[:15].lower() == b"content-length:"), 0)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            method, path = head[0].split(b" ")[:2]
            self.pending.append((method, path))
            if len(self.pending) == 1:
                self._next()

    def _next(self) -> None:
        if not self.pending:
            return
        method, path = self.pending[0]
        if path.endswith(b"/completions"):
            self.slots.submit(self._answer)
            return
        if path == b"/stats":
            body = json.dumps(self.slots.stats()).encode()
        elif path == b"/reset" and method == b"POST":
            self.slots.reset()
            body = b"{}"
        else:
            return self._answer(_response(b'{"error": "not found"}', "404 Not Found"))
        self._answer(_response(body))

    def _answer(self, response: bytes | None = None) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(response or self.ANSWER)
        self.pending.popleft()
        self._next()


def serve(cap: int, latency: float, server: str = "lean") -> None:
    """Answer chat requests after `latency` s, at most `cap` at once; print the port, serve until killed."""
    if server == "aiohttp":
        return serve_aiohttp(cap, latency)
    slots = _Slots(cap, latency)

    async def main() -> None:
        srv = await asyncio.get_running_loop().create_server(lambda: _Lean(slots), "127.0.0.1", 0, backlog=4096)
        print(srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    _run(main())


def serve_aiohttp(cap: int, latency: float) -> None:
    """The same server on aiohttp.web: ~0.08 ms of its own CPU per request, on the client's machine."""
    from aiohttp import web

    slots = _Slots(cap, latency)

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        answered = asyncio.get_running_loop().create_future()
        slots.submit(lambda: answered.done() or answered.set_result(None))
        await answered
        return web.Response(body=CHAT_ANSWER, content_type="application/json")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(slots.stats())

    async def reset(_: web.Request) -> web.Response:
        slots.reset()
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
    ap.add_argument("--server", choices=("lean", "aiohttp"), default="lean",
                    help="the capped server: a bare asyncio protocol (default), or aiohttp.web")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.cap, args.latency, args.server)
    if args.rss_child:
        return rss_child(args.rss_child)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.server} server, cap {args.cap}, latency {args.latency * 1000:.0f} ms, workers {args.workers}, "
          f"{args.requests} requests per way")
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--cap", str(args.cap), "--server", args.server,
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
