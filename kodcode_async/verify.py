"""`kodcode-async verify`: stream (solution, test) rows through the sandbox, verdicts in input order."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import msgspec
import orjson

from kodcode_async.jsonl import count_rows, iter_lines
from kodcode_async.progress import Progress
from sandbox import Job, Limits, StdinCase, Verdict
from sandbox.pool import SandboxConfig, SandboxPool


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    timeout_s: float = 30.0
    memory_mb: int = 2048
    coverage: bool = True


class BadRow(ValueError):
    """An input row that cannot become a job; it still gets an output row."""

    def __init__(self, row_id: str, reason: str) -> None:
        super().__init__(reason)
        self.row_id = row_id


def row_to_job(line: bytes, lineno: int, options: VerifyOptions) -> Job:
    """Build a Job from one JSONL line, or raise BadRow with the reason."""
    fallback_id = f"line{lineno}"
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise BadRow(fallback_id, f"invalid JSON: {e}") from None
    if not isinstance(row, dict):
        raise BadRow(fallback_id, "row is not a JSON object")
    row_id = row.get("id", row.get("question_id", fallback_id))
    row_id = str(row_id) if row_id is not None else fallback_id
    solution = row.get("solution")
    if not isinstance(solution, str):
        raise BadRow(row_id, "missing or non-string field 'solution'")
    test = row.get("test", row.get("test_code"))
    stdin_tests = row.get("stdin_tests")
    limits = Limits(wall_s=options.timeout_s, memory_mb=options.memory_mb)
    if isinstance(test, str):
        return Job(id=row_id, solution=solution, test=test, limits=limits, coverage=options.coverage)
    if stdin_tests is not None:
        try:
            cases = msgspec.convert(stdin_tests, list[StdinCase])
        except msgspec.ValidationError as e:
            raise BadRow(row_id, f"bad 'stdin_tests': {e} (want a list of {{input, output}} strings)") from None
        if any(case.output is None for case in cases):
            raise BadRow(row_id, "bad 'stdin_tests': every case needs an 'output' string")
        tol = row.get("float_tolerance")
        if tol is not None and not isinstance(tol, int | float):
            raise BadRow(row_id, "'float_tolerance' must be a number")
        return Job(id=row_id, solution=solution, stdin_tests=cases, limits=limits, coverage=False,
                   float_tolerance=float(tol) if tol is not None else None)
    raise BadRow(row_id, "row has neither 'test' (or 'test_code') nor 'stdin_tests'")


def verdict_row(v: Verdict) -> dict:
    return {
        "id": v.id, "status": v.status, "reason": v.reason,
        "tests": [{"nodeid": t.nodeid, "outcome": t.outcome, "message": t.message} for t in v.tests],
        "coverage": v.coverage, "cpu_s": v.cpu_s, "wall_s": v.wall_s, "peak_rss_mb": v.peak_rss_mb,
        "isolation": v.isolation, **({"reruns": v.reruns} if v.reruns else {}),
    }


async def verify_stream(pool: SandboxPool, lines: Iterator[tuple[int, bytes]], options: VerifyOptions,
                        window: int, sink: Callable[[Verdict], None]) -> None:
    """Call `sink` with one verdict per input line, in input order, at most `window` rows in flight."""
    pending: deque[asyncio.Future[Verdict]] = deque()
    loop = asyncio.get_running_loop()
    async with asyncio.TaskGroup() as tg:
        for lineno, line in lines:
            try:
                job = row_to_job(line, lineno, options)
            except BadRow as e:
                fut: asyncio.Future[Verdict] = loop.create_future()
                fut.set_result(Verdict(id=e.row_id, status="error", reason=f"bad input row: {e}",
                                       isolation=pool.isolation))
                pending.append(fut)
            else:
                pending.append(tg.create_task(pool.verify(job)))
            while len(pending) >= window or (pending and pending[0].done()):
                sink(await pending.popleft())
        while pending:
            sink(await pending.popleft())


def _open_output(path: str):  # noqa: ANN202 - small rows, flushed per row; the sandbox is the slow part
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return open(path, "wb")  # noqa: SIM115


async def run_verify(input_path: str, output_path: str, config: SandboxConfig, options: VerifyOptions) -> Counter:
    """Verify every row of input_path into output_path, in input order.

    The pool starts (or refuses, with SandboxUnavailable) before the output is opened, with no
    more workers than rows: a worker with nothing to do is only a warm interpreter's memory. Rows
    are written to output_path itself as they finish, so an interrupted run leaves the finished
    prefix there, never in a hidden temporary file.
    """
    counts: Counter = Counter()
    start = time.monotonic()
    rows = count_rows(input_path)
    config = replace(config, workers=max(1, min(config.workers, rows)))
    async with SandboxPool(config) as pool:
        progress = Progress("verify", total=rows,
                            render=lambda: " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        with _open_output(output_path) as out:

            def sink(verdict: Verdict) -> None:
                out.write(orjson.dumps(verdict_row(verdict)) + b"\n")
                out.flush()
                counts[verdict.status] += 1
                progress.update(1)

            # A few rows per worker keep every worker busy while output stays in order.
            await verify_stream(pool, iter_lines(input_path), options, config.workers * 4, sink)
        progress.close()
    elapsed = time.monotonic() - start
    counts["_elapsed"] = elapsed  # type: ignore[assignment]
    counts["_workers"] = config.workers
    return counts
