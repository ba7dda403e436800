"""Solve-and-verify: the model writes a solution plus pytest tests; the sandbox runs them.

Per question: `attempts` attempts run at once (first round); if none passes, further attempts
run one at a time until one passes or `max_attempts` were made. Each attempt regenerates both
solution and tests from scratch with its own seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from kodcode_async.backends import LLMRequestError, Request, Sampling
from kodcode_async.journal import Journal, payload_hash
from kodcode_async.parsing import ParseError, parse_solution_and_test, test_info
from sandbox import Job, Limits, Verdict
from sandbox.pool import SandboxPool

STAGE = "solutions"

SYSTEM_PROMPT = (
    "You are a careful Python engineer. You answer a programming task with working code and a "
    "pytest suite that proves it works."
)

USER_TEMPLATE = """Task:
{question}

Reply with exactly two sections and nothing else of substance:

<|Solution Begin|>
```python
# the complete implementation, in a module that will be saved as solution.py
```
<|Solution End|>
<|Test Begin|>
```python
# pytest tests in test_solution.py; import what you test with `from solution import ...`
```
<|Test End|>

The tests must be deterministic, independent of each other, fast (well under a second each), and must
not read files, use the network or need input. Cover ordinary cases, edge cases and invalid input where
the task defines its behaviour."""


@dataclass(frozen=True, slots=True)
class SolveOptions:
    attempts: int = 3
    max_attempts: int = 10
    temperature: float = 0.7
    max_tokens: int = 4096
    model_name: str = ""
    limits: Limits = Limits()
    coverage: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= self.max_attempts:
            raise ValueError("need 1 <= --attempts <= --max-attempts")


@dataclass(slots=True)
class Question:
    question_id: str
    question: str
    subset: str
    extra: dict = field(default_factory=dict)
    started: int = 0
    trials: dict[int, dict] = field(default_factory=dict)


@dataclass(slots=True)
class Attempt:
    q: Question
    k: int
    solution: str = ""
    test: str = ""
    failure: str = ""  # parse_error / llm_error:<kind>; empty when there is code to run
    verdict: Verdict | None = None


def difficulty(passes: int, attempts: int) -> str:
    if passes == 0:
        return "fail"
    rate = passes / attempts
    if rate > 2 / 3:
        return "easy"
    if rate >= 1 / 3:
        return "medium"
    return "hard"


class SolveFlow:
    def __init__(self, backend, pool: SandboxPool, journal: Journal, options: SolveOptions) -> None:  # noqa: ANN001
        self.backend = backend
        self.pool = pool
        self.journal = journal
        self.options = options
        self.requests_made = 0

    def admit(self, q: Question) -> list[Attempt]:
        q.started = self.options.attempts
        return [Attempt(q, k) for k in range(self.options.attempts)]

    def request_for(self, a: Attempt) -> Request:
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": USER_TEMPLATE.format(question=a.q.question)}]
        sampling = Sampling(n=1, temperature=self.options.temperature, max_tokens=self.options.max_tokens, seed=a.k)
        return Request(stage=STAGE, item_id=a.q.question_id, attempt=a.k, messages=messages, sampling=sampling)

    async def generate(self, a: Attempt) -> Attempt:
        request = self.request_for(a)
        phash = payload_hash({"messages": request.messages, "sampling": msgspec.to_builtins(request.sampling),
                              "model": self.options.model_name})
        cached = self.journal.get("response", STAGE, a.q.question_id, a.k, phash)
        if cached is None:
            self.requests_made += 1
            try:
                completion = await self.backend.generate(request)
            except LLMRequestError as e:
                # Not journaled: a resumed run may ask again (the server may be back).
                a.failure = f"llm_error:{e.kind}"
                return a
            cached = {"text": completion.texts[0] if completion.texts else ""}
            self.journal.put("response", STAGE, a.q.question_id, a.k, phash, cached)
        try:
            parsed = parse_solution_and_test(cached["text"])
        except ParseError:
            a.failure = "parse_error"
            return a
        a.solution, a.test = parsed.solution, parsed.test
        return a

    async def verify(self, a: Attempt) -> Attempt:
        if a.failure:
            return a
        phash = payload_hash({"solution": a.solution, "test": a.test})
        cached = self.journal.get("verdict", STAGE, a.q.question_id, a.k, phash)
        if cached is not None:
            a.verdict = msgspec.convert(cached, Verdict)
            return a
        job = Job(id=f"{a.q.question_id}/{a.k}", solution=a.solution, test=a.test, limits=self.options.limits,
                  coverage=self.options.coverage)
        a.verdict = await self.pool.verify(job)
        self.journal.put("verdict", STAGE, a.q.question_id, a.k, phash, msgspec.to_builtins(a.verdict))
        return a

    def settle(self, a: Attempt) -> tuple[list[Attempt], dict | None]:
        q = a.q
        v = a.verdict
        q.trials[a.k] = {
            "solution_code": a.solution, "test_code": a.test,
            "test_result": "Pass" if v is not None and v.passed else "Fail",
            "status": v.status if v is not None else a.failure.split(":")[0],
            "reason": (v.reason if v is not None else a.failure),
            "test_coverage": v.coverage if v is not None else None,
        }
        if len(q.trials) < q.started:
            return [], None  # the rest of this round is still running
        passed = any(t["test_result"] == "Pass" for t in q.trials.values())
        if not passed and q.started < self.options.max_attempts:
            q.started += 1
            return [Attempt(q, q.started - 1)], None
        return [], self.row(q)

    def row(self, q: Question) -> dict:
        ks = sorted(q.trials)
        seq = [1 if q.trials[k]["test_result"] == "Pass" else 0 for k in ks]
        passes = sum(seq)
        chosen = None
        for k in ks:  # highest coverage among passing trials, first on ties
            t = q.trials[k]
            if t["test_result"] == "Pass" and (chosen is None or (t["test_coverage"] or 0) >
                                                (q.trials[chosen]["test_coverage"] or 0)):
                chosen = k
        best = q.trials[chosen] if chosen is not None else None
        return {
            "version": "v1", "style": "instruct", "subset": q.subset, "question_id": q.question_id,
            "question": q.question,
            "solution": best["solution_code"] if best else None,
            "test": best["test_code"] if best else None,
            "test_info": test_info(best["solution_code"], best["test_code"]) if best else [],
            "gpt_pass_sequence": seq, "gpt_pass_trial_num": passes,
            "gpt_difficulty": difficulty(passes, len(seq)),
            "gpt_pass_percentage": round(passes / len(seq), 4) if seq else 0.0,
            "trials": {f"trial_{k}": q.trials[k] for k in ks},
            "chosen_trial": f"trial_{chosen}" if chosen is not None else None,
            "metadata": {"model": self.options.model_name, "attempts": len(seq), **q.extra},
        }
