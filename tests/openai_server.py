"""An OpenAI-compatible test server (real HTTP on 127.0.0.1) with scripted misbehaviour.

Answers /v1/chat/completions from recorded responses keyed by the user message, or with a fixed
text. Faults are scripted per request number: 500, 429 and 503 (+Retry-After), slow, reset,
malformed, endless body. Runs in-process (`start_server`) or as a subprocess (`python -m tests.openai_server`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

from aiohttp import web


class Script:
    def __init__(self, faults: list[str] | None = None, text: str = "hello", answers: dict | None = None,
                 retry_after: str = "1", delay: float = 0.0, hold_after: int | None = None) -> None:
        self.delay = delay
        # Requests after the first `hold_after` wait until POST /release: a run is surely mid-way then.
        self.hold_after = hold_after
        self.released = asyncio.Event()
        self.faults = list(faults or [])  # consumed one per request: "500", "429", "slow", "reset", ...
        self.text = text
        self.answers = answers or {}
        self.retry_after = retry_after
        self.requests = 0
        self.arrivals: list[float] = []  # time.monotonic() of each request (in-process server)
        self.by_key: Counter = Counter()
        self.completion_texts: list[str] | None = None  # /v1/completions: choice i gets text i (else text:prompt)
        self.bodies: list[dict] = []  # every request body, in arrival order (in-process server)


def make_app(script: Script) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        script.requests += 1
        script.arrivals.append(time.monotonic())
        body = await request.json()
        fault = script.faults.pop(0) if script.faults else "ok"
        if fault == "500":
            return web.Response(status=500, text="boom")
        if fault == "429":
            return web.Response(status=429, headers={"Retry-After": script.retry_after}, text="slow down")
        if fault == "503":  # with Retry-After when the script has one (seconds or an HTTP date)
            return web.Response(status=503, headers={"Retry-After": script.retry_after} if script.retry_after else {},
                                text="overloaded")
        if fault == "400":
            return web.Response(status=400, text='{"error": "bad request"}')
        if fault == "slow":
            await asyncio.sleep(3)  # longer than the clients' 1 s timeout in the tests; short, so shutdown is quick
        if fault == "reset":
            request.transport.close()
            return web.Response(status=200)
        if fault == "malformed":
            return web.Response(status=200, text="{not json", content_type="application/json")
        if fault == "endless":
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            while True:
                await resp.write(b" ")
                await asyncio.sleep(0.05)
        if script.hold_after is not None and script.requests > script.hold_after:
            await script.released.wait()
        if script.delay:
            await asyncio.sleep(script.delay)
        user = next((m["content"] for m in reversed(body.get("messages", [])) if m["role"] == "user"), "")
        key = (user, body.get("seed"))
        script.by_key[json.dumps(key)] += 1
        text = script.answers.get(json.dumps(key), script.text)
        return web.json_response({
            "id": "cmpl-test", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        for i in range(body.get("n", 1))],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

    async def completions(request: web.Request) -> web.Response:
        script.requests += 1
        script.arrivals.append(time.monotonic())
        raw = await request.read()
        body = json.loads(raw)
        script.bodies.append(body)
        texts = script.completion_texts
        return web.json_response({
            "id": "cmpl-test", "object": "text_completion", "model": body.get("model"),
            "choices": [{"index": i, "text": texts[i % len(texts)] if texts else script.text + ":" + body["prompt"],
                         "finish_reason": "stop"} for i in range(body.get("n", 1))],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})

    async def release(_: web.Request) -> web.Response:
        script.released.set()
        return web.json_response({"released": True})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"requests": script.requests, "by_key": dict(script.by_key)})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/stats", stats)
    app.router.add_post("/release", release)
    return app


async def start_server(script: Script, port: int = 0) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(make_app(script), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/v1"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--answers", help="JSONL of {user, seed, response}")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    ap.add_argument("--hold-after", type=int, default=None, help="requests after the first N wait for POST /release")
    args = ap.parse_args()
    answers = {}
    if args.answers:
        for line in open(args.answers):
            row = json.loads(line)
            answers[json.dumps([row["user"], row["seed"]])] = row["response"]
    script = Script(answers=answers, delay=args.delay, hold_after=args.hold_after)

    async def run() -> None:
        runner, url = await start_server(script, args.port)
        print(url, flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
