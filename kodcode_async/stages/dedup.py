"""Semantic deduplication of questions, streaming (decontamination is in decontam.py).

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

import asyncio
from collections import Counter
from dataclasses import dataclass

import numpy as np

from kodcode_async.embedder import Embedder, _pack, _unpack
from kodcode_async.engine import Dropped
from kodcode_async.journal import Journal
from kodcode_async.stages.base import Item, RunStage
from kodcode_async.stats import QuestionCounts, SubsetCounts


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

            # The graph's degree (32) and search breadth (64) tune recall against speed (the hnsw
            # test measures recall); other values are not wrong, so their mutants are not scored.
            self.index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)  # pragma: no mutate
            self.index.hnsw.efSearch = 64  # pragma: no mutate
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
    # earlier questions of the same batch: the strictly lower triangle (a batch of one has none)
    inner = (vecs @ vecs.T).astype(np.float64)
    inner[np.triu_indices(len(vecs))] = -np.inf
    nearest = inner.argmax(axis=1)
    inside = inner[np.arange(len(vecs)), nearest]
    for i in np.flatnonzero(inside > best_sim):  # a tie keeps the earlier one: the index's
        best_sim[i], best_id[i] = inside[i], ids[nearest[i]]
    index.add(vecs, ids)
    return [(bool(s >= threshold), b, float(s) if np.isfinite(s) else 0.0) for s, b in zip(best_sim, best_id)]


@dataclass(slots=True)
class _Waiting:
    decided: asyncio.Future
    item_id: str = ""
    vec: np.ndarray | None = None
    replay: dict | None = None  # a decision already made (replayed, or a skip): nothing to search


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

    def ready(self, seq: int, item_id: str, vec: np.ndarray) -> asyncio.Future:
        """The question numbered `seq` has its vector: the future is its (duplicate?, nearest, similarity)."""
        return self._wait(seq, _Waiting(asyncio.get_running_loop().create_future(), item_id, vec))

    def replay(self, seq: int, decision: dict) -> asyncio.Future:
        """The question numbered `seq` was decided by an earlier run (its vector is in the index):
        its turn comes in order, and the future is that decision."""
        return self._wait(seq, _Waiting(asyncio.get_running_loop().create_future(), replay=decision))

    def skip(self, seq: int) -> None:
        """A numbered question that will never be ready (its embedding failed): do not wait for it."""
        self.replay(seq, {})

    def _wait(self, seq: int, waiting: _Waiting) -> asyncio.Future:
        self.waiting[seq] = waiting
        self._schedule()
        return waiting.decided

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


class DedupStage(RunStage):
    name = "dedup"
    drop_file = "duplicates.jsonl"

    def __init__(self, embedder: Embedder, journal: Journal | None, threshold: float, concurrency: int,
                 index: str = "flat", subsets: tuple[str, ...] = ()) -> None:
        self.subsets = subsets
        self.embedder = embedder
        self.index_kind = index
        self.journal = journal
        self.threshold = threshold
        self.concurrency = concurrency
        self.decider: OrderedDecider | None = None
        self.replayed: dict[str, dict] = {}
        self.duplicates: Counter = Counter()  # subset -> dropped
        self.seen: Counter = Counter()  # subset -> questions checked

    def stats(self) -> dict:
        return {"questions": QuestionCounts(
            per_subset={s: SubsetCounts(duplicates=self.duplicates[s]) for s in self.subsets},
            dedup_batches=self.decider.batches if self.decider else 0)}

    async def start(self) -> None:
        """Load the index with every earlier decision (a resumed run), in decision order."""
        assert self.embedder.dim, "the embedder was not started"
        index = NearIndex(self.embedder.dim, self.index_kind)
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
                await self.decider.replay(seq, recorded)
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
