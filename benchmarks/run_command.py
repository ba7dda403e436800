"""The whole `kodcode-async run` command, measured as a user runs it, against a capped server.

The server (benchmarks/engine_overhead.py --serve, its own process) answers every chat request
after `--latency` seconds with at most `--cap` requests at once, like a GPU server's batch, and
integrates how many slots are busy over time. Its answers cannot be parsed, so every attempt
ends at the parser and no sandbox time is spent: what is measured is the engine, the OpenAI
backend, the journal, the writers and start-up, for `--questions` x `--attempts` requests.

Side by side in the same run:
* `kodcode-async run` as a subprocess (start-up included): requests/s, and slot saturation =
  busy slot-seconds / (cap x the command's wall time);
* the engine alone (benchmarks/engine_overhead.py's chain over the same backend, no journal,
  no writers), the ceiling for the whole command;
* optionally bespokelabs-curator (`--curator-python`), the peer, on the same server and requests.

Usage: python benchmarks/run_command.py [--questions 10000] [--attempts 3] [--workers 256] [--cap 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.engine_overhead import _run, measure  # noqa: E402

# As a user's install runs it: with bytecode (pip compiles it at install; `main` compiles this
# checkout first). A machine that sets PYTHONDONTWRITEBYTECODE would otherwise make every run
# compile the project from source, ~30 ms of start-up no user pays.
USER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def server_stats(port: int, reset: bool = False) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/{'reset' if reset else 'stats'}",
                                 method="POST" if reset else "GET")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def run_command(port: int, questions: int, attempts: int, workers: int, cap: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="kodcode-bench-") as tmp:
        qpath = os.path.join(tmp, "q.jsonl")
        with open(qpath, "w") as f:
            for i in range(questions):
                f.write(json.dumps({"question_id": f"q{i:07d}", "question": f"Write f{i}(x) returning x + {i}."})
                        + "\n")
        cmd = [sys.executable, "-m", "kodcode_async", "run", "--input", qpath, "--out", os.path.join(tmp, "run"),
               "--backend", "openai", "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m",
               "--workers", str(workers), "--attempts", str(attempts), "--max-attempts", str(attempts),
               "--max-retries", "0"]
        server_stats(port, reset=True)
        t0, m0 = time.perf_counter(), time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=USER_ENV)
        wall, m1 = time.perf_counter() - t0, time.monotonic()
        st = server_stats(port)
        if r.returncode != 0:
            raise SystemExit(f"run failed ({r.returncode}):\n{r.stderr[-3000:]}")
        stats = json.load(open(os.path.join(tmp, "run", "stats.json")))
    return {"way": "kodcode-async run", "requests": st["requests"], "wall": wall, "rps": st["requests"] / wall,
            "saturation": st["busy"] / (cap * wall), "rows": stats["questions"],
            "startup_s": st["first"] - m0, "shutdown_s": m1 - st["last_answer"]}


def run_curator(python: str, port: int, n: int, workers: int, cap: int) -> dict | None:
    # tiktoken's encoding files cannot be downloaded here (no network); curator only uses them to
    # estimate tokens for its rate limiter, so a whitespace count stands in.
    script = f"""
import os, time
import tiktoken


class _Words:
    name = "words"

    def encode(self, text, *args, **kwargs):
        return text.split()


tiktoken.get_encoding = lambda *a, **k: _Words()
tiktoken.encoding_for_model = lambda *a, **k: _Words()
os.environ.setdefault("OPENAI_API_KEY", "x")
os.environ["CURATOR_DISABLE_RICH_DISPLAY"] = "1"
from bespokelabs import curator
llm = curator.LLM(model_name="gpt-4o-mini", backend="openai",
                  backend_params={{"base_url": "http://127.0.0.1:{port}/v1", "max_requests_per_minute": 10**9,
                                   "max_tokens_per_minute": 10**12, "max_retries": 0,
                                   "max_concurrent_requests": {workers}}})
t = time.perf_counter()
llm([f"question {{i}}" for i in range({n})])
"""
    with tempfile.TemporaryDirectory(prefix="kodcode-curator-") as tmp:
        server_stats(port, reset=True)
        t0 = time.perf_counter()
        r = subprocess.run([python, "-c", script], capture_output=True, text=True,
                           env={**os.environ, "CURATOR_CACHE_DIR": tmp, "HF_DATASETS_CACHE": tmp, "TELEMETRY_ENABLED": "False"})
        wall = time.perf_counter() - t0
        st = server_stats(port)
    if r.returncode != 0:
        print(f"curator failed: {r.stderr[-1500:]}", file=sys.stderr)
        return None
    return {"way": "curator", "requests": st["requests"], "wall": wall, "rps": st["requests"] / wall,
            "saturation": st["busy"] / (cap * wall)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=10000)
    ap.add_argument("--attempts", type=int, default=3)
    ap.add_argument("--workers", type=int, default=256)
    ap.add_argument("--cap", type=int, default=256)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--curator-python", help="an interpreter with bespokelabs-curator installed (e.g. a venv's "
                    "bin/python): also run the peer on the same server")
    ap.add_argument("--server", choices=("lean", "aiohttp"), default="lean",
                    help="the capped server (benchmarks/engine_overhead.py): a bare asyncio protocol, or aiohttp.web")
    args = ap.parse_args()
    n = args.questions * args.attempts
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "kodcode_async"), str(ROOT / "sandbox")],
                   check=True, env=USER_ENV)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"server cap {args.cap}, latency {args.latency * 1000:.0f} ms, --workers {args.workers}, {n} requests")
    server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "engine_overhead.py"), "--serve", "--server", args.server,
                               "--cap", str(args.cap), "--latency", str(args.latency)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        rows = [run_command(port, args.questions, args.attempts, args.workers, args.cap)]
        engine = _run(measure(port, n, args.workers, args.cap, "engine"))
        rows.append({**engine, "way": "engine alone"})
        if args.curator_python:
            cur = run_curator(args.curator_python, port, n, args.workers, args.cap)
            if cur is not None:
                rows.append(cur)
    finally:
        server.terminate()
        server.wait()
    print(f"\n{'way':<20}{'requests':>9}{'wall s':>8}{'req/s':>9}{'slots busy':>12}")
    for r in rows:
        print(f"{r['way']:<20}{r['requests']:>9}{r['wall']:>8.2f}{r['rps']:>9.0f}{r['saturation']:>11.1%}")
    print(f"kodcode-async run: {rows[0]['startup_s']:.2f} s from launch to the first request, "
          f"{rows[0]['shutdown_s']:.2f} s from the last answer to exit")
    print(f"ideal for this server: {args.cap / args.latency:.0f} req/s; "
          f"whole command / engine alone: {rows[0]['rps'] / rows[1]['rps']:.2f}x"
          + (f"; whole command / curator: {rows[0]['rps'] / rows[2]['rps']:.1f}x" if len(rows) > 2 else ""))


if __name__ == "__main__":
    main()
