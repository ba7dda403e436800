"""A run's figures as typed records (msgspec structs, as the sandbox protocol is): the per-stage
counts, the LLM's and the sandbox's, the live progress snapshot, the timeline, and stats.json.

One `add` sums two records of a kind (numbers add, counters merge, the first name stands): the
Ray driver merges its runners' snapshots and reports with it. One `Timeline` samples snapshots,
for a local run and for the Ray driver alike. `Stats` is the on-disk form of a run's report,
written by `run.RunReport.stats()` and read back by `read_stats` (`report` draws it)."""

from __future__ import annotations

import time

import msgspec
import orjson

TIMELINE_S = 2.0  # seconds between timeline samples (doubled whenever the timeline fills up)
TIMELINE_MAX = 1000  # samples kept: a week-long run keeps a timeline of the same size


class StageCounts(msgspec.Struct, kw_only=True):
    """One chain stage (engine.StageStats): items in, out, dropped and unfinished by reason."""

    name: str
    kind: str = ""
    concurrency: int = 0
    items_in: int = 0
    items_out: int = 0
    dropped: dict[str, int] = {}
    unfinished: dict[str, int] = {}
    in_flight: int = 0
    busy_s: float = 0.0

    @property
    def done(self) -> int:
        """Items that left the stage: passed on or dropped."""
        return self.items_out + sum(self.dropped.values())


class LLMCounts(msgspec.Struct, kw_only=True):
    requests: int = 0  # sent this run (answers from the journal are `replayed`)
    replayed: int = 0
    errors: dict[str, int] = {}  # kind -> requests that failed for good
    in_flight: int = 0
    limit: int = 0
    completion_tokens: int = 0
    parse_errors: int = 0  # answers the solve stage could not parse
    style_checks: dict[str, int] = {}  # completion-style rows rejected, by failed check


class SandboxCounts(msgspec.Struct, kw_only=True):
    jobs: int = 0
    replayed: int = 0
    statuses: dict[str, int] = {}
    busy: int = 0
    workers: int = 0
    flaky: int = 0
    restarts: int = 0
    isolation: str = ""


class Snapshot(msgspec.Struct, kw_only=True):
    """What the live view shows; a Ray runner sends its own to the driver."""

    elapsed_s: float = 0.0
    total: int | None = None  # items to do, when known
    finished: int = 0
    stages: list[StageCounts] = []
    llm: LLMCounts = msgspec.field(default_factory=LLMCounts)
    sandbox: SandboxCounts = msgspec.field(default_factory=SandboxCounts)
    unfinished: int = 0
    isolation: str = ""
    ray_namespace: str = ""  # a Ray run's: where its actors are found


class SubsetCounts(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Question synthesis, one subset: from answers to kept questions. A count is there (not None)
    when the stage that counts it ran."""

    questions: int | None = None  # made from the model's answers
    rejected: dict[str, int] | None = None  # answers with no usable question, by reason
    filtered_out: int | None = None  # by the filter subset's classifier
    contaminated: int | None = None  # too close to a benchmark question
    duplicates: int | None = None  # too close to an earlier question
    kept: int | None = None  # through every question stage


class FilterCounts(msgspec.Struct, kw_only=True):
    categories: dict[str, int] = {}  # questions classified, by category
    invalid_answers: int = 0
    keep: list[str] = []


class TagCounts(msgspec.Struct, kw_only=True):
    invalid_answers: int = 0  # answers that were not the JSON asked for (stored as errors)


class EmbedderCounts(msgspec.Struct, kw_only=True):
    model: str = ""
    encoded: int = 0
    replayed: int = 0
    batches: int = 0


class QuestionCounts(msgspec.Struct, kw_only=True, omit_defaults=True):
    """stats.json's question_synthesis: what the question stages and tags report (each its part,
    `RunStage.stats`); a section is there (not None) only when its stage ran."""

    per_subset: dict[str, SubsetCounts] | None = None
    filter: FilterCounts | None = None
    contaminated: dict[str, int] | None = None  # benchmark task id -> questions dropped
    dedup_batches: int | None = None
    finished_earlier: int | None = None  # questions an earlier run finished (a resumed synthesis run)
    tags: dict[str, TagCounts] | None = None
    embedder: EmbedderCounts | None = None


class TimelineSample(msgspec.Struct, kw_only=True):
    t: float
    llm_in_flight: int = 0
    llm_limit: int = 0
    sandbox_busy: int = 0
    sandbox_workers: int = 0
    cpu_pct: float = 0.0
    items_per_s: dict[str, float] = {}


class PassAtK(msgspec.Struct):
    questions: int
    rate: float


class Stats(msgspec.Struct, kw_only=True):
    """stats.json. Every field has a default, so the stats of an older or unfinished run read too."""

    questions: int = 0
    verified: int = 0
    pass_at_k: dict[str, dict[str, PassAtK]] = {}
    difficulty: dict[str, int] = {}
    failure_reasons: dict[str, int] = {}
    complete: bool = False
    checkpoint: bool = False  # written while the run goes on
    unfinished: dict[str, int] = {}
    unfinished_examples: list[dict] = []
    rejected_rows: list[dict] = []
    resumed_questions: int = 0
    llm_requests_this_run: int = 0
    llm_replayed_this_run: int = 0
    llm_errors_this_run: dict[str, int] = {}
    parse_errors_this_run: int = 0
    sandbox_jobs_this_run: int = 0
    sandbox_replayed_this_run: int = 0
    journal_hits_this_run: int = 0
    sandbox_isolation: str = ""
    flaky_trials: int = 0
    flaky_trials_this_run: int = 0
    model: str = ""
    wall_s_this_run: float = 0.0
    style_converted: int = 0
    style_rejected: int = 0
    style_rejected_by_check: dict[str, int] = {}
    sft_conversations: int = 0
    files_this_run: dict[str, int] = {}
    item_files: list[str] = []
    stages: list[StageCounts] = []
    timeline: list[TimelineSample] = []
    question_synthesis: QuestionCounts = msgspec.field(default_factory=QuestionCounts)
    llm: LLMCounts = msgspec.field(default_factory=LLMCounts)
    sandbox: SandboxCounts = msgspec.field(default_factory=SandboxCounts)
    executor: dict = {}  # a Ray run's: shards, nodes, pools, restarts

    def to_json(self) -> dict:
        """The on-disk form: question_synthesis, checkpoint and executor only where they say something."""
        out = msgspec.to_builtins(self)
        for key in ("question_synthesis", "checkpoint", "executor"):
            if not out[key]:
                del out[key]
        return out


def read_stats(data: bytes) -> Stats:
    """stats.json's bytes as Stats. Raises ValueError when they are not a run's stats."""
    try:
        return msgspec.convert(orjson.loads(data), Stats)
    except (orjson.JSONDecodeError, msgspec.ValidationError) as e:
        raise ValueError(f"not a run's stats: {e}") from None


def add_counts(into: dict, more: dict) -> None:
    """Add `more` into `into`: numbers add up, nested counters merge, flags hold when both do,
    lists and strings keep the first seen."""
    for k, v in more.items():
        if isinstance(v, bool):
            into[k] = into.get(k, True) and v
        elif isinstance(v, (int, float)):
            into[k] = round(into.get(k, 0) + v, 3)
        elif isinstance(v, dict):
            add_counts(into.setdefault(k, {}), v)
        elif isinstance(v, list) and k not in into:
            into[k] = list(v)
        elif k not in into:
            into[k] = v


def add(into: msgspec.Struct, more: msgspec.Struct) -> None:
    """Add the record `more` into `into`, of the same kind: numbers add up, counters merge (records
    in them add up by key), a name, a list or a record already set stands; one not set yet is
    taken (a copy)."""
    for name in into.__struct_fields__:
        mine, theirs = getattr(into, name), getattr(more, name)
        if theirs is None:
            continue
        if isinstance(mine, (int, float)) and isinstance(theirs, (int, float)):
            setattr(into, name, round(mine + theirs, 3))
        elif isinstance(mine, dict):
            for key, value in theirs.items():
                if isinstance(value, msgspec.Struct):
                    if key in mine:
                        add(mine[key], value)
                    else:
                        mine[key] = _copy(value)
                else:
                    add_counts(mine, {key: value})
        elif isinstance(mine, msgspec.Struct):
            add(mine, theirs)
        elif not mine:
            setattr(into, name, _copy(theirs))


def _copy(value: object) -> object:
    """A deep copy of a record (so that adding to it never changes the one it came from)."""
    if isinstance(value, msgspec.Struct):
        return msgspec.convert(msgspec.to_builtins(value), type(value))
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return [_copy(v) for v in value] if isinstance(value, list) else value


def add_stages(into: list[StageCounts], more: list[StageCounts]) -> None:
    """Per-stage counts added by stage name; a stage met first in `more` is added at the end."""
    by_name = {s.name: s for s in into}
    for s in more:
        if s.name in by_name:
            add(by_name[s.name], s)
        else:
            by_name[s.name] = _copy(s)
            into.append(by_name[s.name])


class Timeline:
    """Samples of snapshots every TIMELINE_S seconds: LLM requests in flight against the limit,
    sandbox workers busy, items/s out of each stage, and the host's CPU utilisation (psutil)."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self.samples: list[TimelineSample] = []
        self.every = TIMELINE_S
        self.started = self._last = time.monotonic()
        self._done: dict[str, int] = {}
        psutil.cpu_percent(None)  # the first call only starts the measurement

    def maybe_sample(self, snap: Snapshot) -> None:
        if not self.samples or time.monotonic() - self._last >= self.every:
            self.sample(snap)

    def sample(self, snap: Snapshot) -> None:
        now = time.monotonic()
        span = max(1e-9, now - self._last)
        done = {s.name: s.done for s in snap.stages}
        self.samples.append(TimelineSample(
            t=round(now - self.started, 2), llm_in_flight=snap.llm.in_flight, llm_limit=snap.llm.limit,
            sandbox_busy=snap.sandbox.busy, sandbox_workers=snap.sandbox.workers,
            cpu_pct=self._psutil.cpu_percent(None),
            items_per_s={k: round((v - self._done.get(k, 0)) / span, 2) for k, v in done.items()}))
        self._done, self._last = done, now
        if len(self.samples) > TIMELINE_MAX:  # keep every other sample, sample half as often
            self.samples = self.samples[::2]
            self.every *= 2
