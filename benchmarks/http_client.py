"""The OpenAI backend's HTTP path against a bare aiohttp session: client CPU per request, side by side.

Both send the same `--requests` chat requests with `--concurrency` at once, over keep-alive
connections, to the capped server of benchmarks/engine_overhead.py (its own process, 50 ms per
answer). "bare aiohttp" is the least a client can do with aiohttp (POST ready bytes, read the
body); "kodcode-async" is the OpenAI backend's `generate` as a run calls it (payload, JSON both
ways, redirect and Retry-After handling, proxy lookup from the environment, its connector
settings). What matters for the whole `run` command is the client's CPU per request: the run's
one event loop pays it on one core. Wall time and the server's busy slots are printed too.

Usage: python benchmarks/http_client.py [--requests 30000] [--concurrency 256] [--rounds 2]
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
import urllib.request
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BODY = b'{"model": "m", "messages": [{"role": "user", "content": "Write f(x) returning x + 1."}], "n": 1}'
HEADERS = {"Content-Type": "application/json"}


def server_stats(url: str, reset: bool = False) -> dict:
    base = url.rsplit("/v1", 1)[0]
    req = urllib.request.Request(base + ("/reset" if reset else "/stats"), method="POST" if reset else "GET")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def ours(url: str, n: int, concurrency: int) -> int:
    from kodcode_async.backends import Request
    from kodcode_async.backends.openai import OpenAIBackend, OpenAIConfig

    backend = OpenAIBackend(OpenAIConfig(base_url=url, model="m", max_in_flight=concurrency, max_retries=0))
    messages = [{"role": "user", "content": "Write f(x) returning x + 1."}]
    left, ok = n, 0

    async def worker() -> None:
        nonlocal left, ok
        while left > 0:
            left -= 1
            done = await backend.generate(Request(stage="s", item_id=str(left), attempt=0, messages=messages))
            ok += bool(done.texts)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await backend.close()
    return ok


async def aiohttp_way(url: str, n: int, concurrency: int) -> int:
    import aiohttp

    session = aiohttp.ClientSession(headers=HEADERS, connector=aiohttp.TCPConnector(limit=concurrency),
                                    timeout=aiohttp.ClientTimeout(total=600.0))
    left, ok = n, 0

    async def worker() -> None:
        nonlocal left, ok
        while left > 0:
            left -= 1
            async with session.post(url + "/chat/completions", data=BODY) as r:
                body = await r.read()
            ok += r.status == 200 and body.startswith(b"{")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await session.close()
    return ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=30000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--server", choices=("lean", "aiohttp"), default="lean",
                    help="the capped server (benchmarks/engine_overhead.py): a bare asyncio protocol, or aiohttp.web")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.requests} requests, {args.concurrency} at once, uvloop")
    server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "engine_overhead.py"), "--serve", "--server", args.server,
                               "--cap", str(args.concurrency), "--latency", "0.05"], stdout=subprocess.PIPE, text=True)
    results: dict[str, list[tuple[float, float]]] = {"bare aiohttp": [], "kodcode-async": []}
    try:
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/v1"
        for _ in range(args.rounds):
            for name, way in (("bare aiohttp", aiohttp_way), ("kodcode-async", ours)):
                server_stats(url, reset=True)
                t, c = time.perf_counter(), cpu_s()
                ok = uvloop.run(way(url, args.requests, args.concurrency))
                wall, cpu = time.perf_counter() - t, cpu_s() - c
                busy = server_stats(url)["busy"] / (args.concurrency * wall)
                if ok != args.requests:
                    raise SystemExit(f"{name}: {args.requests - ok} requests failed")
                results[name].append((wall, cpu))
                print(f"  {name:<14} {wall:6.2f} s wall  {args.requests / wall:6.0f} req/s  {busy:6.1%} slots busy  "
                      f"{cpu / args.requests * 1e6:5.1f} us client CPU per request")
    finally:
        server.terminate()
        server.wait()
    per = {k: min(c for _, c in v) / args.requests * 1e6 for k, v in results.items()}
    print(f"client CPU per request (best round): bare aiohttp {per['bare aiohttp']:.1f} us, kodcode-async's backend "
          f"{per['kodcode-async']:.1f} us: {per['kodcode-async'] / per['bare aiohttp']:.2f}x the bare session")


if __name__ == "__main__":
    main()
