"""A KodCode-sized run of the whole command, killed with SIGKILL near the end and resumed.

KodCode-V1 has ~450k questions. This runs `kodcode-async run` (OpenAI backend, as a user runs it)
on `--questions` generated questions x `--attempts` attempts against the capped server of
benchmarks/engine_overhead.py (its own process: `--latency` per answer, `--cap` at once). Its
answers cannot be parsed, so every attempt ends at the parser: what is measured is the engine,
the backend, the journal and the writers at that size, not the sandbox.

While the run goes, the server's request count and the command's RSS are sampled every second.
At `--kill-at` of the expected requests the command gets SIGKILL (as the OOM killer or a lost
machine would); the same command is started again and must finish with every question once.
Printed: requests/s per tenth of the work (the last tenth against the first), RSS over time, the
journal's size and bytes per record, the time from the restart to its first new request, and
the requests asked twice (those in flight at the kill).

Usage: python benchmarks/kodcode_scale.py [--questions 450000] [--attempts 3] [--kill-at 0.8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run_command import USER_ENV  # noqa: E402
from benchmarks.run_command import server_stats as stats  # noqa: E402


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=450_000)
    ap.add_argument("--attempts", type=int, default=3)
    ap.add_argument("--workers", type=int, default=256)
    ap.add_argument("--cap", type=int, default=256)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--kill-at", type=float, default=0.8, help="share of the expected requests at SIGKILL")
    a = ap.parse_args()
    total = a.questions * a.attempts
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "kodcode_async"), str(ROOT / "sandbox")],
                   check=True, env=USER_ENV)
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}; {a.questions} questions x "
          f"{a.attempts} attempts = {total} requests; server cap {a.cap}, {a.latency * 1000:.0f} ms; SIGKILL at "
          f"{a.kill_at:.0%}", flush=True)
    tmp = tempfile.mkdtemp(prefix="kodcode-scale-")
    questions = os.path.join(tmp, "q.jsonl")
    with open(questions, "w") as f:
        for i in range(a.questions):
            f.write(json.dumps({"question_id": f"q{i:07d}", "question": f"Write f{i}(x) returning x + {i}."}) + "\n")
    out = os.path.join(tmp, "run")
    cmd = [sys.executable, "-m", "kodcode_async", "run", "--input", questions, "--out", out, "--backend", "openai",
           "--model", "m", "--workers", str(a.workers), "--attempts", str(a.attempts), "--max-attempts",
           str(a.attempts), "--max-retries", "0", "--quiet"]
    server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "engine_overhead.py"), "--serve",
                               "--cap", str(a.cap), "--latency", str(a.latency)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        cmd[cmd.index("--model"):cmd.index("--model")] = ["--base-url", f"http://127.0.0.1:{port}/v1"]
        stats(port, reset=True)
        samples: list[tuple[float, int, float | None]] = []  # (seconds since launch, requests, RSS MB)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=USER_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        killed_at = None
        while proc.poll() is None:
            time.sleep(1.0)
            n = stats(port)["requests"]
            samples.append((time.monotonic() - t0, n, rss_mb(proc.pid)))
            if killed_at is None and n >= a.kill_at * total:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = (time.monotonic() - t0, n)
        if killed_at is None:
            raise SystemExit(f"the run ended before the kill ({proc.returncode}): {proc.stderr.read()[-2000:]!r}")
        first_requests = stats(port)["requests"]
        journal = os.path.join(out, "journal.sqlite")
        with sqlite3.connect(journal) as db:
            records = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        sizes = {name: os.path.getsize(os.path.join(out, name)) for name in os.listdir(out)}
        journal_bytes = sum(v for k, v in sizes.items() if k.startswith("journal.sqlite"))
        print(f"SIGKILL at {killed_at[0]:.1f} s with {killed_at[1]} requests answered; {records} journal records, "
              f"journal {journal_bytes / 1e6:.1f} MB ({journal_bytes / max(1, records):.0f} bytes per record); "
              f"files: {sizes}", flush=True)

        stats(port, reset=True)
        t1 = time.monotonic()
        resumed = subprocess.run(cmd, cwd=ROOT, env=USER_ENV, capture_output=True, text=True)
        wall2 = time.monotonic() - t1
        st = stats(port)
        if resumed.returncode not in (0, 3):
            raise SystemExit(f"resume failed ({resumed.returncode}): {resumed.stderr[-2000:]}")
        first_new = st["first"] - t1 if st.get("first") else float("nan")
        ids = set()
        rows = 0
        for name in ("verified.jsonl", "failed.jsonl"):
            path = os.path.join(out, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    for line in f:
                        rows += 1
                        ids.add(json.loads(line)["question_id"])
        asked = first_requests + st["requests"]
        print(f"resume: first new request {first_new:.2f} s after the restart, {st['requests']} requests, "
              f"{wall2:.1f} s; {rows} rows, {len(ids)} distinct questions (of {a.questions}); {asked} requests in "
              f"all, {asked - total} asked twice (in flight at the kill)", flush=True)
    finally:
        server.terminate()
        server.wait()

    # Requests/s per tenth of the work, in the first (killed) run; the last tenths come from the resume.
    tenths = []
    for k in range(10):
        lo, hi = k * total / 10, (k + 1) * total / 10
        inside = [(t, n) for t, n, _ in samples if lo <= n <= hi]
        if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
            tenths.append((k, (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])))
    print("requests/s per tenth of the work (first run): " + ", ".join(f"{k + 1}: {r:,.0f}" for k, r in tenths))
    if len(tenths) >= 2:
        print(f"last measured tenth / first: {tenths[-1][1] / tenths[0][1]:.2f}")
    rss = [(t, r) for t, _, r in samples if r is not None]
    if rss:
        marks = [rss[int(i * (len(rss) - 1) / 4)] for i in range(5)]
        print("RSS of the command: " + ", ".join(f"{t:.0f} s: {r:.0f} MB" for t, r in marks))
    print(f"resume throughput: {st['requests'] / wall2:,.0f} requests/s over {wall2:.1f} s, start-up included")


if __name__ == "__main__":
    main()
