"""A small HTTP/1.1 client for one origin: POST a body, get (status, headers, body) back.

The OpenAI backend sends thousands of small requests a second to one server; that is all this
does, over a pool of keep-alive connections (TLS for https). Per request it costs a quarter or
less of aiohttp's client CPU (benchmarks/http_client.py), and it imports in milliseconds:
a run's one event loop pays both on one core.

What it speaks: HTTP/1.1 requests with Content-Length; responses framed by Content-Length,
chunked transfer coding, or the end of the connection; 1xx interim responses skipped; gzip and
deflate bodies decoded (it asks for identity). Proxy variables are not read (nor were they by
the aiohttp session this replaces). Errors: `HTTPConnectionError` when the connection fails or
the server breaks the protocol, `TimeoutError` when no complete response came within the
timeout. A request written to a reused keep-alive connection that the server had already
closed (no byte of an answer came back) goes out again on another connection: the server never
saw it whole.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from urllib.parse import SplitResult, urlsplit

MAX_HEAD = 64 * 1024  # status line + headers; servers send a few hundred bytes
MAX_BODY = 512 * 1024 * 1024  # a response this big is not an LLM answer


def check_url(base_url: str) -> SplitResult:
    """`base_url` split; ValueError, saying what is wrong, unless it is http(s)://host[:port][/path]."""
    try:
        url = urlsplit(base_url)
        url.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as e:
        raise ValueError(f"bad base URL {base_url!r}: {e}") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"base URL must start with http:// or https:// and name a host, got {base_url!r}")
    if url.query or url.fragment:
        raise ValueError(f"base URL must not have a query or fragment, got {base_url!r}")
    return url


def check_headers(headers: dict[str, str]) -> None:
    """ValueError (naming the header, never its value) if a header would break the request's framing."""
    for name, value in headers.items():
        if any(c in f"{name}{value}" for c in "\r\n\0") or ":" in name:
            raise ValueError(f"the HTTP header {name!r} has a line break, NUL or colon in its name or value")


class HTTPConnectionError(Exception):
    """The connection could not be made, broke, or carried something that is not HTTP/1.1."""


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # names lower-cased; a repeated header keeps its last value
        self.body = body


class _Request:
    __slots__ = ("data", "waiter", "timer", "conn")

    def __init__(self, data: bytes, waiter: asyncio.Future) -> None:
        self.data = data
        self.waiter = waiter
        self.timer: asyncio.TimerHandle | None = None
        self.conn: _Connection | None = None  # the connection it was sent on


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time. Parses the response as bytes arrive."""

    def __init__(self, pool: HTTPClient) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.req: _Request | None = None
        self.buf = bytearray()
        self.closed = False
        self.served = 0  # responses completed on this connection
        self.got_bytes = False  # any byte of the current response seen
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.in_head = True
        self.length = -1  # Content-Length; -1: chunked or until EOF
        self.chunked = False
        self.body = bytearray()
        self.chunk_left = -1  # bytes left in the current chunk (+2 for its CRLF); -1: at a size line
        self.trailers = False  # the last chunk was read; trailer lines until an empty one
        self.keep_alive = True

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.req is None:
            self._fail_closed()  # bytes nobody asked for: the connection is not reusable
            return
        self.got_bytes = True
        self.buf += data
        try:
            self._parse()
        except HTTPConnectionError as e:
            self._finish_error(e)

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost settles the request

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        req = self.req
        if req is not None and not self.in_head and self.length < 0 and not self.chunked:
            self.keep_alive = False  # a body framed by the end of the connection is complete now
            self.body = self.buf
            self._complete()
            return
        self.req = None
        if req is not None and not req.waiter.done():
            if not self.got_bytes and self.served:
                # A reused connection the server had closed (an idle timeout racing our write):
                # nothing of the request was answered, so it goes out again on another connection.
                self.pool._queue.appendleft(req)
            else:
                why = f": {exc}" if exc else ""
                where = "before any byte of the response" if not self.got_bytes else "in the middle of the response"
                req.waiter.set_exception(HTTPConnectionError(f"server closed the connection {where}{why}"))
        self.pool._forget(self)

    # -- the request ----------------------------------------------------------------------
    def send(self, req: _Request) -> None:
        self._reset()
        self.got_bytes = False
        self.req = req
        req.conn = self
        self.transport.write(req.data)  # type: ignore[union-attr]

    def _parse(self) -> None:
        buf = self.buf
        while self.in_head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise HTTPConnectionError(f"response head longer than {MAX_HEAD} bytes")
                return
            self._head(bytes(buf[:end]))
            del buf[:end + 4]
            if 100 <= self.status < 200 and self.status != 101:
                self._reset()  # an interim response: the real one follows
        if self.chunked:
            self._chunks()
        elif self.length >= 0:
            if len(buf) >= self.length:
                if len(buf) > self.length:
                    self.keep_alive = False  # more than announced: do not reuse
                self.body = buf[:self.length]
                buf.clear()
                self._complete()
        elif len(buf) > MAX_BODY:
            raise HTTPConnectionError(f"response body larger than {MAX_BODY} bytes")

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise HTTPConnectionError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        self.status = int(parts[1])
        headers = self.headers
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise HTTPConnectionError(f"malformed header line {line[:80]!r}")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        self.in_head = False
        conn = headers.get("connection", "").lower()
        self.keep_alive = "close" not in conn and (parts[0] == b"HTTP/1.1" or "keep-alive" in conn)
        if self.status in (204, 304) or 100 <= self.status < 200:
            self.length = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.chunked = True
        elif "content-length" in headers:
            value = headers["content-length"]
            if not value.isdigit():
                raise HTTPConnectionError(f"bad Content-Length {value[:40]!r}")
            self.length = int(value)
            if self.length > MAX_BODY:
                raise HTTPConnectionError(f"response body larger than {MAX_BODY} bytes")
        else:
            self.keep_alive = False  # the body ends with the connection

    def _chunks(self) -> None:
        buf, body = self.buf, self.body
        while True:
            if self.chunk_left < 0:  # at a size line, or (after the last chunk) at a trailer line
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise HTTPConnectionError("chunk size or trailer line too long")
                    return
                line = bytes(buf[:end])
                del buf[:end + 2]
                if self.trailers:
                    if not line:
                        self._complete()
                        return
                    continue
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HTTPConnectionError(f"bad chunk size {size_text[:40]!r}") from None
                if size == 0:
                    self.trailers = True
                    continue
                if len(body) + size > MAX_BODY:
                    raise HTTPConnectionError(f"response body larger than {MAX_BODY} bytes")
                self.chunk_left = size + 2
            if len(buf) < self.chunk_left:
                return
            if buf[self.chunk_left - 2:self.chunk_left] != b"\r\n":
                raise HTTPConnectionError("chunk not followed by CRLF")
            body += buf[:self.chunk_left - 2]
            del buf[:self.chunk_left]
            self.chunk_left = -1

    def _complete(self) -> None:
        req, self.req = self.req, None
        assert req is not None and self.transport is not None
        self.served += 1
        body = bytes(self.body)
        encoding = self.headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            try:
                inflate = zlib.decompressobj(47 if "gzip" in encoding else 15)
                body = inflate.decompress(body, MAX_BODY)
                if inflate.unconsumed_tail:
                    raise zlib.error(f"inflates to more than {MAX_BODY} bytes")
            except zlib.error as e:
                self._fail_closed()
                if not req.waiter.done():
                    req.waiter.set_exception(HTTPConnectionError(f"undecodable {encoding} body: {e}"))
                return
        if not req.waiter.done():
            req.waiter.set_result(Response(self.status, self.headers, body))
        if self.closed or not self.keep_alive or self.buf or self.transport.is_closing():
            self._fail_closed()
        else:  # the next queued request goes out now, in this callback, not a loop turn later
            self.pool._idle.append(self)
            self.pool._dispatch()

    def _finish_error(self, e: Exception) -> None:
        req, self.req = self.req, None
        self._fail_closed()
        if req is not None and not req.waiter.done():
            req.waiter.set_exception(e)

    def abandon(self, req: _Request) -> None:
        """`req` timed out or was cancelled while on this connection: its answer can never be read
        apart from the next one's, so the connection goes."""
        if self.req is req:
            self.req = None
            self._fail_closed()

    def _fail_closed(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
        self.pool._forget(self)


class HTTPClient:
    """POST to `base_url`'s origin with `headers` on every request; at most `limit` connections.

    Requests wait in one FIFO queue for a connection; a connection that finishes a response takes
    the next queued request at once, in the callback that read the response."""

    def __init__(self, base_url: str, headers: dict[str, str], limit: int, timeout_s: float) -> None:
        url = check_url(base_url)
        self.host = url.hostname or ""
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        self.https = url.scheme == "https"
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        if url.port is not None:
            netloc += f":{url.port}"
        fixed = {"Host": netloc, "Accept-Encoding": "identity", "User-Agent": "kodcode-async", **headers}
        check_headers(fixed)
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self.limit = limit
        self.timeout_s = timeout_s
        self._queue: deque[_Request] = deque()
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._connecting: set[asyncio.Task] = set()
        self._closed = False
        self._tls: ssl.SSLContext | None = None

    async def post(self, path: str, body: bytes) -> Response:
        """Send one request (queued until a connection is free); the whole exchange, wait included,
        must end within the timeout."""
        if self._closed:
            raise HTTPConnectionError("the client is closed")
        loop = asyncio.get_running_loop()
        req = _Request(b"POST " + (self.prefix + path).encode("latin-1") + b" HTTP/1.1\r\n" + self._fixed
                       + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body, loop.create_future())
        req.timer = loop.call_later(self.timeout_s, _time_out, req)
        self._queue.append(req)
        self._dispatch()
        try:
            return await req.waiter
        except BaseException:
            if req.conn is not None:
                req.conn.abandon(req)
            raise
        finally:
            req.timer.cancel()

    def _dispatch(self) -> None:
        """Send queued requests on idle connections; open connections (up to the limit) for the rest."""
        queue, idle = self._queue, self._idle
        while queue:
            if queue[0].waiter.done():  # timed out or cancelled while queued
                queue.popleft()
                continue
            if idle:
                idle.pop().send(queue.popleft())
            elif len(self._all) + len(self._connecting) < self.limit and len(self._connecting) < len(queue):
                task = asyncio.get_running_loop().create_task(self._connect())
                self._connecting.add(task)
            else:
                return

    async def _connect(self) -> None:
        conn, error = None, None
        try:
            async with asyncio.timeout(self.timeout_s):
                context = self._tls_context() if self.https else None
                _, conn = await asyncio.get_running_loop().create_connection(
                    lambda: _Connection(self), self.host, self.port, ssl=context,
                    server_hostname=self.host if context else None)
        except (OSError, TimeoutError) as e:  # refused, unreachable, unresolvable, TLS (ssl.SSLError)
            why = "timed out" if isinstance(e, TimeoutError) else str(e)
            error = HTTPConnectionError(f"cannot connect to {self.host}:{self.port}: {why}")
        finally:
            self._connecting.discard(asyncio.current_task())
        if conn is None:
            while self._queue:  # the oldest waiting request carries the failure
                req = self._queue.popleft()
                if not req.waiter.done():
                    req.waiter.set_exception(error)
                    break
        elif self._closed:
            conn._fail_closed()
            return
        else:
            self._all.add(conn)
            self._idle.append(conn)
        self._dispatch()

    def _tls_context(self) -> ssl.SSLContext:
        """The system's CAs (or SSL_CERT_FILE / SSL_CERT_DIR), loaded at the first connection."""
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _forget(self, conn: _Connection) -> None:
        if conn in self._all:
            self._all.discard(conn)
            if conn in self._idle:
                self._idle.remove(conn)
            if not self._closed:
                self._dispatch()  # a queued request may need a new connection now

    async def close(self) -> None:
        self._closed = True
        for task in list(self._connecting):
            task.cancel()
        error = HTTPConnectionError("the client was closed")
        for req in self._queue:
            if not req.waiter.done():
                req.waiter.set_exception(error)
        self._queue.clear()
        for conn in list(self._all):
            req, conn.req = conn.req, None
            conn._fail_closed()
            if req is not None and not req.waiter.done():
                req.waiter.set_exception(error)
        await asyncio.sleep(0)  # let the transports run their close callbacks


def _time_out(req: _Request) -> None:
    if not req.waiter.done():
        req.waiter.set_exception(TimeoutError())
        if req.conn is not None:
            req.conn.abandon(req)
