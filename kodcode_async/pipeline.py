"""The solve-and-verify pipeline wired onto the engine: input rows in, KodCode-V1 rows out."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from kodcode_async.engine import Engine, EngineStats
from kodcode_async.flow import DatasetFlow
from kodcode_async.journal import Journal
from kodcode_async.jsonl import count_rows, iter_lines
from kodcode_async.stages.base import Question, Unit
from kodcode_async.stages.sft import SFTOptions, SFTStage, sharegpt
from kodcode_async.stages.solutions import SolveOptions, SolveStage
from kodcode_async.stages.style import StyleStage
from kodcode_async.writers import JsonlWriter, recover_jsonl, write_json_atomic
from sandbox.pool import SandboxConfig, SandboxPool

# Output files of a run directory.
VERIFIED, FAILED, COMPLETE, STYLE_REJECTED, SFT = (
    "verified.jsonl", "failed.jsonl", "verified_complete.jsonl", "style_rejected.jsonl", "sft.jsonl")


@dataclass(frozen=True, slots=True)
class RunConfig:
    input_path: str
    out_dir: str
    workers: int = 128
    solve: SolveOptions = field(default_factory=SolveOptions)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    style: bool = False  # convert verified questions to completion style
    sft: SFTOptions | None = None  # reasoning-model answers with reject sampling; None = off
    sft_model_name: str = ""


def question_from_row(row: object, lineno: int) -> Question:
    """A Question from one input row; ValueError with the reason when the row cannot be one."""
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip():
        raise ValueError("row has no non-empty string 'question'")
    qid = str(row.get("question_id") or row.get("id") or f"q{lineno:06d}")
    extra = {k: v for k, v in row.items() if k not in ("question", "question_id", "id", "subset")}
    return Question(question_id=qid, question=row["question"], subset=str(row.get("subset") or "default"),
                    extra=extra)


def read_questions(path: str, skip: set[str], rejected: list[dict]) -> Iterator[Question]:
    """Questions from JSONL; bad rows go to `rejected` with a reason (never silently dropped)."""
    seen: set[str] = set()
    for lineno, line in iter_lines(path):
        try:
            q = question_from_row(orjson.loads(line), lineno)
        except orjson.JSONDecodeError as e:
            rejected.append({"line": lineno, "reason": f"invalid JSON: {e}"})
            continue
        except ValueError as e:
            rejected.append({"line": lineno, "reason": str(e)})
            continue
        if q.question_id in seen:
            rejected.append({"line": lineno, "question_id": q.question_id, "reason": "duplicate question_id"})
            continue
        seen.add(q.question_id)
        if q.question_id not in skip:
            yield q


class RunStats:
    """Running totals for stats.json: constant memory however many questions pass through."""

    def __init__(self, max_k: int) -> None:
        self.max_k = max_k
        self.questions = 0
        self.verified = 0
        self.per_subset: dict[str, list[int]] = {}  # subset -> [questions, passed within 1..max_k attempts]
        self.difficulty: Counter = Counter()
        self.failure_reasons: Counter = Counter()

    def add(self, row: dict) -> None:
        self.questions += 1
        self.verified += row["gpt_pass_trial_num"] > 0
        counts = self.per_subset.setdefault(row["subset"], [0] * (self.max_k + 1))
        counts[0] += 1
        seq = row["gpt_pass_sequence"]
        for k in range(1, self.max_k + 1):
            counts[k] += any(seq[:k])
        self.difficulty[row["gpt_difficulty"]] += 1
        self.failure_reasons.update(t["status"] for t in row["trials"].values() if t["test_result"] != "Pass")

    def add_file(self, path: str) -> None:
        if os.path.exists(path):
            for _, line in iter_lines(path):
                self.add(orjson.loads(line))

    def as_dict(self) -> dict:
        pass_at_k = {
            subset: {str(k): {"questions": c[k], "rate": round(c[k] / c[0], 4)} for k in range(1, self.max_k + 1)}
            for subset, c in sorted(self.per_subset.items())}
        return {"questions": self.questions, "verified": self.verified, "pass_at_k": pass_at_k,
                "difficulty": dict(self.difficulty), "failure_reasons": dict(self.failure_reasons)}


def build_flow(config: RunConfig, backend, sft_backend, pool: SandboxPool, journal: Journal) -> DatasetFlow:  # noqa: ANN001
    """The stages a run config asks for, wired to their backends."""

    def after_pass(q: Question) -> list[Unit]:
        units = []
        if config.style:
            units.append(Unit(q, "style", 0))
        if config.sft is not None:
            units.append(Unit(q, "sft", 0))
        return units

    stages: dict = {"solutions": SolveStage(config.solve, after_pass)}
    backends = {"solutions": backend}
    if config.style:
        stages["style"] = StyleStage()
        backends["style"] = backend
    if config.sft is not None:
        stages["sft"] = SFTStage(config.sft)
        backends["sft"] = sft_backend or backend
    return DatasetFlow(stages, backends, pool, journal, first="solutions",
                       model_names={"solutions": config.solve.model_name, "style": config.solve.model_name,
                                    "sft": config.sft_model_name})


async def run_solve(config: RunConfig, backend, on_progress=None, sft_backend=None) -> dict:  # noqa: ANN001
    """Run (or resume) the pipeline into config.out_dir; returns the stats that are written to stats.json.

    A question is finished when its main row is in verified.jsonl or failed.jsonl; that row is
    written last, after the question's completion-style and SFT rows, so a resumed run redoes
    exactly the unfinished questions (their LLM answers and verdicts come from the journal).
    """
    path = _prepare_run_dir(config.out_dir)
    done = recover_jsonl(path[VERIFIED], "question_id") | recover_jsonl(path[FAILED], "question_id")
    already = {name: recover_jsonl(path[name], "question_id") for name in (COMPLETE, STYLE_REJECTED, SFT)}
    journal = Journal(os.path.join(config.out_dir, "journal.sqlite"))
    rejected: list[dict] = []
    totals = RunStats(config.solve.max_attempts)
    totals.add_file(path[VERIFIED])
    totals.add_file(path[FAILED])
    writers = {name: JsonlWriter(p) for name, p in path.items()}
    started = time.monotonic()

    async def write_once(name: str, row: dict) -> None:
        if row["question_id"] not in already.get(name, ()):
            await writers[name].write(row)

    async def sink(q: Question) -> None:
        row = q.row
        assert row is not None
        merge_sft(q, config)
        if q.sft_row is not None and config.sft is not None:
            nick = config.sft.nickname
            if q.sft_row[f"{nick}_correctness"]:
                await write_once(SFT, sharegpt(q.question, q.sft_row[f"{nick}_response"], q.question_id))
        if q.complete_row is not None:
            await write_once(COMPLETE, q.complete_row)
        if q.style_rejection is not None:
            await write_once(STYLE_REJECTED, q.style_rejection)
        await writers[VERIFIED if row["gpt_pass_trial_num"] > 0 else FAILED].write(row)
        totals.add(row)

    try:
        async with SandboxPool(config.sandbox) as pool:
            flow = build_flow(config, backend, sft_backend, pool, journal)
            backends = flow.backends
            # The backend knows how many requests it should have in flight (vLLM: a bit over its batch).
            workers = getattr(backend, "max_in_flight", config.workers)
            total = count_rows(config.input_path) - len(done)
            last_checkpoint = [time.monotonic()]

            def progress(stats: EngineStats) -> None:
                snap = stats.as_dict()
                elapsed = max(1e-9, snap["elapsed_s"])
                tokens = sum(getattr(b, "completion_tokens", 0) for b in {id(b): b for b in backends.values()}.values())
                busy_s = stats.verify.busy_s
                snap.update(total=total, tokens_out=tokens, tokens_per_s=round(tokens / elapsed, 1),
                            llm_errors=dict(flow.llm_errors), sandbox_workers=pool.size,
                            sandbox_busy_pct=round(min(100.0, 100 * pool.busy / pool.size), 1),
                            sandbox_busy_avg_pct=round(min(100.0, 100 * busy_s / (pool.size * elapsed)), 1))
                if on_progress is not None:
                    on_progress(snap)
                if time.monotonic() - last_checkpoint[0] > CHECKPOINT_S:
                    last_checkpoint[0] = time.monotonic()
                    write_json_atomic(os.path.join(config.out_dir, "stats.json"),
                                      {"checkpoint": True, **totals.as_dict(),
                                       "engine": snap})

            engine = Engine(flow, llm_workers=workers, verify_workers=pool.size, on_progress=progress)
            await engine.run(read_questions(config.input_path, done, rejected), sink)
            engine_stats: EngineStats = engine.stats
            isolation = pool.isolation
            flaky = pool.flaky
    finally:
        for w in writers.values():
            await w.close()
        journal.close()
    stats = totals.as_dict()
    stats.update({
        "rejected_rows": rejected, "resumed_questions": len(done), "llm_requests_this_run": flow.requests_made,
        "journal_hits_this_run": journal.hits,
        "llm_errors_this_run": flow.llm_errors, "engine": engine_stats.as_dict(), "sandbox_isolation": isolation,
        "flaky_trials": totals.failure_reasons.get("flaky", 0), "flaky_trials_this_run": flaky,
        "model": config.solve.model_name, "wall_s_this_run": round(time.monotonic() - started, 3),
        "style_converted": writers[COMPLETE].rows + len(already[COMPLETE]),
        "style_rejected": writers[STYLE_REJECTED].rows + len(already[STYLE_REJECTED]),
        "sft_conversations": writers[SFT].rows + len(already[SFT]),
    })
    write_json_atomic(os.path.join(config.out_dir, "stats.json"), stats)
    _write_manifest(config.out_dir, path)
    return stats


CHECKPOINT_S = 30.0  # how often a running pipeline rewrites stats.json


def _prepare_run_dir(out_dir: str) -> dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    manifest = os.path.join(out_dir, "manifest.json")
    if os.path.exists(manifest):
        os.remove(manifest)  # the run directory is being written again
    return {name: os.path.join(out_dir, name) for name in (VERIFIED, FAILED, COMPLETE, STYLE_REJECTED, SFT)}


def _write_manifest(out_dir: str, path: dict[str, str]) -> None:
    """Written last and atomically: its presence means every output file is complete."""
    write_json_atomic(os.path.join(out_dir, "manifest.json"), {
        "complete": True, "files": {name: count_rows(p) for name, p in path.items() if os.path.exists(p)},
        "stats": "stats.json", "journal": "journal.sqlite"})


def merge_sft(q: Question, config: RunConfig) -> None:
    """Copy the SFT columns (<nick>_pass_sequence, ...) into the question's main row."""
    if q.sft_row is not None and q.row is not None and config.sft is not None:
        q.row.update({k: v for k, v in q.sft_row.items() if k.startswith(config.sft.nickname)})
