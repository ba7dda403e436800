"""One run: the stage list built from config, the chain run over a run directory, the run report.

`execute` is the only way a run is started: the CLI and the Python API both call it, so no
option is wired twice. A run is the list of stages in `kodcode_async.stages.PLANS` that the config
turns on (each stage's plan says when, what it builds and what shapes its rows), cut to `start_at`..`stop_after`; the rows of its last stage go to that stage's output file, so a
run that stops early leaves rows the next stage can be started from.

An item is finished when its row is in the final output file or in a stage's drop file (e.g.
failed.jsonl); that row is written after the item's side rows (completion-style rows, SFT
conversations), so a resumed run redoes exactly the unfinished items, and their answers and
verdicts come from the journal.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec
import orjson

from kodcode_async.backends import Backend, LLMRequestError
from kodcode_async.engine import Chain, Dropped, aiter_items
from kodcode_async.idset import IdSet
from kodcode_async.journal import Journal
from kodcode_async.jsonl import count_rows, iter_lines
from kodcode_async.options import DEFAULTS
from kodcode_async.prompts import DEFAULT as DEFAULT_PROMPTS
from kodcode_async.prompts import PromptError, Prompts
from kodcode_async.resources import Limiter, LLMClient, SandboxClient
from kodcode_async.rundir import JOURNAL, RunDir
from kodcode_async.seeds import Seed, load_seeds
from kodcode_async.stages import plans
from kodcode_async.stages.base import BadRow, Item, RunStage, StageClients
from kodcode_async.stages.sft import SFTOptions, SFTStage
from kodcode_async.stages.solutions import SolveOptions
from kodcode_async.stages.style import StyleStage
from kodcode_async.stats import (
    EmbedderCounts,
    LLMCounts,
    PassAtK,
    QuestionCounts,
    SandboxCounts,
    Snapshot,
    StageCounts,
    Stats,
    Timeline,
    TimelineSample,
    add,
    add_stages,
)
from kodcode_async.subsets import SUBSETS, SynthOptions, prompt_rows
from sandbox.pool import SandboxConfig, SandboxPool

if TYPE_CHECKING:  # the embedding stack (numpy, and torch when it loads) is imported only by runs that embed
    from kodcode_async.embedder import Embedder

log = logging.getLogger("kodcode_async.run")

# "questions" is a group of chain stages (generate, filter, decontamination, dedup) whose rows go
# to questions.jsonl; "tags" labels questions (made here or read from --input) before they are solved.
TAGS = ("quality", "category", "judge")
CHECKPOINT_S = 30.0  # how often a running pipeline rewrites stats.json


@dataclass(frozen=True, slots=True)
class RunConfig:
    input_path: str
    out_dir: str
    workers: int = DEFAULTS["workers"]
    solve: SolveOptions = field(default_factory=SolveOptions)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    style: bool = False  # convert verified questions to completion style
    sft: SFTOptions | None = None  # reasoning-model answers with reject sampling; None = off
    sft_model_name: str = ""
    start_at: str | None = None  # a stage name; None = the first stage that is on
    stop_after: str | None = None  # a stage name; None = the last stage that is on
    new_run: bool = False  # a directory of another configuration: move its files aside and start again
    prompts: Prompts = DEFAULT_PROMPTS  # the stages' templates (--prompts DIR)
    limit: int | None = None  # only the first N input rows (--limit)
    synth: SynthOptions | None = None  # question synthesis from seeds (--subsets); None = questions come as input
    tags: tuple[str, ...] = ()  # LLM labels on every question (--tag quality,category,judge)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        for tag in self.tags:
            if tag not in TAGS:
                raise ValueError(f"--tag {tag}: unknown tag; known: {', '.join(TAGS)}")
        self.stage_names()  # validates start_at / stop_after
        o = self.synth
        if o is not None and any(SUBSETS[s].method == "prefill" for s in o.subsets) \
                and o.prefill_template not in self.prompts.prefill:
            raise PromptError(f"--prefill-template {o.prefill_template}: no such template; known: "
                              f"{', '.join(sorted(self.prompts.prefill))} (add one as --prompts DIR/prefill/NAME.toml, "
                              "or give a path to NAME.toml)")

    @property
    def makes_questions(self) -> SynthOptions | None:
        """The synthesis options when this run starts by making questions, else None."""
        return self.synth if self.stage_names()[0] == "questions" else None

    def stage_names(self) -> list[str]:
        """The stages of this run, in order."""
        every = plans()
        on = [p.name for p in every if p.turned_on(self)]
        for flag, name in (("--start-at", self.start_at), ("--stop-after", self.stop_after)):
            if name is not None and name not in on:
                hint = next((f" (turn it on with {p.how_to_turn_on})" for p in every if p.name == name), "")
                raise ValueError(f"{flag} {name}: not a stage of this run; its stages are {', '.join(on)}{hint}")
        first = on.index(self.start_at) if self.start_at else 0
        last = on.index(self.stop_after) if self.stop_after else len(on) - 1
        if first > last:
            raise ValueError(f"--start-at {self.start_at} comes after --stop-after {self.stop_after}")
        return on[first:last + 1]


def fingerprint(config: RunConfig) -> dict:
    """What shapes the rows of a run directory (not how fast they come: workers, isolation): each
    stage's own part (its plan's), and the sandbox's limits and rules."""
    names = config.stage_names()
    s = config.solve
    fp: dict = {"stages": names}
    for plan in plans():
        if plan.name in names:
            fp[plan.name] = plan.fingerprint(config)
    fp["sandbox"] = {"limits": msgspec.to_builtins(s.limits), "flaky_reruns": config.sandbox.flaky_reruns,
                     "blocked_imports": list(config.sandbox.blocked_imports)}
    if config.sandbox.strict_compare:  # only when on: run directories made before it existed still match
        fp["sandbox"]["strict_compare"] = True
    return fp


class RunStats:
    """Dataset totals for stats.json: constant memory however many questions pass through."""

    def __init__(self, max_k: int) -> None:
        self.max_k = max_k
        self.questions = 0
        self.verified = 0
        self.per_subset: dict[str, list[int]] = {}  # subset -> [questions, passed within 1..max_k attempts]
        self.difficulty: Counter = Counter()
        self.failure_reasons: Counter = Counter()

    def add(self, row: dict) -> None:
        seq = row.get("gpt_pass_sequence")
        if not isinstance(seq, list):
            return
        self.questions += 1
        self.verified += row["gpt_pass_trial_num"] > 0
        counts = self.per_subset.setdefault(row["subset"], [0] * (self.max_k + 1))
        counts[0] += 1
        for k in range(1, self.max_k + 1):
            counts[k] += any(seq[:k])
        self.difficulty[row["gpt_difficulty"]] += 1
        self.failure_reasons.update(t["status"] for t in row["trials"].values() if t["test_result"] != "Pass")

    def pass_at_k(self) -> dict[str, dict[str, PassAtK]]:
        return {subset: {str(k): PassAtK(c[k], round(c[k] / c[0], 4)) for k in range(1, self.max_k + 1)}
                for subset, c in sorted(self.per_subset.items())}



@dataclass(slots=True)
class RunReport:
    """Everything stats.json says about a run; `stats()` is its on-disk form."""

    dataset: RunStats
    stages: list[StageCounts] = field(default_factory=list)
    timeline: list[TimelineSample] = field(default_factory=list)
    rejected_rows: list[dict] = field(default_factory=list)
    resumed_items: int = 0
    unfinished: Counter = field(default_factory=Counter)  # reason -> items left for a resumed run
    unfinished_examples: list[dict] = field(default_factory=list)
    files: Counter = field(default_factory=Counter)  # rows written this run, per file
    existing: Counter = field(default_factory=Counter)  # rows found from earlier runs, per file
    llm: LLMCounts = field(default_factory=LLMCounts)
    sandbox: SandboxCounts = field(default_factory=SandboxCounts)
    questions: QuestionCounts = field(default_factory=QuestionCounts)  # synthesis and tags (RunStage.stats)
    item_files: list[str] = field(default_factory=list)  # the files whose rows mark an item finished
    wall_s: float = 0.0
    complete: bool = False
    model: str = ""

    def total(self, name: str) -> int:
        return self.files[name] + self.existing[name]

    def merge(self, other: RunReport) -> None:
        """Add what another run of the same configuration did (a shard's run): its counters, the rows
        it wrote, what it left unfinished, the rows it rejected. The dataset, the files found from
        earlier runs, the timeline and the wall time are the merger's own to set."""
        add_stages(self.stages, other.stages)
        add(self.llm, other.llm)
        add(self.sandbox, other.sandbox)
        self.files.update(other.files)
        self.unfinished.update(other.unfinished)
        self.unfinished_examples += other.unfinished_examples[:20 - len(self.unfinished_examples)]
        self.rejected_rows = sorted(self.rejected_rows + other.rejected_rows, key=lambda r: r.get("line", 0))
        self.resumed_items += other.resumed_items
        add(self.questions, other.questions)

    def stats(self) -> Stats:
        llm, sandbox, data = self.llm, self.sandbox, self.dataset
        return Stats(
            questions=data.questions, verified=data.verified, pass_at_k=data.pass_at_k(),
            difficulty=dict(data.difficulty), failure_reasons=dict(data.failure_reasons), complete=self.complete,
            unfinished=dict(self.unfinished), unfinished_examples=self.unfinished_examples,
            rejected_rows=self.rejected_rows, resumed_questions=self.resumed_items,
            llm_requests_this_run=llm.requests, llm_replayed_this_run=llm.replayed, llm_errors_this_run=llm.errors,
            parse_errors_this_run=llm.parse_errors, sandbox_jobs_this_run=sandbox.jobs,
            sandbox_replayed_this_run=sandbox.replayed, journal_hits_this_run=llm.replayed + sandbox.replayed,
            sandbox_isolation=sandbox.isolation, flaky_trials=data.failure_reasons.get("flaky", 0),
            flaky_trials_this_run=sandbox.flaky, model=self.model, wall_s_this_run=round(self.wall_s, 3),
            style_converted=self.total(StyleStage.accepted_file), style_rejected=self.total(StyleStage.rejected_file),
            style_rejected_by_check=llm.style_checks, sft_conversations=self.total(SFTStage.conversations_file),
            files_this_run=dict(self.files), item_files=self.item_files, stages=self.stages, timeline=self.timeline,
            question_synthesis=self.questions, llm=llm, sandbox=sandbox)

    def as_dict(self) -> dict:
        """stats.json as written."""
        return self.stats().to_json()


def shard_of(item_id: str, shards: int) -> int:
    """The shard an item belongs to: stable across runs and machines (not Python's salted hash)."""
    return zlib.crc32(item_id.encode()) % shards


def read_items(source: str | Iterable[dict] | AsyncIterable[dict], read_item: Callable[[object, int], Item],
               skip: Container[str], rejected: list[dict], limit: int | None = None,
               shard: tuple[int, int] | None = None):  # noqa: ANN201 - async iterator
    """Items from a JSONL path or from rows (the first `limit` rows when given); bad rows go to
    `rejected` with a reason (never silently).

    With `shard` (k, n), only the items of shard k of n (`shard_of`): every shard reads the whole
    source, so duplicate ids meet in one shard and are rejected there as in an unsharded run, and
    rows without an id (bad rows) are recorded by shard 0 alone. The ids met are kept in an
    IdSet (on disk), so reading ~450k rows does not grow the run's memory."""
    mine, keep_bad = (lambda _: True), True
    if shard is not None:
        k, n = shard
        mine, keep_bad = (lambda item_id: shard_of(item_id, n) == k), k == 0

    async def rows() -> AsyncIterable[tuple[int, object]]:
        if isinstance(source, str):
            for n, (lineno, line) in enumerate(iter_lines(source)):
                if limit is not None and n >= limit:
                    return
                try:
                    yield lineno, orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    if keep_bad:
                        rejected.append({"line": lineno, "reason": f"invalid JSON: {e}"})
        else:
            n = 0
            async for row in aiter_items(source):
                if limit is not None and n >= limit:
                    return
                n += 1
                yield n, row

    async def items() -> AsyncIterable[Item]:
        seen = IdSet()
        async for lineno, row in rows():
            try:
                item = read_item(row, lineno)
            except BadRow as e:
                if keep_bad:
                    rejected.append({"line": lineno, "reason": str(e)})
                continue
            if not mine(item.id):
                continue
            if not seen.add(item.id):
                rejected.append({"line": lineno, "question_id": item.id, "reason": "duplicate question_id"})
                continue
            if item.id not in skip:
                yield item

    return items()


def build_stages(config: RunConfig, clients: StageClients) -> list[RunStage]:
    """The run's chain stages, in order: each stage that is on builds its own (questions: a group)."""
    names = config.stage_names()
    return [stage for plan in plans() if plan.name in names for stage in plan.build(config, clients)]


def load_all_seeds(o: SynthOptions) -> tuple[dict[str, list[Seed]], list[dict]]:
    """Every subset's seeds, and the seed rows rejected with a reason. Raises SeedError."""
    seeds: dict[str, list[Seed]] = {}
    rejected: list[dict] = []
    for source in o.seeds:
        got, bad = load_seeds(source, SUBSETS[source.subset].method)
        seeds[source.subset] = got
        rejected += bad
    return seeds, rejected


Progress = Callable[[Snapshot], None]


async def execute(config: RunConfig, backend: Backend, *, sft_backend: Backend | None = None,
                  items: Iterable[dict] | AsyncIterable[dict] | None = None,
                  on_progress: Progress | None = None,
                  on_item: Callable[[Item, str], Awaitable[None]] | None = None,
                  pool: SandboxPool | None = None, shard: tuple[int, int] | None = None) -> RunReport:
    """Run (or resume) `config` into its run directory; returns the report also written to stats.json.

    Rows come from `items` when given, else from `config.input_path`. `on_item(item, file)` sees
    each finished item with the file its row went to. `pool` replaces the run's own sandbox pool
    (an executor's: it is then started and closed by its owner, not here); `shard` (k, n) runs
    only shard k of the items (`read_items`). Before anything is written: raises
    SandboxUnavailable when isolation cannot be set up, RunDirMismatch when the directory belongs
    to another configuration. Later, SandboxUnavailable and BackendDead arrive inside an
    ExceptionGroup when the run cannot go on at all. Items whose LLM request failed for good are
    left unfinished: counted in `report.unfinished`, never written.
    """
    names = config.stage_names()
    seeds: dict[str, list[Seed]] = {}
    seed_rejects: list[dict] = []
    synth = config.makes_questions
    if synth is not None:  # bad seed files and benchmarks are refused before anything is created
        seeds, seed_rejects = load_all_seeds(synth)
        if synth.decontam_threshold is not None:
            from kodcode_async.stages.decontam import load_benchmarks

            load_benchmarks(synth.benchmarks)
    own_pool = pool is None
    pool = SandboxPool(config.sandbox) if pool is None else pool
    needs_sandbox = any(n in ("solutions", "style", "sft") for n in names)
    if needs_sandbox:
        pool.check_isolation()  # no isolation, no run: refused before anything is created
    run_dir = RunDir(config.out_dir)
    run_dir.claim(fingerprint(config), config.new_run)
    run = _Run(config, run_dir, backend, sft_backend, pool, on_progress, on_item, shard)
    run.report.rejected_rows.extend(seed_rejects)
    try:
        async with asyncio.TaskGroup() as tg:
            # The workers warm up while the first LLM requests are out; jobs wait for them.
            starting = tg.create_task(pool.start() if needs_sandbox and own_pool else asyncio.sleep(0))
            try:
                source = (prompt_rows(synth, seeds) if synth is not None and items is None
                          else items if items is not None else config.input_path)
                await run.run(source, starting)
                # A run answered from the journal ends before the workers are warm: let them finish
                # starting and close them normally; cancelling a start half-way is for interrupts.
                await asyncio.wait([starting])
            finally:
                if not starting.done():
                    starting.cancel()
                if own_pool:
                    await pool.close()
                if run.embedder is not None:
                    await run.embedder.close()
    finally:
        await run_dir.close()
        run.journal.close()
    report = run.report
    report.complete = not report.unfinished
    run_dir.write_stats(report.as_dict())
    run_dir.write_manifest(report.complete, sum(report.unfinished.values()))
    return report


class _Run:
    """The state of one execute(): clients, stages, the chain and what has been written."""

    def __init__(self, config: RunConfig, run_dir: RunDir, backend: Backend, sft_backend: Backend | None,
                 pool: SandboxPool, on_progress: Progress | None,
                 on_item: Callable[[Item, str], Awaitable[None]] | None,
                 shard: tuple[int, int] | None = None) -> None:
        self.started = time.monotonic()
        self.shard = shard
        self.config, self.run_dir, self.pool = config, run_dir, pool
        self.on_progress, self.on_item = on_progress, on_item
        self.report = RunReport(RunStats(config.solve.max_attempts), model=config.solve.model_name)
        self.journal = Journal(run_dir.file(JOURNAL))
        self.limiter = Limiter(getattr(backend, "max_in_flight", config.workers))
        self.llm = LLMClient(backend, self.journal, self.limiter, config.solve.model_name)
        separate = sft_backend is not None or config.sft_model_name not in ("", config.solve.model_name)
        self.sft_llm = LLMClient(sft_backend or backend, self.journal, self.limiter,
                                 config.sft_model_name) if separate else self.llm
        self.side_done: dict[str, IdSet] = {}
        self.finished = IdSet()  # items whose row an earlier run wrote (_recover fills it)
        self.total: int | None = None
        self.last_checkpoint = time.monotonic()
        synth = config.makes_questions
        self.embedder: Embedder | None = None
        if synth is not None and synth.embeds:
            from kodcode_async.embedder import Embedder

            self.embedder = Embedder(synth.embedding_model, self.journal)

    async def run(self, source: str | Iterable[dict] | AsyncIterable[dict], starting: asyncio.Future) -> None:
        self.sandbox = SandboxClient(self.pool, self.journal, starting)
        # Items per stage: enough that every LLM slot can be busy, and every sandbox worker.
        clients = StageClients(self.llm, self.sft_llm, self.sandbox, max(self.limiter.limit, self.pool.size * 2),
                               embedder=self.embedder, journal=self.journal, done=self.finished)
        self.stages = build_stages(self.config, clients)
        self.chain = Chain(self.stages, item_errors=(LLMRequestError,))
        self.final_file = self.stages[-1].output
        self.drop_files = {s.name: s.drop_file for s in self.stages if s.drop_file}
        done = self._recover()
        if self.embedder is not None:
            await self.embedder.start()  # the model loads in the embedder's thread, not on this loop
        for stage in self.stages:
            await stage.start()  # e.g. decontam embeds its benchmarks, dedup reloads its decisions
        if isinstance(source, str) and self.shard is None:  # a shard's share is known only once read
            rows = count_rows(source)
            self.total = max(0, min(rows, self.config.limit if self.config.limit is not None else rows) - len(done))
        self.timeline = Timeline()
        self.timeline.sample(self.snapshot())  # t = 0: where the run starts from
        log.info("run %s: stages %s, %s items to do, %d finished earlier, %d LLM requests in flight at most, "
                 "%d sandbox workers (%s)", self.run_dir.path, " -> ".join(s.name for s in self.stages),
                 "?" if self.total is None else self.total, len(done), self.limiter.limit, self.pool.size,
                 self.pool.isolation)
        # A synthesis run reads its prompts again (answers come from the journal) and skips the
        # finished questions after dedup (SkipFinished); other runs skip finished items at once.
        first = self.stages[0]
        items = read_items(source, first.read_item, set() if first.replays_finished else done,
                           self.report.rejected_rows, self.config.limit, self.shard)
        await self.chain.run(items, self.sink, on_drop=self.on_drop, on_unfinished=self.on_unfinished,
                             on_tick=self.on_tick, tick_s=0.5)
        snap = self.snapshot()
        self.timeline.sample(snap)
        if self.on_progress is not None:
            self.on_progress(snap)
        self._fill()
        r = self.report
        log.info("run %s: %d rows written this run %s, %d unfinished, %d LLM requests (%d replayed), "
                 "%d sandbox jobs (%d replayed), %.1f s", self.run_dir.path, sum(r.files.values()), dict(r.files),
                 sum(r.unfinished.values()), r.llm.requests, r.llm.replayed,
                 r.sandbox.jobs, r.sandbox.replayed, r.wall_s)

    def _recover(self) -> IdSet:
        """What earlier runs finished (their rows count in the totals, their ids go to
        `self.finished`) and which side rows exist."""
        report, run_dir = self.report, self.run_dir
        done = self.finished
        for name in sorted({self.final_file, *self.drop_files.values()}):
            before = len(done)
            run_dir.recover(name, into=done)
            report.existing[name] = len(done) - before  # an item's row is in one of these files
        self.side_done = {f: run_dir.recover(f) for s in self.stages for f in s.side_files}
        report.existing.update({f: len(ids) for f, ids in self.side_done.items()})
        for name in {self.final_file, *self.drop_files.values()}:
            for row in run_dir.rows(name):
                report.dataset.add(row)  # rows without a pass sequence are not counted
        report.resumed_items = len(done)
        report.item_files = sorted({self.final_file, *self.drop_files.values()})
        return done

    async def write_item(self, item: Item, name: str) -> None:
        """Side rows first (once per item), then the item's own row: that row marks it finished."""
        report = self.report
        if item.id in self.finished:  # a resumed synthesis run meets its rejected questions again
            return
        for side_name, row in item.side:
            if item.id not in self.side_done.get(side_name, ()):
                await self.run_dir.writer(side_name).write(row)
                report.files[side_name] += 1
        await self.run_dir.writer(name).write(item.row)
        report.files[name] += 1
        report.dataset.add(item.row)
        if self.on_item is not None:
            await self.on_item(item, name)

    async def sink(self, item: Item) -> None:
        await self.write_item(item, self.final_file)

    async def on_drop(self, stage: str, item: Item, dropped: Dropped) -> None:
        await self.write_item(item, self.drop_files[stage])

    def on_unfinished(self, stage: str, item: Item, error: BaseException) -> None:
        report = self.report
        report.unfinished[f"{stage}: {getattr(error, 'kind', type(error).__name__)}"] += 1
        if len(report.unfinished_examples) < 20:
            report.unfinished_examples.append({"question_id": item.id, "stage": stage, "error": str(error)})
        log.warning("%s: %s unfinished, left for a resumed run: %s", stage, item.id, error)

    def snapshot(self) -> Snapshot:
        """What the progress view shows."""
        finished = sum(self.report.files[f] for f in {self.final_file, *self.drop_files.values()})
        return Snapshot(elapsed_s=time.monotonic() - self.started, total=self.total, finished=finished,
                        stages=[s.counts() for s in self.chain.stats],
                        llm=_llm_stats([self.llm, self.sft_llm], stage_stats(self.stages)[1]),
                        sandbox=_sandbox_stats(self.sandbox),
                        unfinished=sum(self.report.unfinished.values()), isolation=self.pool.isolation)

    def on_tick(self) -> None:
        snap = self.snapshot()
        self.timeline.maybe_sample(snap)
        if self.on_progress is not None:
            self.on_progress(snap)
        if time.monotonic() - self.last_checkpoint > CHECKPOINT_S:
            self.last_checkpoint = time.monotonic()
            self._fill()
            stats = self.report.stats()
            stats.checkpoint = True
            self.run_dir.write_stats(stats.to_json())

    def _fill(self) -> None:
        report = self.report
        report.stages = [s.counts() for s in self.chain.stats]
        report.timeline = list(self.timeline.samples)
        questions, own_llm = stage_stats(self.stages)
        report.llm = _llm_stats([self.llm, self.sft_llm], own_llm)
        report.sandbox = _sandbox_stats(self.sandbox)
        report.sandbox.isolation = self.pool.isolation
        report.questions = question_stats(questions, self.embedder)
        report.wall_s = time.monotonic() - self.started


def stage_stats(stages: list[RunStage]) -> tuple[QuestionCounts, LLMCounts]:
    """Every stage's own counters (`RunStage.stats`), added up by report section."""
    sections = {"questions": QuestionCounts(), "llm": LLMCounts()}
    for stage in stages:
        for section, counts in stage.stats().items():
            add(sections[section], counts)
    return sections["questions"], sections["llm"]


def question_stats(out: QuestionCounts, embedder: Embedder | None) -> QuestionCounts:
    """Per subset: questions made, rejected by reason, filtered out, contaminated, duplicates,
    kept; the filter's categories; the tags' invalid answers. A resumed synthesis run sees every
    question again, so these are totals. `out` is the stages' own (`stage_stats`)."""
    if embedder is not None:
        out.embedder = EmbedderCounts(model=embedder.model_name, encoded=embedder.encoded,
                                      replayed=embedder.replayed, batches=embedder.batches)
    return out


def _llm_stats(clients: list[LLMClient], own: LLMCounts) -> LLMCounts:
    """The clients' counts, with the stages' own (parse errors, style checks)."""
    unique = list({id(c): c for c in clients}.values())
    errors: Counter = Counter()
    for c in unique:
        errors.update(c.errors)
    return LLMCounts(requests=sum(c.requests for c in unique), replayed=sum(c.replayed for c in unique),
                     errors=dict(errors), in_flight=unique[0].limiter.in_flight, limit=unique[0].limiter.limit,
                     completion_tokens=sum(c.completion_tokens for c in {id(c.backend): c for c in unique}.values()),
                     parse_errors=own.parse_errors, style_checks=own.style_checks)


def _sandbox_stats(sandbox: SandboxClient) -> SandboxCounts:
    return SandboxCounts(jobs=sandbox.jobs, replayed=sandbox.replayed, statuses=dict(sandbox.statuses),
                         busy=sandbox.busy, workers=sandbox.size, flaky=sandbox.pool.flaky,
                         restarts=getattr(sandbox.pool, "restarts", 0))
