"""`kodcode-async serve` under load, side by side with a fresh-process-per-request runner of the same API.

N concurrent clients on loopback send `/run_code` requests for `--seconds`, each waiting for its
answer before sending the next. Two workloads: `python` (a short program reading stdin, as verl's
stdin/stdout rewards send) and `pytest` (a KodCode-style solution with its pytest tests). The
reference is how SandboxFusion executes: for every request a fresh interpreter (`python file.py`,
or `python -m pytest` on the test file) in a temporary directory, at most `--workers` at once. It
runs without isolation, which only flatters it. Both servers run in their own processes.

Printed per workload: requests/s, p50/p99 latency, errors, the ratio; then an overload phase
(`--overload` clients against a capacity of workers + max-queue) counting answers by HTTP
status; then the processes left under the server after it stopped (must be none).

Usage: python benchmarks/serve_load.py [--clients 8] [--workers 2] [--seconds 10] [--overload 64]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROGRAM = "import sys\nnums = list(map(int, sys.stdin.read().split()))\nprint(sum(x * x for x in nums))\n"
SOLUTION = "def add(a, b):\n    return a + b\n"
TESTS = ("from solution import *\n\nimport pytest\n\n\n@pytest.mark.parametrize('a,b', [(1, 2), (0, 0), (-1, 1)])\n"
         "def test_add(a, b):\n    assert add(a, b) == a + b\n\n\ndef test_types():\n    assert add('a', 'b') == 'ab'\n")


def body(workload: str) -> dict:
    if workload == "python":
        return {"code": PROGRAM, "language": "python", "stdin": "1 2 3 4", "run_timeout": 10, "memory_limit_MB": 1024}
    return {"code": TESTS, "language": "pytest", "run_timeout": 10, "memory_limit_MB": 1024,
            "files": {"solution.py": base64.b64encode(SOLUTION.encode()).decode()}}


# ---- the reference: one fresh interpreter per request ---------------------------------------

def write_files(tmp: str, req: dict) -> list[str]:
    """The request's files in a fresh directory; the command that runs it there."""
    for name, b64 in (req.get("files") or {}).items():
        Path(tmp, name).write_bytes(base64.b64decode(b64))
    if req["language"] == "pytest":
        Path(tmp, "test_main.py").write_text(req["code"])
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_main.py"]
    Path(tmp, "main.py").write_text(req["code"])
    return [sys.executable, "main.py"]


def serve_reference(workers: int) -> None:
    from aiohttp import web

    slots = asyncio.Semaphore(workers)

    async def run_code(request: web.Request) -> web.Response:
        req = await request.json()
        async with slots:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = write_files(tmp, req)
                t = time.monotonic()
                proc = await asyncio.create_subprocess_exec(*cmd, cwd=tmp, stdin=subprocess.PIPE,
                                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                try:
                    out, err = await asyncio.wait_for(proc.communicate((req.get("stdin") or "").encode()),
                                                      req.get("run_timeout", 10))
                    status = "Finished"
                except TimeoutError:
                    proc.kill()
                    out, err = await proc.communicate()
                    status = "TimeLimitExceeded"
        ok = status == "Finished" and proc.returncode == 0
        return web.json_response({"status": "Success" if ok else "Failed", "message": "", "compile_result": None,
                                  "run_result": {"status": status, "execution_time": time.monotonic() - t,
                                                 "return_code": proc.returncode, "stdout": out.decode(),
                                                 "stderr": err.decode()}, "files": {}})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/run_code", run_code)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"serving on http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def start(kind: str, workers: int, max_queue: int) -> tuple[subprocess.Popen, str]:
    if kind == "kodcode-async":
        cmd = [sys.executable, "-m", "kodcode_async", "serve", "--port", "0", "--workers", str(workers),
               "--max-queue", str(max_queue)]
    else:
        cmd = [sys.executable, __file__, "--serve-reference", "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    return proc, "http://127.0.0.1:" + line.split("127.0.0.1:")[1].split()[0]


# ---- clients ----------------------------------------------------------------------------------

async def load(url: str, workload: str, clients: int, seconds: float) -> dict:
    import aiohttp
    import orjson

    payload = orjson.dumps(body(workload))
    latencies: list[float] = []
    statuses: Counter = Counter()
    wrong = 0
    stop = time.monotonic() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal wrong
        while time.monotonic() < stop:
            t = time.monotonic()
            try:
                async with session.post(url + "/run_code", data=payload,
                                        headers={"Content-Type": "application/json"}) as r:
                    data = await r.read()
                    statuses[r.status] += 1
                    if r.status == 200:
                        latencies.append(time.monotonic() - t)
                        if orjson.loads(data)["status"] != "Success":
                            wrong += 1
                    elif r.status == 503:
                        await asyncio.sleep(float(r.headers.get("Retry-After", "1")) / 10)
            except aiohttp.ClientError as e:
                statuses[type(e).__name__] += 1

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120),
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        t0 = time.monotonic()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        wall = time.monotonic() - t0
    lat = sorted(latencies)
    return {"ok": len(lat), "rps": len(lat) / wall, "p50": statistics.median(lat) if lat else 0.0,
            "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else 0.0, "statuses": dict(statuses),
            "not_success": wrong}


def leftovers(proc: subprocess.Popen) -> int:
    import psutil

    tree = psutil.Process(proc.pid).children(recursive=True)
    proc.terminate()
    proc.wait(timeout=60)
    _, alive = psutil.wait_procs(tree, timeout=10)
    return len(alive)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-queue", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--overload", type=int, default=64)
    ap.add_argument("--serve-reference", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_reference:
        return serve_reference(args.workers)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.clients} clients, {args.workers} workers each side, {args.seconds:g} s per measurement")
    print(f"\n{'workload':<9}{'server':<16}{'ok':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}  errors")
    for workload in ("python", "pytest"):
        rows = {}
        for kind in ("reference", "kodcode-async"):
            proc, url = start(kind, args.workers, args.max_queue)
            try:
                time.sleep(1.0)  # warm-up of the pool; the reference has nothing to warm
                r = asyncio.run(load(url, workload, args.clients, args.seconds))
            finally:
                left = leftovers(proc)
            rows[kind] = r
            errors = {k: v for k, v in r["statuses"].items() if k != 200}
            print(f"{workload:<9}{kind:<16}{r['ok']:>7}{r['rps']:>9.1f}{r['p50'] * 1000:>9.1f}{r['p99'] * 1000:>9.1f}  "
                  f"{errors or 'none'}, not Success {r['not_success']}, processes left {left}")
        print(f"{'':<9}kodcode-async / reference: {rows['kodcode-async']['rps'] / rows['reference']['rps']:.1f}x")
    proc, url = start("kodcode-async", args.workers, args.max_queue)
    try:
        time.sleep(1.0)
        r = asyncio.run(load(url, "python", args.overload, args.seconds))
    finally:
        left = leftovers(proc)
    print(f"\noverload: {args.overload} clients against capacity {args.workers + args.max_queue}: "
          f"answers by status {r['statuses']}, {r['ok']} served ({r['rps']:.1f}/s), not Success {r['not_success']}, "
          f"processes left {left}")


if __name__ == "__main__":
    main()
