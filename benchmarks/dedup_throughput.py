"""Streaming semantic dedup against the batch way: time, questions/s, index memory, same kept set.

Both ways apply one rule: a question is a duplicate when an earlier question (in arrival order)
has cosine similarity >= the threshold. Measured side by side in one run, on the same synthetic
unit vectors (384 dimensions, as all-MiniLM-L6-v2 gives, with planted near-duplicates):

* the batch way (the reference's): all vectors at once in one faiss index, one batch search
  (a range search at the threshold for the exact index), then the rule over the neighbours;
* the stream: the engine's own code path, a `Chain` running `DedupStage` (128 tasks) with its
  `Embedder` (batches of `--window` texts in the embedder's thread), questions decided in arrival
  order in micro-batches against the growing index.

Embedding is left out on both sides: it costs the same per question either way (the embedder's
own rate is printed once, from the real model, for scale). `--index flat` is exact (kept sets must
be equal); `--index hnsw` is approximate (faiss HNSW, for a million questions and more): the batch
way then searches k neighbours per question, and the agreement of the two kept sets is printed.

Usage: python benchmarks/dedup_throughput.py [--n 100000] [--index flat|hnsw] [--threshold 0.9]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kodcode_async.embedder import Embedder  # noqa: E402
from kodcode_async.engine import Chain, Dropped  # noqa: E402
from kodcode_async.stages.base import Item  # noqa: E402
from kodcode_async.stages.dedup import DedupStage  # noqa: E402

DIM = 384


def synthetic(n: int, dup_rate: float = 0.1, seed: int = 0) -> np.ndarray:
    """Unit vectors: random questions, and `dup_rate` of them near-copies of an earlier one."""
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM), dtype=np.float32)
    dups = rng.choice(np.arange(1, n), size=int(n * dup_rate), replace=False)
    for i in np.sort(dups):
        vecs[i] = vecs[rng.integers(0, i)] + 0.15 * rng.standard_normal(DIM, dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def batch_way(vecs: np.ndarray, threshold: float, kind: str, k: int) -> tuple[np.ndarray, float]:
    """The reference: index everything, one batch search, then the rule. Returns (dup mask, index MB)."""
    import faiss

    before = rss_mb()
    if kind == "flat":
        index = faiss.IndexFlatIP(DIM)
        index.add(vecs)
        grown = rss_mb() - before
        lims, _, ids = index.range_search(vecs, threshold - 1e-6)
        dup = np.zeros(len(vecs), dtype=bool)
        for i in range(len(vecs)):
            dup[i] = bool((ids[lims[i]:lims[i + 1]] < i).any())
        return dup, grown
    index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = 64
    index.add(vecs)
    grown = rss_mb() - before
    sims, ids = index.search(vecs, k)
    earlier = (ids < np.arange(len(vecs))[:, None]) & (ids >= 0)
    return ((sims >= threshold) & earlier).any(axis=1), grown


async def stream_way(vecs: np.ndarray, threshold: float, kind: str, window: int) -> tuple[np.ndarray, float, int]:
    """The engine's own path: a Chain running DedupStage (128 tasks), its Embedder batching up to
    `window` texts in its thread; the "model" looks the vector up, so embedding costs nothing."""
    before = rss_mb()
    embedder = Embedder("lookup", None, batch=window, wait_ms=20, encode=lambda texts: vecs[[int(t) for t in texts]],
                        dim=DIM)
    stage = DedupStage(embedder, None, threshold, concurrency=128, index=kind)
    await stage.start()
    dup = np.zeros(len(vecs), dtype=bool)

    async def dropped(_stage: str, item: Item, _d: Dropped) -> None:
        dup[int(item.id)] = True

    async def kept(_item: Item) -> None:
        pass

    items = (Item(str(i), {"question": str(i), "subset": "s"}) for i in range(len(vecs)))
    await Chain([stage]).run(items, kept, on_drop=dropped)
    await embedder.close()
    assert stage.decider is not None
    return dup, rss_mb() - before, stage.decider.batches


def embedder_rate(texts: int = 512) -> float:
    from kodcode_async.embedder import load_model

    encode, _ = load_model("all-MiniLM-L6-v2")
    sample = [f"Write a function that returns the {i}-th element of a sorted list of integers after removing "
              f"duplicates, or -1 when there is none." for i in range(texts)]
    encode(sample[:64])
    t = time.perf_counter()
    for s in range(0, texts, 64):
        encode(sample[s:s + 64])
    return texts / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--index", choices=["flat", "hnsw"], default="flat")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--window", type=int, default=64, help="questions ready together (the embedder's batch)")
    ap.add_argument("--k", type=int, default=16, help="hnsw batch way: neighbours searched per question")
    ap.add_argument("--no-embedder", action="store_true", help="skip the real model's rate")
    args = ap.parse_args()
    print(f"# {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}, n={args.n}, "
          f"index={args.index}, threshold={args.threshold}")
    vecs = synthetic(args.n)
    print(f"synthetic vectors: {vecs.nbytes / 2**20:.0f} MB")

    t = time.perf_counter()
    stream_dup, stream_mb, batches = asyncio.run(stream_way(vecs, args.threshold, args.index, args.window))
    stream_s = time.perf_counter() - t
    t = time.perf_counter()
    batch_dup, batch_mb = batch_way(vecs, args.threshold, args.index, args.k)
    batch_s = time.perf_counter() - t

    same = bool((stream_dup == batch_dup).all())
    print(f"{'way':<8} {'seconds':>9} {'questions/s':>12} {'index MB':>9} {'dropped':>8}")
    print(f"{'batch':<8} {batch_s:>9.1f} {args.n / batch_s:>12.0f} {batch_mb:>9.0f} {int(batch_dup.sum()):>8}")
    print(f"{'stream':<8} {stream_s:>9.1f} {args.n / stream_s:>12.0f} {stream_mb:>9.0f} {int(stream_dup.sum()):>8}"
          f"   ({batches} micro-batches)")
    print(f"stream / batch time: {stream_s / batch_s:.2f}x (goal <= 1.5x at 100k); same kept set: {same}"
          + ("" if same else f" ({int((stream_dup != batch_dup).sum())} questions differ)"))
    if not args.no_embedder:
        print(f"for scale, the real embedder (all-MiniLM-L6-v2, CPU): {embedder_rate():.0f} texts/s")


if __name__ == "__main__":
    main()
