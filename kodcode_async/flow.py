"""The engine's view of the pipeline: units in, units out, every answer journaled first.

Stages only build requests, parse answers and record outcomes (stages/). This module is the one
place that talks to the backends, the sandbox and the journal, so resume works the same for
every stage: a response or verdict found in the journal is used instead of asking again.
"""

from __future__ import annotations

import asyncio

import msgspec

from kodcode_async.backends import LLMRequestError
from kodcode_async.journal import Journal, payload_hash
from kodcode_async.stages.base import Question, Stage, Unit
from sandbox import Job, Verdict
from sandbox.pool import SandboxPool


class DatasetFlow:
    def __init__(self, stages: dict[str, Stage], backends: dict[str, object], pool: SandboxPool, journal: Journal,
                 first: str, model_names: dict[str, str]) -> None:
        self.stages = stages
        self.backends = backends  # stage name -> backend (the SFT stage may use a reasoning model)
        self.pool = pool
        self.journal = journal
        self.first = first
        self.model_names = model_names
        self.requests_made = 0
        self.llm_errors: dict[str, int] = {}

    def admit(self, q: Question) -> list[Unit]:
        units = self.stages[self.first].first_round(q)  # type: ignore[attr-defined]
        q.pending = len(units)
        return units

    async def generate(self, unit: Unit) -> Unit:
        stage = self.stages[unit.stage]
        request = stage.request(unit)
        phash = payload_hash({"messages": request.messages, "prompt": request.prompt,
                              "sampling": msgspec.to_builtins(request.sampling),
                              "model": self.model_names.get(unit.stage, "")})
        cached = self.journal.get("response", unit.stage, unit.item.question_id, unit.attempt, phash)
        if cached is None:
            self.requests_made += 1
            try:
                completion = await self.backends[unit.stage].generate(request)  # type: ignore[attr-defined]
            except LLMRequestError as e:
                # Not journaled: a resumed run may ask again (the server may be back).
                unit.failure = f"llm_error:{e.kind}"
                self.llm_errors[e.kind] = self.llm_errors.get(e.kind, 0) + 1
                return unit
            cached = {"texts": completion.texts}
            self.journal.put("response", unit.stage, unit.item.question_id, unit.attempt, phash, cached)
        unit.texts = list(cached["texts"])
        stage.parse(unit)
        return unit

    async def _verify_one(self, unit: Unit, index: int, job: Job) -> Verdict:
        phash = payload_hash({"solution": job.solution, "test": job.test, "limits": msgspec.to_builtins(job.limits),
                              **({"flaky_reruns": self.pool.config.flaky_reruns} if self.pool.config.flaky_reruns else {})})
        attempt = unit.attempt * 1000 + index
        cached = self.journal.get("verdict", unit.stage, unit.item.question_id, attempt, phash)
        if cached is not None:
            return msgspec.convert(cached, Verdict)
        verdict = await self.pool.verify(job)
        if verdict.status != "sandbox_error":  # infrastructure failures are worth retrying on resume
            self.journal.put("verdict", unit.stage, unit.item.question_id, attempt, phash,
                             msgspec.to_builtins(verdict))
        return verdict

    async def verify(self, unit: Unit) -> Unit:
        if unit.jobs and not unit.failure:
            unit.verdicts = list(await asyncio.gather(*(self._verify_one(unit, i, j) for i, j in enumerate(unit.jobs))))
        return unit

    def settle(self, unit: Unit) -> tuple[list[Unit], Question | None]:
        more = self.stages[unit.stage].settle(unit)
        q = unit.item
        q.pending += len(more) - 1
        return more, (q if q.pending == 0 else None)
