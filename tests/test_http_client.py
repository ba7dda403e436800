"""The OpenAI backend's HTTP/1.1 client against real sockets on 127.0.0.1.

The servers here are raw asyncio servers that write exact bytes, so each framing, keep-alive and
failure case is what the test says it is. The backend's behaviour against a real aiohttp server
(retries, 429s, timeouts, resets) is in test_backends.py.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl

import pytest

from kodcode_async.backends.http import HTTPClient, HTTPConnectionError, check_url

pytestmark = pytest.mark.timeout(60)

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Server:
    """Reads one request at a time per connection and answers it with `respond(conn, n, body)`."""

    def __init__(self, respond) -> None:
        self.respond = respond
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body) of every complete request
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                if await self.respond(writer, conn, len(self.requests)) == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def client(server: Server, limit: int = 4, timeout: float = 5.0) -> HTTPClient:
    return HTTPClient(server.url, {"Content-Type": "application/json", "Authorization": "Bearer k"}, limit, timeout)


def test_request_bytes_and_keep_alive_reuse():
    async def respond(w, conn, n):
        w.write(OK)

    async def main():
        async with Server(respond) as s:
            c = client(s)
            for _ in range(5):
                r = await c.post("/chat/completions", b'{"a": 1}')
                assert (r.status, r.body, r.headers["content-type"]) == (200, b"{}", "application/json")
            await c.close()
            return s

    s = asyncio.run(main())
    assert s.connections == 1  # five requests, one connection
    head, body = s.requests[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
    assert f"Host: 127.0.0.1:{s.port}" in lines and "Authorization: Bearer k" in lines
    assert "Content-Length: 8" in lines and body == b'{"a": 1}'


def test_chunked_body_with_extensions_and_trailers_arriving_byte_by_byte():
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\nworld12345\r\n0\r\nX-Trailer: t\r\n\r\n")

    async def respond(w, conn, n):
        for i in range(len(answer)):
            w.write(answer[i:i + 1])
            await w.drain()
            await asyncio.sleep(0)

    async def main():
        async with Server(respond) as s:
            c = client(s)
            bodies = [(await c.post("/x", b"{}")).body for _ in range(2)]
            await c.close()
            return s, bodies

    s, bodies = asyncio.run(main())
    assert bodies == [b"hello world12345"] * 2
    assert s.connections == 1


def test_connection_close_and_body_until_eof_are_not_reused():
    async def respond(w, conn, n):
        if n == 1:  # says close, but leaves the connection open: the client must not reuse it
            w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\none")
            return
        w.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        await w.drain()
        return "close"

    async def main():
        async with Server(respond) as s:
            c = client(s)
            a = await c.post("/x", b"{}")
            b = await c.post("/x", b"{}")
            await c.close()
            return s, a.body, b.body

    s, a, b = asyncio.run(main())
    assert (a, b) == (b"one", b"until the end")
    assert s.connections == 2


def test_interim_100_continue_is_skipped_and_gzip_is_decoded():
    packed = gzip.compress(b'{"choices": []}')

    async def respond(w, conn, n):
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed) + packed)

    async def main():
        async with Server(respond) as s:
            c = client(s)
            r = await c.post("/x", b"{}")
            await c.close()
            return r

    r = asyncio.run(main())
    assert (r.status, r.body) == (200, b'{"choices": []}')


def test_a_gzip_body_that_inflates_past_the_limit_is_refused(monkeypatch):
    import kodcode_async.backends.http as http

    monkeypatch.setattr(http, "MAX_BODY", 1000)
    packed = gzip.compress(b"0" * 5000)  # 5000 bytes from a few dozen on the wire

    async def respond(w, conn, n):
        w.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed) + packed)

    async def main():
        async with Server(respond) as s:
            c = client(s)
            with pytest.raises(HTTPConnectionError, match="inflates to more than 1000 bytes"):
                await c.post("/x", b"{}")
            await c.close()

    asyncio.run(main())


def test_idle_connection_closed_by_the_server_is_replaced():
    async def respond(w, conn, n):
        w.write(OK)
        await w.drain()
        return "close"  # closes after answering, without saying Connection: close (an idle timeout)

    async def main():
        async with Server(respond) as s:
            c = client(s)
            await c.post("/x", b"{}")
            await asyncio.sleep(0.1)  # the close reaches the client while the connection is idle
            assert not c._idle
            await c.post("/x", b"{}")
            await c.close()
            return s

    s = asyncio.run(main())
    assert len(s.requests) == 2 and s.connections == 2


def test_a_reused_connection_closed_before_any_answer_byte_is_sent_again_on_a_new_one():
    async def respond(w, conn, n):
        if n == 2:
            return "close"  # the server closed as the request arrived: not a byte of answer
        w.write(OK)

    async def main():
        async with Server(respond) as s:
            c = client(s)
            await c.post("/x", b"{}")
            r = await c.post("/x", b"{}")
            await c.close()
            return s, r

    s, r = asyncio.run(main())
    assert r.status == 200
    assert len(s.requests) == 3 and s.connections == 2


@pytest.mark.parametrize("answer, match", [
    (b"", "before any byte"),  # a fresh connection closed unanswered: an error, not a resend
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", "middle of the response"),
])
def test_a_connection_closed_before_the_answer_is_whole_is_an_error_and_not_resent(answer, match):
    async def respond(w, conn, n):
        w.write(answer)
        await w.drain()
        return "close"

    async def main():
        async with Server(respond) as s:
            c = client(s)
            with pytest.raises(HTTPConnectionError, match=match):
                await c.post("/x", b"{}")
            await c.close()
            return s

    s = asyncio.run(main())
    assert len(s.requests) == 1


@pytest.mark.parametrize("answer, match", [
    (b"SMTP ready\r\n\r\n", "not an HTTP/1.x response"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n", "not followed by CRLF"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope", "undecodable gzip"),
])
def test_protocol_violations_are_connection_errors(answer, match):
    async def respond(w, conn, n):
        w.write(answer)

    async def main():
        async with Server(respond) as s:
            c = client(s)
            with pytest.raises(HTTPConnectionError, match=match):
                await c.post("/x", b"{}")
            assert not c._idle  # the broken connection is not kept
            await c.close()

    asyncio.run(main())


def test_timeout_and_cancellation_close_the_connection():
    async def respond(w, conn, n):
        await asyncio.sleep(30)

    async def main():
        async with Server(respond) as s:
            c = client(s, timeout=0.3)
            with pytest.raises(TimeoutError):
                await c.post("/x", b"{}")
            task = asyncio.create_task(c.post("/x", b"{}"))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not c._idle and not c._all
            await c.close()
            return s

    s = asyncio.run(main())
    assert s.connections == 2


def test_connection_refused_is_a_connection_error():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        c = HTTPClient(f"http://127.0.0.1:{port}", {}, 2, 5.0)
        with pytest.raises(HTTPConnectionError, match="cannot connect"):
            await c.post("/x", b"{}")
        await c.close()

    asyncio.run(main())


def test_at_most_limit_connections_at_once():
    in_flight, peak = 0, 0

    async def respond(w, conn, n):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        w.write(OK)

    async def main():
        async with Server(respond) as s:
            c = client(s, limit=3)
            await asyncio.gather(*(c.post("/x", b"{}") for _ in range(12)))
            await c.close()
            return s

    s = asyncio.run(main())
    assert peak == 3 and s.connections == 3 and len(s.requests) == 12


def test_https_verifies_the_server_certificate(tmp_path, monkeypatch):
    import trustme  # in the [test] extra
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(OK)
        await writer.drain()
        writer.close()

    async def post(port: int) -> int:
        c = HTTPClient(f"https://localhost:{port}/v1", {}, 2, 5.0)
        try:
            return (await c.post("/x", b"{}")).status
        finally:
            await c.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(HTTPConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                await post(port)  # the system's CAs do not know this one
            ca_file = tmp_path / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_file))
            monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
            return await post(port)
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()) == 200


@pytest.mark.parametrize("url, match", [
    ("127.0.0.1:8000/v1", "must start with http"),
    ("ftp://host/v1", "must start with http"),
    ("http:///v1", "name a host"),
    ("http://host:port/v1", "bad base URL"),
    ("http://host/v1?x=1", "query or fragment"),
])
def test_bad_base_urls_are_refused_with_the_reason(url, match):
    with pytest.raises(ValueError, match=match):
        check_url(url)
    assert check_url("https://[::1]:8443/v1").port == 8443


def test_a_header_value_with_a_line_break_is_refused_not_sent():
    with pytest.raises(ValueError, match="'Authorization' has a line break"):
        HTTPClient("http://127.0.0.1:1/v1", {"Authorization": "Bearer k\r\nX-Evil: 1"}, 1, 1.0)


def test_a_request_queued_behind_the_limit_times_out_or_is_cancelled_without_being_sent():
    release = None

    async def respond(w, conn, n):
        await release.wait()
        w.write(OK)

    async def main():
        nonlocal release
        release = asyncio.Event()
        async with Server(respond) as s:
            c = client(s, limit=1, timeout=5.0)
            first = asyncio.create_task(c.post("/x", b"{}"))  # holds the one connection
            await asyncio.sleep(0.1)
            c.timeout_s = 0.3
            second = asyncio.create_task(c.post("/x", b"{}"))  # waits in the queue
            third = asyncio.create_task(c.post("/x", b"{}"))
            await asyncio.sleep(0.1)
            third.cancel()
            with pytest.raises(TimeoutError):
                await second  # its wait in the queue counts against its timeout
            with pytest.raises(asyncio.CancelledError):
                await third
            release.set()
            r1 = await first
            r2 = await c.post("/x", b"{}")  # on the same connection: nothing queued was left behind
            await c.close()
            return s, r1, r2

    s, r1, r2 = asyncio.run(main())
    assert r1.status == r2.status == 200
    assert len(s.requests) == 2 and s.connections == 1  # the queued two never went out


def test_closing_the_client_fails_waiting_and_running_requests():
    async def respond(w, conn, n):
        await asyncio.sleep(30)

    async def main():
        async with Server(respond) as s:
            c = client(s, limit=1)
            tasks = [asyncio.create_task(c.post("/x", b"{}")) for _ in range(3)]
            await asyncio.sleep(0.2)
            await c.close()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, HTTPConnectionError) for r in results), results
            with pytest.raises(HTTPConnectionError, match="closed"):
                await c.post("/x", b"{}")

    asyncio.run(main())


# ---- against uvicorn, the HTTP server vLLM's and SGLang's OpenAI-compatible APIs run on ---------

async def _asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/v1/streamed":  # no Content-Length: uvicorn sends it chunked
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        for part in (b'{"choices": [{"message": ', b'{"role": "assistant", "content": "hi"}}], ', b'"usage": {}}'):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    answer = json.dumps({"choices": [{"message": {"role": "assistant", "content": f"got {len(body)} bytes"}}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


class Uvicorn:
    def __init__(self, keep_alive_s: int = 5) -> None:
        import uvicorn  # in the [test] extra

        self.server = uvicorn.Server(uvicorn.Config(_asgi, lifespan="off", log_level="warning",
                                                    timeout_keep_alive=keep_alive_s))

    async def __aenter__(self) -> str:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await self.task


def test_uvicorn_many_requests_over_few_connections_and_a_chunked_answer():
    async def main():
        async with Uvicorn() as url:
            c = HTTPClient(url, {"Content-Type": "application/json"}, 4, 10.0)
            bodies = [b"x" * i for i in range(40)]
            answers = await asyncio.gather(*(c.post("/chat/completions", b) for b in bodies))
            opened = len(c._all)
            streamed = await c.post("/streamed", b"{}")
            await c.close()
        return answers, opened, streamed

    answers, opened, streamed = asyncio.run(main())
    assert [json.loads(a.body)["choices"][0]["message"]["content"] for a in answers] == [
        f"got {i} bytes" for i in range(40)]
    assert opened <= 4
    assert streamed.headers.get("transfer-encoding") == "chunked"
    assert json.loads(streamed.body)["choices"][0]["message"]["content"] == "hi"


def test_uvicorn_closing_idle_connections_loses_no_request():
    async def main():
        async with Uvicorn(keep_alive_s=1) as url:
            c = HTTPClient(url, {}, 4, 10.0)
            first = await asyncio.gather(*(c.post("/chat/completions", b"{}") for _ in range(4)))
            await asyncio.sleep(1.5)  # uvicorn closes the idle connections
            assert not c._all, "uvicorn did not close the idle connections: the test proves nothing"
            second = await asyncio.gather(*(c.post("/chat/completions", b"{}") for _ in range(4)))
            await c.close()
        return first + second

    assert [r.status for r in asyncio.run(main())] == [200] * 8


def test_the_openai_backend_against_uvicorn():
    from kodcode_async.backends import Request
    from kodcode_async.backends.openai import OpenAIBackend, OpenAIConfig

    async def main():
        async with Uvicorn() as url:
            backend = OpenAIBackend(OpenAIConfig(base_url=url, model="m", api_key="k", max_retries=0))
            done = await backend.generate(Request(stage="solutions", item_id="q1", attempt=0,
                                                  messages=[{"role": "user", "content": "hi"}]))
            await backend.close()
        return done

    done = asyncio.run(main())
    assert done.texts[0].startswith("got ") and done.completion_tokens == 2
