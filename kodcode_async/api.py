"""Python API for embedding the pipeline in larger data jobs.

    pipeline = Pipeline(backend, solve=SolveOptions(attempts=3), style=True)
    async for row in pipeline.run(questions):           # dicts with 'question' (+ 'question_id', 'subset')
        ...                                             # KodCode-V1 rows as they finish
    report = await pipeline.run_to("runs/x", "questions.jsonl")   # files + resume, like the CLI

    # questions made from seeds first (SynthOptions: subsets, seed files, dedup, decontamination)
    pipeline = Pipeline(backend, synth=SynthOptions(("leetcode",), (SeedSource("leetcode", "lc.jsonl"),)))
    async for row in pipeline.run():                    # verified rows of the generated questions
        ...

Both go through `kodcode_async.run.execute`, the function behind `kodcode-async run`: the same
stages, journal, run directory and resume rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import replace

from kodcode_async.backends import Backend
from kodcode_async.options import DEFAULTS
from kodcode_async.run import RunConfig, RunReport, execute
from kodcode_async.stages.base import Item
from kodcode_async.stages.sft import SFTOptions, SFTStage
from kodcode_async.stages.solutions import SolveOptions
from kodcode_async.stages.style import StyleStage
from kodcode_async.subsets import SynthOptions
from sandbox.pool import SandboxConfig

_END = object()


class RunUnfinished(RuntimeError):
    """Some items could not be finished (their LLM requests failed for good); run again to resume."""

    def __init__(self, report: RunReport) -> None:
        reasons = ", ".join(f"{k} {v}" for k, v in report.unfinished.items())
        super().__init__(f"{sum(report.unfinished.values())} items unfinished ({reasons}); run again with the same "
                         "run directory to resume them")
        self.report = report


class Pipeline:
    def __init__(self, backend: Backend, *, solve: SolveOptions | None = None, sandbox: SandboxConfig | None = None,
                 workers: int = DEFAULTS["workers"], style: bool = False, sft: SFTOptions | None = None,
                 sft_backend: Backend | None = None, sft_model_name: str = "", synth: SynthOptions | None = None,
                 stop_after: str | None = None) -> None:
        self.backend = backend
        self.sft_backend = sft_backend
        self.config = RunConfig(input_path="", out_dir="", workers=workers, solve=solve or SolveOptions(),
                                sandbox=sandbox or SandboxConfig(), style=style, sft=sft,
                                sft_model_name=sft_model_name, synth=synth, stop_after=stop_after)

    async def run(self, items: Iterable[dict] | AsyncIterable[dict] | None = None,
                  run_dir: str | None = None) -> AsyncIterator[dict]:
        """Yield one row per finished question as soon as it is finished (any order).

        `items` are question rows; with `synth` the questions are made from its seeds instead
        (leave `items` None). With stop_after="questions" the rows are the question rows.

        Rows carry the columns of verified.jsonl / failed.jsonl, plus `complete_row`,
        `style_rejection` and `sft_conversation` when those stages produced them. The run is
        recorded in `run_dir` (a temporary directory when not given), so a re-run with the same
        directory asks nothing twice and yields only what was not finished before. Bad rows are
        recorded in the report, never dropped silently; raises RunUnfinished at the end when
        some items are unfinished.
        """
        if items is None and self.config.synth is None:
            raise ValueError("Pipeline.run needs question rows, or synth=SynthOptions(...) to make them")
        queue: asyncio.Queue = asyncio.Queue(maxsize=64)  # the consumer's pace holds the engine back
        with tempfile.TemporaryDirectory(prefix="kodcode-api-") as tmp:
            config = replace(self.config, out_dir=run_dir or tmp)

            async def on_item(item: Item, file: str) -> None:
                row = dict(item.row)
                for side_file, side in item.side:
                    if side_file == StyleStage.accepted_file:
                        row["complete_row"] = side
                    elif side_file == StyleStage.rejected_file:
                        row["style_rejection"] = side["reason"]
                    elif side_file == SFTStage.conversations_file:
                        row["sft_conversation"] = side
                await queue.put(row)

            async def produce() -> RunReport:
                try:
                    return await execute(config, self.backend, sft_backend=self.sft_backend, items=items,
                                         on_item=on_item)
                finally:
                    await queue.put(_END)

            task = asyncio.create_task(produce())  # owned here: awaited or cancelled below
            try:
                while (row := await queue.get()) is not _END:
                    yield row
                report = await task
            finally:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if report.unfinished:
                raise RunUnfinished(report)

    async def run_to(self, out_dir: str, input_path: str = "", *, new_run: bool = False) -> RunReport:
        """Run (or resume) into a run directory, exactly as `kodcode-async run` does; returns its report."""
        return await execute(replace(self.config, input_path=input_path, out_dir=out_dir, new_run=new_run),
                             self.backend, sft_backend=self.sft_backend)
