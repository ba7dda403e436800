"""The OpenAI backend (aiohttp) on the networks users have, against real servers on loopback.

uvicorn with h11 and with httptools (what vLLM and SGLang serve on), a CONNECT proxy, a
redirecting gateway, a server that forgets idle connections without a word (a NAT), a name whose
first address never answers (an IPv6 route to nowhere, made on ::1 with a full accept queue: no
packet leaves the machine), HTTPS with a throw-away CA, Retry-After in both forms, and keys and
paths that are not ASCII. The retry, 429 and fault cases are in test_backends.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from email.utils import formatdate
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from kodcode_async.backends import LLMRequestError, Request
from kodcode_async.backends.openai import OpenAIBackend, OpenAIConfig, check_url
from tests.conftest import ROOT
from tests.openai_server import Script, start_server

pytestmark = pytest.mark.timeout(90)

REQ = Request(stage="s", item_id="q", attempt=0, messages=[{"role": "user", "content": "hi"}])
ANSWER = {"choices": [{"message": {"role": "assistant", "content": "fine"}}], "usage": {"completion_tokens": 1}}


def backend(url: str, **cfg) -> OpenAIBackend:
    cfg.setdefault("max_retries", 0)
    return OpenAIBackend(OpenAIConfig(base_url=url, model="m", backoff_base_s=0.01, **cfg))


async def web_server(routes, host="127.0.0.1") -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# ---- uvicorn, h11 and httptools ------------------------------------------------------------------

async def _asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    content = f"got {len(body)} bytes"
    if scope["path"].endswith("/streamed/chat/completions"):  # no Content-Length: uvicorn sends it chunked
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        for part in (b'{"choices": [{"message": ', b'{"role": "assistant", "content": "chunked"}}], ', b'"usage": {}}'):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    answer = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


class Uvicorn:
    def __init__(self, http: str, keep_alive_s: int = 5) -> None:
        import uvicorn  # in the [test] extra

        self.server = uvicorn.Server(uvicorn.Config(_asgi, lifespan="off", log_level="warning", http=http,
                                                    timeout_keep_alive=keep_alive_s))

    async def __aenter__(self) -> str:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await self.task


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_uvicorn_many_requests_chunked_answers_and_idle_closes_lose_nothing(http):
    async def main():
        async with Uvicorn(http, keep_alive_s=1) as root:
            b = backend(root + "/v1", max_in_flight=4)
            prompts = [Request(stage="s", item_id=f"q{i}", attempt=0,
                               messages=[{"role": "user", "content": "x" * i}]) for i in range(40)]
            answers = await asyncio.gather(*(b.generate(p) for p in prompts))
            streamed = await backend(root + "/streamed").generate(REQ)
            await asyncio.sleep(1.5)  # uvicorn closes the idle connections; the next requests open new ones
            again = await asyncio.gather(*(b.generate(REQ) for _ in range(4)))
            await b.close()
        return answers, streamed, again, b

    answers, streamed, again, b = asyncio.run(main())
    sizes = [int(a.texts[0].split()[1]) for a in answers]
    assert sizes == sorted(sizes) and len(set(sizes)) == 40  # one answer per request, in order
    assert streamed.texts == ["chunked"]
    assert len(again) == 4 and not b.errors and b.completion_tokens == 2 * 44


# ---- proxies -------------------------------------------------------------------------------------

class Proxy:
    """A forwarding proxy: CONNECT tunnels (https) and absolute-form requests (http)."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.forwarded: list[str] = []

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_r, up_w = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.tunnels.append(target)
            else:
                url = urlsplit(target)
                up_r, up_w = await asyncio.open_connection(url.hostname, url.port or 80)
                up_w.write(head)  # absolute-form, as the client sent it: servers accept it
                self.forwarded.append(target)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))


def test_proxies_from_the_environment_are_used_no_proxy_is_respected_and_errors_name_the_proxy(monkeypatch):
    async def main():
        runner, url = await start_server(Script(text="via"))
        proxy = Proxy()
        try:
            async with proxy as proxy_url:
                monkeypatch.setenv("HTTP_PROXY", proxy_url)
                b = backend(url)
                via = await b.generate(REQ)
                await b.close()
                forwarded = list(proxy.forwarded)
                monkeypatch.setenv("NO_PROXY", "127.0.0.1")
                b = backend(url)
                direct = await b.generate(REQ)
                await b.close()
            # A proxy that is not there: the error says which proxy.
            dead = socket.socket()
            dead.bind(("127.0.0.1", 0))
            dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}"
            dead.close()
            monkeypatch.delenv("NO_PROXY")
            monkeypatch.setenv("HTTP_PROXY", dead_url)
            b = backend(url)
            with pytest.raises(LLMRequestError) as e:
                await b.generate(REQ)
            await b.close()
            return via, forwarded, direct, proxy.forwarded, e.value, dead_url
        finally:
            await runner.cleanup()

    via, forwarded, direct, after_no_proxy, error, dead_url = asyncio.run(main())
    assert via.texts == direct.texts == ["via"]
    assert len(forwarded) == 1 and forwarded[0].endswith("/v1/chat/completions")
    assert after_no_proxy == forwarded  # NO_PROXY: the second request went direct
    assert error.kind == "connection" and f"through the proxy {dead_url}" in str(error), error


# ---- HTTPS, through a CONNECT proxy --------------------------------------------------------------

CLIENT = """
import asyncio, sys
from kodcode_async.backends import LLMRequestError, Request
from kodcode_async.backends.openai import OpenAIBackend, OpenAIConfig

async def main():
    b = OpenAIBackend(OpenAIConfig(base_url=sys.argv[1], model="m", max_retries=0, timeout_s=10))
    try:
        out = await b.generate(Request(stage="s", item_id="q", attempt=0, messages=[{"role": "user", "content": "hi"}]))
        print("ok", out.texts[0])
    except LLMRequestError as e:
        print("error", e)
    finally:
        await b.close()

asyncio.run(main())
"""


def test_https_verifies_the_certificate_and_goes_through_a_connect_proxy(tmp_path):
    import ssl

    import trustme  # in the [test] extra

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def answer(_: web.Request) -> web.Response:
        return web.json_response(ANSWER)

    async def client(url: str, **env: str) -> str:
        base = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "SSL_CERT_FILE"}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, url, cwd=ROOT, env={**base, **env},
                                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode().strip()

    async def main():
        app = web.Application()
        app.router.add_post("/v1/chat/completions", answer)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        url = f"https://localhost:{site._server.sockets[0].getsockname()[1]}/v1"
        try:
            untrusted = await client(url)  # the system's CAs do not know this one
            trusted = await client(url, SSL_CERT_FILE=str(ca_file))
            proxy = Proxy()
            async with proxy as proxy_url:
                tunnelled = await client(url, SSL_CERT_FILE=str(ca_file), HTTPS_PROXY=proxy_url)
            return untrusted, trusted, tunnelled, proxy.tunnels
        finally:
            await runner.cleanup()

    untrusted, trusted, tunnelled, tunnels = asyncio.run(main())
    assert untrusted.startswith("error connection:") and "certificate" in untrusted.lower(), untrusted
    assert trusted == tunnelled == "ok fine"
    assert len(tunnels) == 1 and tunnels[0].startswith("localhost:")


# ---- redirects ------------------------------------------------------------------------------------

def test_307_and_308_are_followed_with_the_post_301_is_an_error_naming_location_and_never_retried():
    seen: list[tuple[str, str | None, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((f"{request.host}{request.path}", request.headers.get("Authorization"), body))
        port = request.url.port
        where = {"/old/v1/chat/completions": (307, "/v1/chat/completions"),
                 "/moved/v1/chat/completions": (308, f"http://localhost:{port}/v1/chat/completions"),
                 "/http/v1/chat/completions": (301, f"https://127.0.0.1:{port}/v1/chat/completions"),
                 "/loop/v1/chat/completions": (307, "/loop/v1/chat/completions")}
        if request.path in where:
            status, location = where[request.path]
            return web.Response(status=status, headers={"Location": location})
        return web.json_response(ANSWER)

    async def main():
        runner, port = await web_server([web.post("/{tail:.*}", handler)])
        root = f"http://127.0.0.1:{port}"
        try:
            out = {}
            for name in ("old", "moved", "http", "loop"):
                b = backend(f"{root}/{name}/v1", api_key="sk-k", max_retries=3)
                try:
                    out[name] = (await b.generate(REQ)).texts
                except LLMRequestError as e:
                    out[name] = e
                await b.close()
            return out, port
        finally:
            await runner.cleanup()

    out, port = asyncio.run(main())
    assert out["old"] == out["moved"] == ["fine"]
    same_body = {body for _, _, body in seen}
    assert len(same_body) == 1 and b'"messages"' in next(iter(same_body))  # every hop got the POST body
    hosts = {path: auth for path, auth, _ in seen}
    assert hosts[f"127.0.0.1:{port}/old/v1/chat/completions"] == "Bearer sk-k"
    assert hosts[f"127.0.0.1:{port}/v1/chat/completions"] == "Bearer sk-k"  # same host: the key follows
    assert hosts[f"localhost:{port}/v1/chat/completions"] is None  # another host: it does not
    assert out["http"].kind == "redirect" and f"https://127.0.0.1:{port}/v1/chat/completions" in str(out["http"])
    assert sum(p.startswith(f"127.0.0.1:{port}/http/") for p, _, _ in seen) == 1  # not retried
    assert out["loop"].kind == "redirect" and "more than 5 redirects" in str(out["loop"])


# ---- connections a NAT forgot, addresses that never answer -----------------------------------------

def test_idle_connections_are_closed_before_a_silent_nat_drop_makes_a_request_wait():
    """The server answers one request per connection, then ignores that connection for good, as a
    NAT that dropped the flow does: a client reusing it would wait for its whole timeout."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        body = json.dumps(ANSWER).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
        await asyncio.Event().wait()  # silent from now on; never closes

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        b = backend(url, idle_timeout_s=0.5, timeout_s=3.0, max_retries=1)
        try:
            first = await b.generate(REQ)
            await asyncio.sleep(1.2)  # longer than the idle timeout
            started = time.monotonic()
            second = await b.generate(REQ)
            took = time.monotonic() - started
        finally:
            await b.close()
            server.close()
        return first, second, took, b

    first, second, took, b = asyncio.run(main())
    assert first.texts == second.texts == ["fine"]
    assert not b.errors and connections == 2, (dict(b.errors), connections)  # no timeout: a new connection
    assert took < 2.5, took


class FirstAddressNeverAnswers:
    """A resolver whose first address for any name is ::1 behind a full accept queue (connects hang
    there, on loopback), then 127.0.0.1: a dual-stack name whose IPv6 route goes nowhere."""

    def __init__(self) -> None:
        self.sink = socket.socket(socket.AF_INET6)
        self.sink.bind(("::1", 0))
        self.sink.listen(0)
        self.fillers = []
        for _ in range(3):
            c = socket.socket(socket.AF_INET6)
            c.setblocking(False)
            try:
                c.connect(("::1", self.sink.getsockname()[1]))
            except BlockingIOError:
                pass
            self.fillers.append(c)

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict]:
        return [{"hostname": host, "host": "::1", "port": self.sink.getsockname()[1], "family": socket.AF_INET6,
                 "proto": 0, "flags": socket.AI_NUMERICHOST},
                {"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        for s in [*self.fillers, self.sink]:
            s.close()


def test_an_address_that_never_answers_costs_a_moment_not_the_connect_timeout():
    async def main():
        runner, url = await start_server(Script(text="v4"))
        port = int(url.split(":")[2].split("/")[0])
        resolver = FirstAddressNeverAnswers()
        b = OpenAIBackend(OpenAIConfig(base_url=f"http://dual-stack.invalid:{port}/v1", model="m", max_retries=0,
                                       timeout_s=4.0), resolver=resolver)
        try:
            started = time.monotonic()
            out = await b.generate(REQ)
            return out, time.monotonic() - started, b
        finally:
            await b.close()
            await resolver.close()
            await runner.cleanup()

    out, took, b = asyncio.run(main())
    assert out.texts == ["v4"] and not b.errors
    assert took < 2.0, took  # the IPv6 attempt hangs until the 4 s timeout; IPv4 went after 0.25 s


# ---- Retry-After, keys and paths ----------------------------------------------------------------

@pytest.mark.parametrize("status, kind", [("429", "rate_limited"), ("503", "unavailable")])
@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_on_429_and_503_is_waited_out_in_either_form_without_burning_a_retry(status, kind, form):
    script = Script(faults=[status], text="later")

    async def main():
        runner, url = await start_server(script)
        script.retry_after = "2" if form == "seconds" else formatdate(time.time() + 2, usegmt=True)
        b = backend(url)  # max_retries 0: waiting out Retry-After is not a retry
        try:
            return await b.generate(REQ), b
        finally:
            await b.close()
            await runner.cleanup()

    out, b = asyncio.run(main())
    assert out.texts == ["later"] and b.errors == {kind: 1}
    assert script.arrivals[1] - script.arrivals[0] >= 0.95  # an HTTP date has whole seconds: >= 1 s


def test_a_503_without_retry_after_is_a_server_error_with_backoff():
    script = Script(faults=["503"], text="ok", retry_after="")
    out, errors = _one(script, max_retries=1)
    assert out.texts == ["ok"] and errors == {"server_error": 1}


def _one(script: Script, **cfg):
    async def main():
        runner, url = await start_server(script)
        b = backend(url, **cfg)
        try:
            return await b.generate(REQ), dict(b.errors)
        finally:
            await b.close()
            await runner.cleanup()

    return asyncio.run(main())


def test_keys_that_cannot_be_sent_are_refused_at_start_and_paths_that_are_not_ascii_work():
    for key in ("sk-\u201ccurly\u201d", "sk-caf\u00e9", "sk-tab\there"):
        with pytest.raises(ValueError, match="API key has characters") as e:
            backend("http://127.0.0.1:1/v1", api_key=key)
        assert key not in str(e.value)
    seen = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.path, request.raw_path))
        return web.json_response(ANSWER)

    async def main():
        runner, port = await web_server([web.post("/{tail:.*}", handler)])
        b = backend(f"http://127.0.0.1:{port}/mod\u00e8les/v1", api_key="sk-plain")
        try:
            return await b.generate(REQ)
        finally:
            await b.close()
            await runner.cleanup()

    assert asyncio.run(main()).texts == ["fine"]
    assert seen == [("/mod\u00e8les/v1/chat/completions", "/mod%C3%A8les/v1/chat/completions")]


@pytest.mark.parametrize("url, match", [
    ("127.0.0.1:8000/v1", "must start with http"),
    ("ftp://host/v1", "must start with http"),
    ("http:///v1", "name a host"),
    ("http://host:port/v1", "bad base URL"),
    ("http://host/v1?x=1", "query or fragment"),
    ("http://exa mple.com/v1", "is not a host name"),
    ("http://a..b/v1", "is not a host name"),
])
def test_bad_base_urls_are_refused_with_the_reason(url, match):
    with pytest.raises(ValueError, match=match):
        check_url(url)
    assert check_url("https://[::1]:8443/v1").port == 8443
    assert check_url("http://ex\u00e4mple.com/v1").raw_host == "xn--exmple-cua.com"  # IDNA, sent as ASCII


def test_the_cli_refuses_a_key_it_cannot_send_in_one_line_without_showing_it(tmp_path):
    env = {**os.environ, "MY_KEY": "sk-\u201csecret\u201d"}
    r = subprocess.run([sys.executable, "-m", "kodcode_async", "run", "--input", "examples/questions.jsonl",
                        "--out", str(tmp_path / "run"), "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
                        "--model", "m", "--api-key-env", "MY_KEY"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "API key has characters" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "secret" not in r.stderr and not (tmp_path / "run").exists()
