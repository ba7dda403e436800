"""Solve-and-verify: the model writes a solution plus pytest tests; the sandbox runs them.

Per question: `attempts` attempts run at once (first round); if none passes, further attempts
run one at a time until one passes or `max_attempts` were made. Each attempt regenerates both
solution and tests from scratch with its own seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kodcode_async.backends import Request, Sampling
from kodcode_async.parsing import ParseError, build_test_info, parse_solution_and_test
from kodcode_async.stages.base import Question, Unit
from sandbox import Job, Limits

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


def difficulty(passes: int, attempts: int) -> str:
    if passes == 0:
        return "fail"
    rate = passes / attempts
    if rate > 2 / 3:
        return "easy"
    if rate >= 1 / 3:
        return "medium"
    return "hard"


class SolveStage:
    name = STAGE

    def __init__(self, options: SolveOptions, after_pass: Callable[[Question], list[Unit]] | None = None) -> None:
        self.options = options
        # Follow-up units (style conversion, SFT answers) for a question that got verified.
        self.after_pass = after_pass or (lambda q: [])

    def first_round(self, q: Question) -> list[Unit]:
        q.started = self.options.attempts
        return [Unit(q, STAGE, k) for k in range(self.options.attempts)]

    def request(self, unit: Unit) -> Request:
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": USER_TEMPLATE.format(question=unit.item.question)}]
        sampling = Sampling(n=1, temperature=self.options.temperature, max_tokens=self.options.max_tokens,
                            seed=unit.attempt)
        return Request(stage=STAGE, item_id=unit.item.question_id, attempt=unit.attempt, messages=messages,
                       sampling=sampling)

    def parse(self, unit: Unit) -> None:
        try:
            parsed = parse_solution_and_test(unit.texts[0] if unit.texts else "")
        except ParseError as e:
            unit.failure, unit.data["reason"] = "parse_error", str(e)
            return
        unit.data.update(solution=parsed.solution, test=parsed.test)
        unit.jobs = [Job(id=f"{unit.item.question_id}/{unit.attempt}", solution=parsed.solution, test=parsed.test,
                         limits=self.options.limits, coverage=self.options.coverage)]

    def settle(self, unit: Unit) -> list[Unit]:
        q = unit.item
        v = unit.verdicts[0] if unit.verdicts else None
        q.trials[unit.attempt] = {
            "solution_code": unit.data.get("solution", ""), "test_code": unit.data.get("test", ""),
            "test_result": "Pass" if v is not None and v.passed else "Fail",
            "status": v.status if v is not None else unit.failure.split(":")[0],
            "reason": v.reason if v is not None else (unit.data.get("reason") or unit.failure),
            "test_coverage": v.coverage if v is not None else None,
        }
        if len(q.trials) < q.started:
            return []  # the rest of this round is still running
        passed = any(t["test_result"] == "Pass" for t in q.trials.values())
        if not passed and q.started < self.options.max_attempts:
            q.started += 1
            return [Unit(q, STAGE, q.started - 1)]
        q.row = self.row(q)
        return self.after_pass(q) if passed else []

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
            "test_info": build_test_info(best["solution_code"], best["test_code"]) if best else [],
            "gpt_pass_sequence": seq, "gpt_pass_trial_num": passes,
            "gpt_difficulty": difficulty(passes, len(seq)),
            "gpt_pass_percentage": round(passes / len(seq), 4) if seq else 0.0,
            "trials": {f"trial_{k}": q.trials[k] for k in ks},
            "chosen_trial": f"trial_{chosen}" if chosen is not None else None,
            "metadata": {"model": self.options.model_name, "attempts": len(seq), **q.extra},
        }
