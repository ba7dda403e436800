"""Solve-and-verify: the model writes a solution plus pytest tests; the sandbox runs them.

Per question: `attempts` attempts run at once (first round); if none passes, further attempts
run one at a time until one passes or `max_attempts` were made. Each attempt regenerates both
solution and tests from scratch with its own seed. An attempt counts when its answer reached
the sandbox or failed to parse (the model's own fault); a request that failed for good raises
LLMRequestError, which leaves the whole question unfinished for a resumed run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from kodcode_async.backends import Request, Sampling
from kodcode_async.engine import Dropped
from kodcode_async.options import DEFAULTS
from kodcode_async.parsing import ParseError, build_test_info, parse_program_and_cases, parse_solution_and_test
from kodcode_async.prompts import DEFAULT as DEFAULT_PROMPTS
from kodcode_async.prompts import Prompts
from kodcode_async.resources import LLMClient, SandboxClient
from kodcode_async.stages.base import Item, RunStage, StagePlan
from kodcode_async.stats import LLMCounts
from sandbox import Job, Limits, StdinCase

if TYPE_CHECKING:
    from kodcode_async.run import RunConfig

STAGE = "solutions"

@dataclass(frozen=True, slots=True)
class SolveOptions:
    attempts: int = DEFAULTS["attempts"]
    max_attempts: int = DEFAULTS["max_attempts"]
    temperature: float = DEFAULTS["temperature"]
    max_tokens: int = DEFAULTS["max_tokens"]
    model_name: str = ""
    limits: Limits = Limits()
    coverage: bool = True
    seed: int = DEFAULTS["seed"]  # attempt k samples with seed + k

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= self.max_attempts:
            raise ValueError("need 1 <= --attempts <= --max-attempts")


def difficulty(passes: int, attempts: int) -> str:
    """The label of a question that passed `passes` of `attempts`: the rule of the reference
    pipeline's code, which made KodCode-V1 (easy from 2/3 on, hard below 1/3; the paper's prose
    says "more than 2/3"). Whole numbers, so 2 of 3 and 4 of 6 land exactly on the boundary."""
    if passes == 0:
        return "fail"  # V1 holds no such row: it keeps passing questions only
    if 3 * passes >= 2 * attempts:
        return "easy"
    if 3 * passes < attempts:
        return "hard"
    return "medium"


def pass_percentage(passes: int, attempts: int) -> float:
    """Share of attempts that passed, rounded to 3 decimals as in KodCode-V1."""
    return round(passes / attempts, 3) if attempts else 0.0


class SolveStage(RunStage):
    """Question row in; the KodCode-V1 row out when an attempt passed, else Dropped("fail") with it."""

    name = STAGE
    output = "verified.jsonl"  # where the chain's rows go when this stage ends it
    drop_file = "failed.jsonl"

    def __init__(self, options: SolveOptions, llm: LLMClient, sandbox: SandboxClient, concurrency: int,
                 prompts: Prompts = DEFAULT_PROMPTS) -> None:
        self.options = options
        self.prompts = prompts
        self.prompt_hash = prompts.stage_hash(STAGE)
        self.stdin_hash = prompts.stage_hash("solutions_stdin")
        self.llm = llm
        self.sandbox = sandbox
        self.concurrency = concurrency
        self.parse_errors = 0

    def stats(self) -> dict:
        return {"llm": LLMCounts(parse_errors=self.parse_errors)}

    async def process(self, item: Item) -> Item | Dropped:
        first = await asyncio.gather(*(self.attempt(item, k) for k in range(self.options.attempts)),
                                     return_exceptions=True)
        for result in first:  # the answers that did arrive are journaled; a resumed run reuses them
            if isinstance(result, BaseException):
                raise result
        trials: list[dict] = list(first)  # type: ignore[arg-type]
        while not any(t["test_result"] == "Pass" for t in trials) and len(trials) < self.options.max_attempts:
            trials.append(await self.attempt(item, len(trials)))
        item.row = kodcode_row(item.row, trials, self.options.model_name,
                               self.stdin_hash if is_stdin(item.row) else self.prompt_hash)
        return item if item.row["gpt_pass_trial_num"] > 0 else Dropped("fail", item)

    async def attempt(self, item: Item, k: int) -> dict:
        texts = await self.llm.complete(self.request(item, k))
        stdin = is_stdin(item.row)
        try:
            if stdin:
                program = parse_program_and_cases(texts[0] if texts else "")
                solution, test = program.program, orjson.dumps(program.cases).decode()
                job = Job(id=f"{item.id}/{k}", solution=solution, limits=self.options.limits,
                          stdin_tests=[StdinCase(c["input"], c["output"]) for c in program.cases])
            else:
                parsed = parse_solution_and_test(texts[0] if texts else "")
                solution, test = parsed.solution, parsed.test
                job = Job(id=f"{item.id}/{k}", solution=solution, test=test, limits=self.options.limits,
                          coverage=self.options.coverage)
        except ParseError as e:
            self.parse_errors += 1
            return {"solution_code": "", "test_code": "", "test_result": "Fail", "status": "parse_error",
                    "reason": str(e), "test_coverage": None}
        v = await self.sandbox.verify(STAGE, item.id, k * 1000, job)
        return {"solution_code": solution, "test_code": test,
                "test_result": "Pass" if v.passed else "Fail", "status": v.status, "reason": v.reason,
                "test_coverage": v.coverage}

    def request(self, item: Item, k: int) -> Request:
        user = self.prompts.solutions_stdin_user if is_stdin(item.row) else self.prompts.solutions_user
        messages = [{"role": "system", "content": self.prompts.solutions_system},
                    {"role": "user", "content": user.format(question=item.row["question"])}]
        sampling = Sampling(n=1, temperature=self.options.temperature, max_tokens=self.options.max_tokens,
                            seed=self.options.seed + k)
        return Request(stage=STAGE, item_id=item.id, attempt=k, messages=messages, sampling=sampling)


def is_stdin(row: dict) -> bool:
    """A stdin/stdout question (format "stdin"): a program and input/output cases, not pytest."""
    return row.get("format") == "stdin"


# Question-row fields that stay top-level columns of the KodCode-V1 row (set by decontamination
# and the filter subset), and those that are the question's own metadata.
CARRIED = ("benchmark_similarity", "benchmark_instruction", "benchmark_task_id", "filter_reason", "format")


def kodcode_row(question: dict, trials: list[dict], model_name: str, prompt_hash: str = "") -> dict:
    """The KodCode-V1 row for a question and its trials (in attempt order). The question's
    `metadata` (from synthesis: seeds, its prompt hash, model) is kept and extended; its other
    extra fields go into metadata too."""
    seq = [1 if t["test_result"] == "Pass" else 0 for t in trials]
    passes = sum(seq)
    chosen = None
    for k, t in enumerate(trials):  # highest coverage among passing trials, first on ties
        if t["test_result"] == "Pass" and (chosen is None or (t["test_coverage"] or 0) >
                                            (trials[chosen]["test_coverage"] or 0)):
            chosen = k
    best = trials[chosen] if chosen is not None else None
    extra = {k: v for k, v in question.items() if k not in ("question_id", "question", "subset", "metadata", *CARRIED)}
    meta_in = question.get("metadata") if isinstance(question.get("metadata"), dict) else {}
    return {
        "version": "v1", "style": "instruct", "subset": question["subset"], "question_id": question["question_id"],
        "question": question["question"],
        "solution": best["solution_code"] if best else None,
        "test": best["test_code"] if best else None,
        "test_info": (build_test_info(best["solution_code"], best["test_code"])
                      if best and not is_stdin(question) else []),
        "gpt_pass_sequence": seq, "gpt_pass_trial_num": passes,
        "gpt_difficulty": difficulty(passes, len(seq)),
        "gpt_pass_percentage": pass_percentage(passes, len(seq)),
        "trials": {f"trial_{k}": t for k, t in enumerate(trials)},
        "chosen_trial": f"trial_{chosen}" if chosen is not None else None,
        "metadata": {**meta_in, "model": model_name, "attempts": len(seq),
                     **({"prompt_hash": prompt_hash} if prompt_hash else {}), **extra},
        **{k: question[k] for k in CARRIED if k in question},
    }


def _fingerprint(config: RunConfig) -> dict:
    s = config.solve
    fp = {"model": s.model_name, "attempts": s.attempts, "max_attempts": s.max_attempts,
          "temperature": s.temperature, "max_tokens": s.max_tokens, "seed": s.seed, "coverage": s.coverage,
          "prompt": config.prompts.stage_hash(STAGE)}
    if config.synth is not None and config.synth.stdin_format:
        fp["stdin_prompt"] = config.prompts.stage_hash("solutions_stdin")
    return fp


PLAN = StagePlan(STAGE, turned_on=lambda c: True, how_to_turn_on="",
                 build=lambda c, clients: [SolveStage(c.solve, clients.llm, clients.sandbox, clients.concurrency,
                                                      c.prompts)],
                 fingerprint=_fingerprint)
