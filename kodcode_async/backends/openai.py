"""Any OpenAI-compatible server (vLLM, SGLang, llama.cpp, OpenAI, Together, ...) over aiohttp.

One `aiohttp.ClientSession` per backend, set up for the networks users have:

* proxies from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, read by aiohttp's rules
  once per origin), and a connection error names the proxy it went through;
* 307/308 redirects followed with the same POST (a few hops; the API key goes to the same host
  only); 301/302/303 are an error naming `Location`, never retried (a POST cannot follow them);
* idle keep-alive connections closed after `idle_timeout_s` (15 s), before a NAT or load
  balancer forgets them silently;
* Happy Eyeballs: a name whose first address does not answer (an IPv6 route that goes nowhere)
  costs a quarter of a second, not a connect timeout;
* `Retry-After` (seconds or an HTTP date) honoured on 429 and 503 through one cooldown shared by
  every request;
* every transport failure mapped to `LLMRequestError` kinds: connection, timeout, server_error,
  rate_limited, malformed (retried), client_error, redirect (not).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import orjson
from yarl import URL

from kodcode_async.backends.base import Completion, LLMRequestError, Request
from kodcode_async.options import DEFAULTS

log = logging.getLogger("kodcode_async.backends.openai")

MAX_REDIRECTS = 5
_HOST = re.compile(r"[A-Za-z0-9._-]+")
FOLLOWED = (307, 308)  # the same method and body go to Location
REFUSED = (301, 302, 303)  # clients turn these POSTs into GETs: a misconfigured URL, said so


@dataclass(frozen=True, slots=True)
class OpenAIConfig:
    base_url: str
    model: str
    api_key: str | None = None  # resolved by the CLI from the configured env var; never logged
    timeout_s: float = DEFAULTS["request_timeout"]
    max_retries: int = DEFAULTS["max_retries"]
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_in_flight: int = DEFAULTS["workers"]
    # How long in total one request may spend waiting out 429s and 503s before it is given up.
    max_rate_limit_wait_s: float = 900.0
    # Idle keep-alive connections are closed after this; cloud NATs forget idle flows after 30-350 s.
    idle_timeout_s: float = 15.0

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return f"OpenAIConfig(base_url={self.base_url!r}, model={self.model!r}, api_key={'***' if self.api_key else None})"


def check_url(base_url: str) -> URL:
    """`base_url` parsed; ValueError, saying what is wrong, unless it is http(s)://host[:port][/path]."""
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        url = URL(base_url)
        url.raw_host  # noqa: B018 - a host IDNA cannot encode raises here, not at the first request
    except (ValueError, UnicodeError) as e:
        raise ValueError(f"bad base URL {base_url!r}: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base URL must start with http:// or https:// and name a host, got {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"base URL must not have a query or fragment, got {base_url!r}")
    host = url.raw_host or ""
    if not (_HOST.fullmatch(host) and ".." not in host or ":" in host):  # a name (IDNA-encoded) or an IPv6 literal
        raise ValueError(f"bad base URL {base_url!r}: {parts.hostname!r} is not a host name")
    return url


def check_api_key(key: str) -> None:
    """ValueError, never showing the key, if it cannot go into an HTTP header as it is."""
    if any(c in key for c in "\r\n\0"):
        raise ValueError("the API key has a line break or NUL in it; check the environment variable "
                         "named by --api-key-env")
    if not key.isascii() or not key.isprintable():
        raise ValueError("the API key has characters an HTTP header cannot carry (not ASCII, e.g. typographic "
                         "quotes pasted with it); check the environment variable named by --api-key-env")


def env_proxy(url: URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy (and its credentials) the environment names for `url`, by aiohttp's own rules
    (`HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`, as `trust_env` reads them); (None, None): direct."""
    try:
        from aiohttp.helpers import get_env_proxy_for_url

        return get_env_proxy_for_url(url)
    except (LookupError, ValueError):
        return None, None


def proxy_for(url: URL) -> str | None:
    """The proxy `url` goes through, for messages (no password)."""
    proxy, _ = env_proxy(url)
    return str(proxy.with_user(None)) if proxy is not None else None


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
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _same_host(a: URL, b: URL) -> bool:
    """The API key may follow a redirect to the same host (and port, or http -> https)."""
    if a.host != b.host:
        return False
    return a.port == b.port or (a.scheme, b.scheme) == ("http", "https") and b.port == 443


class OpenAIBackend:
    name = "openai"

    def __init__(self, config: OpenAIConfig, resolver: aiohttp.abc.AbstractResolver | None = None) -> None:
        self.base = check_url(config.base_url)  # a typo in --base-url is refused before the run starts
        if config.api_key:
            check_api_key(config.api_key)
        self.config = config
        self._resolver = resolver
        self._auth = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._urls = {path: URL(str(self.base).rstrip("/") + path) for path in ("/chat/completions", "/completions")}
        self.max_in_flight = config.max_in_flight
        self.errors: Counter[str] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.requests_sent = 0
        self._cooldown_until = 0.0  # shared: a 429 or 503 slows every request, not just the one that got it
        self._session: aiohttp.ClientSession | None = None
        # The proxy of each origin, looked up once: with `trust_env` aiohttp would look it up (and
        # ~/.netrc) in a thread for every request, most of the client's CPU at thousands a second.
        self._proxies: dict[tuple[str, str | None, int | None], tuple[URL | None, aiohttp.BasicAuth | None]] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.config.max_in_flight, limit_per_host=0,
                                             keepalive_timeout=self.config.idle_timeout_s, resolver=self._resolver,
                                             happy_eyeballs_delay=0.25, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s), raise_for_status=False)
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
        data = orjson.dumps(body)
        attempt = 0
        waited = 0.0
        while True:
            pause = self._cooldown_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            try:
                return await self._send(self._urls[path], data, request.messages is not None)
            except _Retryable as e:
                self.errors[e.kind] += 1
                if e.kind in ("rate_limited", "unavailable"):
                    waited += max(0.0, self._cooldown_until - time.monotonic())
                    if waited > self.config.max_rate_limit_wait_s:
                        raise LLMRequestError(e.kind, f"{e}; still refused after waiting {waited:.0f} s") from e
                    continue  # the shared cooldown is the backoff; it does not burn a retry
                attempt += 1
                if attempt > self.config.max_retries:
                    raise LLMRequestError(e.kind, f"{e} (gave up after {self.config.max_retries} retries)") from e
                log.info("request %s/%s/%d: %s (retry %d of %d)", request.stage, request.item_id, request.attempt, e,
                         attempt, self.config.max_retries)
                delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not crypto

    async def _post(self, url: URL, data: bytes) -> tuple[int, bytes, str | None]:
        """POST, following 307/308; (status, body, Retry-After). Transport errors become _Retryable."""
        headers = self._auth
        for _ in range(MAX_REDIRECTS + 1):
            self.requests_sent += 1
            origin = (url.scheme, url.host, url.port)
            proxy = self._proxies.get(origin)
            if proxy is None:
                proxy = self._proxies[origin] = env_proxy(url)
            try:
                async with self._client().post(url, data=data, headers=headers, allow_redirects=False,
                                               proxy=proxy[0], proxy_auth=proxy[1]) as resp:
                    if resp.status in FOLLOWED or resp.status in REFUSED:
                        location = resp.headers.get("Location", "")
                        body = b""
                    else:
                        body = await resp.read()
                    retry_after = resp.headers.get("Retry-After")
            except TimeoutError as e:
                raise _Retryable("timeout", f"no complete response within {self.config.timeout_s:g} s") from e
            except aiohttp.ClientProxyConnectionError as e:
                raise _Retryable("connection", f"cannot connect through the proxy {proxy_for(url)} "
                                 f"(from the environment): {e.os_error.strerror or e.os_error}") from e
            except aiohttp.ClientConnectorCertificateError as e:
                raise _Retryable("connection", f"TLS certificate of {url.host} not trusted: {e.certificate_error}") from e
            except aiohttp.ClientConnectorError as e:
                via = proxy_for(url)
                raise _Retryable("connection", f"cannot connect to {url.host}:{url.port}"
                                 + (f" through the proxy {via}" if via else "")
                                 + f": {e.os_error.strerror or e.os_error}") from e
            except aiohttp.ClientResponseError as e:  # a response aiohttp could not parse
                raise _Retryable("malformed", f"bad HTTP response: {e.message}") from e
            except (aiohttp.ClientError, OSError) as e:  # server disconnected, payload cut short, ...
                raise _Retryable("connection", f"{type(e).__name__}: {e}") from e
            if resp.status not in FOLLOWED:
                if resp.status in REFUSED:
                    self.errors["redirect"] += 1
                    raise LLMRequestError("redirect", f"HTTP {resp.status} from {url} to {location or '(no Location)'}; "
                                          "a POST cannot follow it: set --base-url to where it points")
                return resp.status, body, retry_after
            if not location:
                raise _Retryable("malformed", f"HTTP {resp.status} without a Location header")
            try:
                target = url.join(URL(location))
            except ValueError as e:
                raise _Retryable("malformed", f"HTTP {resp.status} with a Location that is not a URL: {e}") from e
            if headers and not _same_host(url, target):
                log.warning("redirect from %s to another host, %s: the API key is not sent there", url.host, target.host)
                headers = {}
            url = target
        self.errors["redirect"] += 1
        raise LLMRequestError("redirect", f"more than {MAX_REDIRECTS} redirects, the last to {url}")

    async def _send(self, url: URL, data: bytes, chat: bool) -> Completion:
        status, raw, retry_after = await self._post(url, data)
        if status in (429, 503):
            wait = _retry_after_s(retry_after)
            if status == 503 and wait is None:
                raise _Retryable("server_error", "HTTP 503")
            wait = wait if wait is not None else self.config.backoff_base_s * 4
            self._cooldown_until = max(self._cooldown_until, time.monotonic() + wait)
            kind = "rate_limited" if status == 429 else "unavailable"
            raise _Retryable(kind, f"HTTP {status}, retry after {wait:.1f} s")
        if status >= 500:
            raise _Retryable("server_error", f"HTTP {status}")
        if status >= 400:
            self.errors["client_error"] += 1
            raise LLMRequestError("client_error", f"HTTP {status}: {raw[:300].decode('utf-8', 'replace')}")
        try:
            data = orjson.loads(raw)
            choices = data["choices"]
            texts = [(c["message"]["content"] if chat else c["text"]) or "" for c in choices]
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise _Retryable("malformed", f"malformed response body: {type(e).__name__}") from e
        usage = data.get("usage")
        try:
            prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        except (AttributeError, TypeError, ValueError):  # no usage, or not numbers: the texts still count
            prompt = completion = 0
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        return Completion(texts=texts, prompt_tokens=prompt, completion_tokens=completion)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
