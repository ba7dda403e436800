"""Python API for embedding the pipeline in larger data jobs.

    pipeline = Pipeline(backend=make_backend("openai", base_url=..., model=...))
    async for row in pipeline.run(questions):      # dicts with 'question' (+ 'question_id', 'subset')
        ...                                        # KodCode-V1 rows as they finish
    stats = await pipeline.run_to("runs/x", "questions.jsonl")   # files + resume, like the CLI
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable

from kodcode_async.engine import Engine, aiter_items
from kodcode_async.journal import Journal
from kodcode_async.pipeline import RunConfig, build_flow, merge_sft, question_from_row, run_solve
from kodcode_async.stages.base import Question
from kodcode_async.stages.sft import SFTOptions
from kodcode_async.stages.solutions import SolveOptions
from sandbox.pool import SandboxConfig, SandboxPool

_END = object()


class Pipeline:
    def __init__(self, backend, *, solve: SolveOptions | None = None, sandbox: SandboxConfig | None = None,  # noqa: ANN001
                 workers: int = 128, style: bool = False, sft: SFTOptions | None = None, sft_backend=None,  # noqa: ANN001
                 journal_path: str | None = None) -> None:
        self.backend = backend
        self.sft_backend = sft_backend
        self.journal_path = journal_path
        self.config = RunConfig(input_path="", out_dir="", workers=workers, solve=solve or SolveOptions(),
                                sandbox=sandbox or SandboxConfig(), style=style, sft=sft)

    async def run(self, items: Iterable[dict] | AsyncIterable[dict]) -> AsyncIterator[dict]:
        """Yield one row per question as soon as it is finished (any order).

        Rows carry the same columns as verified.jsonl / failed.jsonl, plus `complete_row` and
        `sft_conversation` when those stages ran. Answers and verdicts are journaled in
        `journal_path` (a temporary file when not given), so a re-run with the same journal
        does not ask the model again.
        """
        queue: asyncio.Queue = asyncio.Queue(maxsize=64)  # the consumer's pace holds the engine back
        with tempfile.TemporaryDirectory(prefix="kodcode-api-") as tmp:
            journal = Journal(self.journal_path or f"{tmp}/journal.sqlite")

            async def questions() -> AsyncIterator[Question]:
                n = 0
                async for row in aiter_items(items):
                    n += 1
                    try:
                        yield question_from_row(row, n)
                    except ValueError as e:
                        raise ValueError(f"item {n}: {e}: {row!r:.200}") from None

            async def sink(q: Question) -> None:
                merge_sft(q, self.config)
                row = dict(q.row or {})
                if q.complete_row is not None:
                    row["complete_row"] = q.complete_row
                if q.style_rejection is not None:
                    row["style_rejection"] = q.style_rejection["reason"]
                await queue.put(row)

            async def produce() -> None:
                try:
                    async with SandboxPool(self.config.sandbox) as pool:
                        flow = build_flow(self.config, self.backend, self.sft_backend, pool, journal)
                        engine = Engine(flow, llm_workers=getattr(self.backend, "max_in_flight", self.config.workers),
                                        verify_workers=pool.size)
                        await engine.run(questions(), sink)
                finally:
                    await queue.put(_END)

            task = asyncio.create_task(produce())  # owned here: awaited or cancelled below
            try:
                while (row := await queue.get()) is not _END:
                    yield row
                await task
            finally:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                journal.close()

    async def run_to(self, out_dir: str, input_path: str) -> dict:
        """Run (or resume) into a run directory, exactly as `kodcode-async run` does; returns stats."""
        config = RunConfig(input_path=input_path, out_dir=out_dir, workers=self.config.workers,
                           solve=self.config.solve, sandbox=self.config.sandbox, style=self.config.style,
                           sft=self.config.sft)
        return await run_solve(config, self.backend, sft_backend=self.sft_backend)
