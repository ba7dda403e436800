"""Any OpenAI-compatible server (vLLM, SGLang, llama.cpp, OpenAI, Together, ...) over HTTP/1.1.

Requests go through `http.HTTPClient`, a keep-alive client for one origin that costs a quarter or
less of aiohttp's CPU per request (benchmarks/http_client.py): at thousands of requests a
second the client's core is the limit of the whole run.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass

import orjson

from kodcode_async.backends.base import Completion, LLMRequestError, Request
from kodcode_async.backends.http import HTTPClient, HTTPConnectionError, check_headers, check_url

log = logging.getLogger("kodcode_async.backends.openai")


@dataclass(frozen=True, slots=True)
class OpenAIConfig:
    base_url: str
    model: str
    api_key: str | None = None  # resolved by the CLI from the configured env var; never logged
    timeout_s: float = 600.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_in_flight: int = 128
    # How long in total one request may spend waiting out 429s before it is given up.
    max_rate_limit_wait_s: float = 900.0

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return f"OpenAIConfig(base_url={self.base_url!r}, model={self.model!r}, api_key={'***' if self.api_key else None})"


class _Retryable(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime  # an HTTP date is rare: not paid for at start-up

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class OpenAIBackend:
    name = "openai"

    def __init__(self, config: OpenAIConfig) -> None:
        check_url(config.base_url)  # a typo in --base-url is refused before the run starts
        self.config = config
        self._headers = {"Content-Type": "application/json"}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"
        try:
            check_headers(self._headers)
        except ValueError:  # e.g. a key pasted with its newline; the key itself is never shown
            raise ValueError("the API key has a line break or NUL in it; check the environment variable "
                             "named by --api-key-env") from None
        self.max_in_flight = config.max_in_flight
        self.errors: Counter[str] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.requests_sent = 0
        self._cooldown_until = 0.0  # shared: a 429 slows every request, not just the one that got it
        self._session: HTTPClient | None = None

    def _client(self) -> HTTPClient:
        if self._session is None:
            self._session = HTTPClient(self.config.base_url, self._headers, self.config.max_in_flight,
                                       self.config.timeout_s)
        return self._session

    def _payload(self, request: Request) -> tuple[str, dict]:
        s = request.sampling
        body: dict = {"model": self.config.model, "n": s.n, "temperature": s.temperature, "top_p": s.top_p,
                      "max_tokens": s.max_tokens}
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop)
        if request.messages is not None:
            body["messages"] = request.messages
            return "/chat/completions", body
        body["prompt"] = request.prompt or ""
        return "/completions", body

    async def generate(self, request: Request) -> Completion:
        path, body = self._payload(request)
        attempt = 0
        waited_429 = 0.0
        while True:
            pause = self._cooldown_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            try:
                return await self._send(path, body, request.messages is not None)
            except _Retryable as e:
                self.errors[e.kind] += 1
                if e.kind == "rate_limited":
                    waited_429 += max(0.0, self._cooldown_until - time.monotonic())
                    if waited_429 > self.config.max_rate_limit_wait_s:
                        raise LLMRequestError("rate_limited", f"still rate limited after {waited_429:.0f} s") from e
                    continue  # the shared cooldown is the backoff; it does not burn a retry
                attempt += 1
                log.info("request %s/%s/%d: %s (retry %d of %d)", request.stage, request.item_id, request.attempt, e,
                         attempt, self.config.max_retries)
                if attempt > self.config.max_retries:
                    raise LLMRequestError(e.kind, f"{e} (gave up after {self.config.max_retries} retries)") from e
                delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not crypto

    async def _send(self, path: str, body: dict, chat: bool) -> Completion:
        self.requests_sent += 1
        try:
            resp = await self._client().post(path, orjson.dumps(body))
        except HTTPConnectionError as e:
            raise _Retryable("connection", str(e)) from e
        except TimeoutError as e:
            raise _Retryable("timeout", f"no complete response within {self.config.timeout_s:g} s") from e
        raw = resp.body
        if resp.status == 429:
            wait = _retry_after_s(resp.headers.get("retry-after"))
            wait = wait if wait is not None else self.config.backoff_base_s * 4
            self._cooldown_until = max(self._cooldown_until, time.monotonic() + wait)
            raise _Retryable("rate_limited", f"HTTP 429, retry after {wait:.1f} s")
        if resp.status >= 500:
            raise _Retryable("server_error", f"HTTP {resp.status}")
        if resp.status >= 400:
            self.errors["client_error"] += 1
            raise LLMRequestError("client_error", f"HTTP {resp.status}: {raw[:300].decode('utf-8', 'replace')}")
        try:
            data = orjson.loads(raw)
            choices = data["choices"]
            texts = [(c["message"]["content"] if chat else c["text"]) or "" for c in choices]
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise _Retryable("malformed", f"malformed response body: {type(e).__name__}") from e
        usage = data.get("usage") or {}
        self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.completion_tokens += int(usage.get("completion_tokens") or 0)
        return Completion(texts=texts, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
