"""`kodcode-async serve`: the warm sandbox pool over HTTP, speaking SandboxFusion's `/run_code`.

    client ──POST /run_code──► admission (≤ workers + max_queue jobs; else 503 + Retry-After at once)
           ──POST /verify────►     │
                                   ▼
                            SandboxPool.verify ──► verdict ──► SandboxFusion response / NDJSON line

* `/run_code` takes SandboxFusion's request (`code`, `language` python|pytest, `stdin`,
  `run_timeout`, `memory_limit_MB`, `files`) and answers HTTP 200 with its response shape for any
  code that ran, whatever its outcome, as SandboxFusion does; verl's client reads `status` and
  `run_result`. Per-request limits are capped by the server's maxima.
* `/verify` takes a batch of `kodcode-async verify` rows and streams one verdict line per row, in
  completion order, each with its id.
* A full server answers 503 with Retry-After immediately: never a hang, never a silent drop. A
  client that disconnects cancels its jobs (their workers are killed and replaced, children reaped).
* Bound to 127.0.0.1 unless told otherwise; with a token, every route but /health needs
  `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from kodcode_async.verify import BadRow, VerifyOptions, row_to_job, verdict_row
from sandbox import Job, Limits, Verdict
from sandbox.pool import SandboxConfig, SandboxPool
from sandbox.protocol import StdinCase

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_queue: int = 64  # jobs waiting for a worker beyond those running; more get 503
    token: str | None = None  # resolved by the CLI from an environment variable; never logged
    max_body_bytes: int = 16 * 1024 * 1024
    default_run_timeout_s: float = 10.0
    max_run_timeout_s: float = 60.0
    default_memory_mb: int = 1024
    max_memory_mb: int = 4096
    max_rows: int = 10_000  # rows in one /verify body; more get 400 before any is parsed into a job
    header_timeout_s: float = 10.0  # a new connection must send a whole request head within this
    max_connections_per_client: int = 256  # open connections from one address; more are closed at once
    retry_after_s: int = 1
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)

    def __repr__(self) -> str:
        return f"ServeConfig(host={self.host!r}, port={self.port}, token={'***' if self.token else None})"


class Metrics:
    def __init__(self) -> None:
        self.verdicts: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()  # 503 full, 401, 400
        self.latency: dict[str, list[int]] = {}  # route -> bucket counts (+inf last)
        self.latency_sum: Counter[str] = Counter()

    def observe(self, route: str, seconds: float) -> None:
        counts = self.latency.setdefault(route, [0] * (len(LATENCY_BUCKETS) + 1))
        for i, edge in enumerate(LATENCY_BUCKETS):
            if seconds <= edge:
                counts[i] += 1
        counts[-1] += 1
        self.latency_sum[route] += seconds


class SandboxServer:
    def __init__(self, config: ServeConfig, pool: SandboxPool) -> None:
        self.config = config
        self.pool = pool
        self.capacity = pool.size + config.max_queue
        self.admitted = 0  # jobs queued or running
        self.metrics = Metrics()

    # ---- admission and auth ----------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        if not self.config.token:
            return True
        got = request.headers.get("Authorization", "")
        # surrogateescape: a header with bytes that are not UTF-8 is compared, not a crash.
        return hmac.compare_digest(got.encode("utf-8", "surrogateescape"), f"Bearer {self.config.token}".encode())

    def _reject(self, status: int, message: str, **headers: str) -> web.Response:
        self.metrics.rejected[str(status)] += 1
        return web.json_response({"status": "SandboxError", "message": message}, status=status, headers=headers)

    def _full(self, jobs: int) -> web.Response | None:
        if jobs > self.capacity:
            return self._reject(400, f"a batch of {jobs} jobs exceeds this server's capacity ({self.capacity}); "
                                     "split it")
        if self.admitted + jobs > self.capacity:
            return self._reject(503, f"busy: {self.admitted} jobs queued or running, capacity {self.capacity}; "
                                     "retry later", **{"Retry-After": str(self.config.retry_after_s)})
        return None

    async def _run(self, job: Job) -> Verdict:
        try:
            verdict = await self.pool.verify(job)
        finally:
            self.admitted -= 1
        self.metrics.verdicts[verdict.status] += 1
        return verdict

    # ---- routes ----------------------------------------------------------------------------

    async def run_code(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._reject(401, "missing or wrong bearer token")
        started = time.monotonic()
        try:
            body = orjson.loads(await request.read())
            job = self.job_from_run_code(body)
        except (orjson.JSONDecodeError, ValueError, TypeError) as e:
            return self._reject(400, f"bad request: {e}")
        if isinstance(job, web.Response):
            return job
        full = self._full(1)
        if full is not None:
            return full
        self.admitted += 1
        verdict = await self._run(job)
        self.metrics.observe("/run_code", time.monotonic() - started)
        return web.json_response(run_code_response(verdict, body.get("language")),
                                 dumps=lambda o: orjson.dumps(o).decode())

    def job_from_run_code(self, body: object) -> Job | web.Response:
        if not isinstance(body, dict) or not isinstance(body.get("code"), str):
            raise ValueError("the body must be a JSON object with a string 'code'")
        language = body.get("language", "python")
        c = self.config
        limits = Limits(wall_s=_clamp(body.get("run_timeout"), c.default_run_timeout_s, 0.1, c.max_run_timeout_s,
                                      "run_timeout"),
                        memory_mb=int(_clamp(body.get("memory_limit_MB"), c.default_memory_mb, 1, c.max_memory_mb,
                                             "memory_limit_MB")))
        files = body.get("files") or {}
        if not isinstance(files, dict):
            raise ValueError("'files' must map paths to base64 contents")
        if body.get("fetch_files"):
            return web.json_response(_sandbox_error("fetch_files is not supported: the job's files are not kept"))
        extra = set(files) - {"solution.py"}
        if extra:
            return web.json_response(_sandbox_error(f"files: only solution.py is supported, not {sorted(extra)}"))
        try:
            solution = base64.b64decode(files["solution.py"], validate=True).decode() if files else ""
        except (binascii.Error, UnicodeDecodeError, TypeError) as e:
            raise ValueError(f"files['solution.py'] is not base64 UTF-8 text: {e}") from None
        if language == "python":
            return Job(id="run_code", solution=body["code"], limits=limits, coverage=False,
                       stdin_tests=[StdinCase(str(body.get("stdin") or ""))])
        if language == "pytest":
            return Job(id="run_code", solution=solution, test=body["code"], limits=limits, coverage=False)
        return web.json_response(_sandbox_error(f"unsupported language {language!r}: this sandbox runs python "
                                                "and pytest"))

    async def verify(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._reject(401, "missing or wrong bearer token")
        started = time.monotonic()
        q = request.query
        c = self.config
        try:
            options = VerifyOptions(timeout_s=_clamp(q.get("timeout"), 30.0, 0.1, c.max_run_timeout_s, "timeout"),
                                    memory_mb=int(_clamp(q.get("memory_mb"), 2048, 1, c.max_memory_mb, "memory_mb")),
                                    coverage=q.get("coverage", "1") != "0")
        except ValueError as e:
            return self._reject(400, f"bad request: {e}")
        raw = await request.read()
        try:
            # A large body is parsed off the event loop: other clients and /health keep their answers.
            body = orjson.loads(raw) if len(raw) < 1 << 20 else await asyncio.to_thread(orjson.loads, raw)
        except orjson.JSONDecodeError as e:
            return self._reject(400, f"bad request: invalid JSON: {e}")
        rows = body.get("jobs") if isinstance(body, dict) else body
        if not isinstance(rows, list):
            return self._reject(400, "bad request: send a JSON list of verify rows, or {\"jobs\": [...]}")
        if len(rows) > c.max_rows:
            return self._reject(400, f"bad request: {len(rows)} rows in one body; at most {c.max_rows}, split it")
        jobs, bad = [], []
        for i, row in enumerate(rows, 1):
            try:
                jobs.append(row_to_job(orjson.dumps(row), i, options))
            except BadRow as e:
                bad.append({"id": e.row_id, "status": "error", "reason": str(e)})
        full = self._full(len(jobs))
        if full is not None:
            return full
        self.admitted += len(jobs)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for row in bad:
            await response.write(orjson.dumps(row) + b"\n")
        tasks = [asyncio.ensure_future(self._run(job)) for job in jobs]  # owned here: awaited or cancelled
        try:
            for done in asyncio.as_completed(tasks):
                await response.write(orjson.dumps(verdict_row(await done)) + b"\n")
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await response.write_eof()
        self.metrics.observe("/verify", time.monotonic() - started)
        return response

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "workers": self.pool.size, "busy": self.pool.busy,
                                  "queued_or_running": self.admitted, "capacity": self.capacity,
                                  "isolation": self.pool.isolation})

    async def metrics_text(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._reject(401, "missing or wrong bearer token")
        m = self.metrics
        lines = ["# HELP kodcode_jobs_admitted Jobs queued or running.", "# TYPE kodcode_jobs_admitted gauge",
                 f"kodcode_jobs_admitted {self.admitted}",
                 "# HELP kodcode_queue_depth Jobs waiting for a worker.", "# TYPE kodcode_queue_depth gauge",
                 f"kodcode_queue_depth {max(0, self.admitted - self.pool.busy)}",
                 "# HELP kodcode_workers_busy Sandbox workers running a job.", "# TYPE kodcode_workers_busy gauge",
                 f"kodcode_workers_busy {self.pool.busy}", f"kodcode_workers {self.pool.size}",
                 "# HELP kodcode_verdicts_total Verdicts by status.", "# TYPE kodcode_verdicts_total counter"]
        lines += [f'kodcode_verdicts_total{{status="{s}"}} {n}' for s, n in sorted(m.verdicts.items())]
        lines += ["# HELP kodcode_rejected_total Requests refused, by HTTP status.",
                  "# TYPE kodcode_rejected_total counter"]
        lines += [f'kodcode_rejected_total{{code="{s}"}} {n}' for s, n in sorted(m.rejected.items())]
        lines += ["# HELP kodcode_request_seconds Request latency.", "# TYPE kodcode_request_seconds histogram"]
        for route, counts in sorted(m.latency.items()):
            for edge, n in zip(LATENCY_BUCKETS, counts):
                lines.append(f'kodcode_request_seconds_bucket{{route="{route}",le="{edge}"}} {n}')
            lines.append(f'kodcode_request_seconds_bucket{{route="{route}",le="+Inf"}} {counts[-1]}')
            lines.append(f'kodcode_request_seconds_sum{{route="{route}"}} {m.latency_sum[route]:.6f}')
            lines.append(f'kodcode_request_seconds_count{{route="{route}"}} {counts[-1]}')
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")

    @web.middleware
    async def json_errors(self, request: web.Request, handler) -> web.StreamResponse:  # noqa: ANN001
        """aiohttp's own refusals (413 for a large body, 404, 405) in SandboxFusion's JSON shape."""
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return self._reject(e.status, f"{e.reason}: {e.text}" if e.text and e.text != e.reason else e.reason)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[self.json_errors])
        app.router.add_post("/run_code", self.run_code)
        app.router.add_post("/verify", self.verify)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics_text)
        return app


def _clamp(value: object, default: float, low: float, high: float, name: str) -> float:
    """A request's limit: its default when absent, else a finite number clamped to [low, high].

    Never 0 (which would mean "no limit" to the sandbox); anything that is not a finite number is
    a ValueError naming the field (a 400 with the reason).
    """
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be a number, not {value!r}"[:200])
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {value!r}"[:200]) from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {value!r}"[:200])
    return min(max(number, low), high)


def _sandbox_error(message: str) -> dict:
    return {"status": "SandboxError", "message": message, "compile_result": None, "run_result": None, "files": {}}


def run_code_response(v: Verdict, language: str | None) -> dict:
    """A verdict in SandboxFusion's response shape."""
    if v.status == "sandbox_error":
        return _sandbox_error(v.reason)
    timed_out = v.status == "timeout"
    reason = v.reason
    if language == "pytest":
        # pytest's own exit status; never 0 for a run the sandbox did not count as a pass (a skip or
        # exit raised from the solution), since clients read return_code == 0 as success.
        return_code = None if timed_out else (0 if v.status == "pass" else (v.exit_code or 1))
    else:
        message = v.tests[0].message if v.tests else ""
        return_code = int(message.split()[1].rstrip(":")) if message.startswith("exit ") else (None if timed_out else 1)
        if message.startswith("exit ") and return_code != 0:
            reason = f"the program {message}"  # its own exit status and last line of stderr
    ok = not timed_out and return_code == 0 and v.status == "pass"
    if v.truncated:
        reason = (reason + "; " if reason and not ok else "") + "output truncated at the output limit"
    return {"status": "Success" if ok else "Failed", "message": (reason if not ok or v.truncated else "")[:2000],
            "compile_result": None,
            "run_result": {"status": "TimeLimitExceeded" if timed_out else "Finished",
                           "execution_time": round(v.wall_s, 4), "return_code": return_code,
                           "stdout": v.stdout, "stderr": v.stderr},
            "files": {}}


class ConnectionLimits:
    """aiohttp's protocol factory behind two limits it lacks: a deadline for a new connection's first
    request head (a client that opens connections and sends nothing, or a byte at a time, cannot
    hold file descriptors for good) and a cap on open connections per client address."""

    def __init__(self, server: web.Server, header_timeout_s: float, per_client: int) -> None:
        self._server = server
        self.header_timeout_s = header_timeout_s
        self.per_client = per_client
        self.open: Counter[str] = Counter()
        self.closed_slow = self.refused = 0

    def __getattr__(self, name: str) -> object:  # shutdown(), connections, ...: the real server's
        return getattr(self._server, name)

    def __call__(self) -> asyncio.Protocol:
        return _LimitedConnection(self, self._server())


class _LimitedConnection(asyncio.Protocol):
    def __init__(self, limits: ConnectionLimits, inner: asyncio.Protocol) -> None:
        self.limits, self.inner = limits, inner
        self.host: str | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if peer else ""
        if self.limits.open[host] >= self.limits.per_client:
            self.limits.refused += 1
            transport.abort()
            return
        self.host, self.transport = host, transport
        self.limits.open[host] += 1
        self.inner.connection_made(transport)
        self.timer = asyncio.get_running_loop().call_later(self.limits.header_timeout_s, self._deadline)

    def _deadline(self) -> None:
        # aiohttp counts a request once its head is parsed; none yet means a silent or trickling client.
        if getattr(self.inner, "_request_count", 1) == 0 and self.transport is not None:
            self.limits.closed_slow += 1
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.host is not None:
            self.limits.open[self.host] -= 1
            if self.limits.open[self.host] <= 0:
                del self.limits.open[self.host]
            self.host = None
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


async def serve(config: ServeConfig, on_ready: Callable[[int], None] | None = None) -> None:
    """Run until cancelled: start the pool, then the HTTP server (`on_ready(port)` once it listens);
    on the way out, stop both: jobs in flight are cancelled and their workers reaped."""
    async with SandboxPool(config.sandbox) as pool:
        server = SandboxServer(config, pool)
        # shutdown_timeout: on the way out, requests still running get 1 s, then are cancelled (their
        # jobs killed); waiting out a 60 s job would make SIGTERM look like a hang.
        runner = web.AppRunner(server.app(), handler_cancellation=True, access_log=None, shutdown_timeout=1.0,
                               keepalive_timeout=15.0)
        await runner.setup()
        runner._server = ConnectionLimits(runner._server, config.header_timeout_s, config.max_connections_per_client)
        site = web.TCPSite(runner, config.host, config.port, backlog=1024)
        await site.start()
        try:
            if on_ready is not None:
                on_ready(site._server.sockets[0].getsockname()[1])  # the real port, when 0 was asked
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
