"""The solve-and-verify pipeline wired onto the engine: input rows in, KodCode-V1 rows out."""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from kodcode_async.engine import Engine, EngineStats
from kodcode_async.journal import Journal
from kodcode_async.stages.solutions import Question, SolveFlow, SolveOptions
from kodcode_async.writers import JsonlWriter, recover_jsonl, write_json_atomic
from sandbox.pool import SandboxConfig, SandboxPool


@dataclass(frozen=True, slots=True)
class RunConfig:
    input_path: str
    out_dir: str
    workers: int = 128
    solve: SolveOptions = field(default_factory=SolveOptions)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)


class InputError(ValueError):
    """The input file cannot be read as questions."""


def read_questions(path: str, skip: set[str], rejected: list[dict]) -> Iterator[Question]:
    """Questions from JSONL; bad rows go to `rejected` with a reason (never silently dropped)."""
    seen: set[str] = set()
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                rejected.append({"line": lineno, "reason": f"invalid JSON: {e}"})
                continue
            if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip():
                rejected.append({"line": lineno, "reason": "row has no non-empty string 'question'"})
                continue
            qid = str(row.get("question_id") or row.get("id") or f"q{lineno:06d}")
            if qid in seen:
                rejected.append({"line": lineno, "question_id": qid, "reason": "duplicate question_id"})
                continue
            seen.add(qid)
            if qid in skip:
                continue
            extra = {k: v for k, v in row.items() if k not in ("question", "question_id", "id", "subset")}
            yield Question(question_id=qid, question=row["question"], subset=str(row.get("subset") or "default"),
                           extra=extra)


def compute_stats(rows: list[dict], max_k: int) -> dict:
    by_subset: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_subset[r["subset"]].append(r)
    pass_at_k = {}
    for subset, items in sorted(by_subset.items()):
        pass_at_k[subset] = {
            str(k): {"questions": sum(1 for r in items if any(r["gpt_pass_sequence"][:k])),
                     "rate": round(sum(1 for r in items if any(r["gpt_pass_sequence"][:k])) / len(items), 4)}
            for k in range(1, max_k + 1)}
    reasons: Counter = Counter()
    for r in rows:
        for t in r["trials"].values():
            if t["test_result"] != "Pass":
                reasons[t["status"]] += 1
    return {"questions": len(rows), "verified": sum(1 for r in rows if r["gpt_pass_trial_num"] > 0),
            "pass_at_k": pass_at_k, "difficulty": dict(Counter(r["gpt_difficulty"] for r in rows)),
            "failure_reasons": dict(reasons)}


async def run_solve(config: RunConfig, backend, on_progress=None) -> dict:  # noqa: ANN001
    """Run (or resume) the pipeline into config.out_dir; returns the stats that are written to stats.json."""
    os.makedirs(config.out_dir, exist_ok=True)
    verified_path = os.path.join(config.out_dir, "verified.jsonl")
    failed_path = os.path.join(config.out_dir, "failed.jsonl")
    done = recover_jsonl(verified_path, "question_id") | recover_jsonl(failed_path, "question_id")
    journal = Journal(os.path.join(config.out_dir, "journal.sqlite"))
    rejected: list[dict] = []
    summary_rows: list[dict] = []  # small per-question summaries for stats; full rows live in the files
    for path in (verified_path, failed_path):
        if os.path.exists(path):
            with open(path, "rb") as f:
                summary_rows += [_summary(orjson.loads(line)) for line in f if line.strip()]
    verified, failed = JsonlWriter(verified_path), JsonlWriter(failed_path)
    started = time.monotonic()
    try:
        async with SandboxPool(config.sandbox) as pool:
            flow = SolveFlow(backend, pool, journal, config.solve)
            engine = Engine(flow, llm_workers=min(config.workers, getattr(backend, "max_in_flight", config.workers)),
                            verify_workers=pool.size, on_progress=on_progress)

            async def sink(row: dict) -> None:
                await (verified if row["gpt_pass_trial_num"] > 0 else failed).write(row)
                summary_rows.append(_summary(row))

            await engine.run(read_questions(config.input_path, done, rejected), sink)
            engine_stats: EngineStats = engine.stats
            isolation = pool.mode
    finally:
        await verified.close()
        await failed.close()
        journal.close()
    stats = compute_stats(summary_rows, config.solve.max_attempts)
    stats.update({
        "rejected_rows": rejected, "resumed_questions": len(done), "llm_requests_this_run": flow.requests_made,
        "engine": engine_stats.as_dict(), "sandbox_isolation": isolation,
        "model": config.solve.model_name, "wall_s_this_run": round(time.monotonic() - started, 3),
    })
    write_json_atomic(os.path.join(config.out_dir, "stats.json"), stats)
    return stats


def _summary(row: dict) -> dict:
    return {"subset": row["subset"], "gpt_pass_sequence": row["gpt_pass_sequence"],
            "gpt_pass_trial_num": row["gpt_pass_trial_num"], "gpt_difficulty": row["gpt_difficulty"],
            "trials": {k: {"test_result": t["test_result"], "status": t["status"]} for k, t in row["trials"].items()}}
