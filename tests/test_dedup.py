"""Streaming dedup (stages/dedup.py) and decontamination (stages/decontam.py): the same kept set as
the batch way, decisions replayed on resume, and the real embedding model (all-MiniLM-L6-v2,
bundled offline) on known pairs."""

import asyncio
from pathlib import Path

import numpy as np
import pytest

from kodcode_async.embedder import Embedder
from kodcode_async.engine import Dropped
from kodcode_async.journal import Journal
from kodcode_async.stages.base import Item
from kodcode_async.stages.decontam import (
    DecontamStage,
    humaneval_questions,
)
from kodcode_async.stages.dedup import DedupStage


@pytest.fixture(scope="module")
def model() -> Embedder:
    """The real model, loaded once for the module (load_model caches it per process)."""
    async def load() -> Embedder:
        e = Embedder("all-MiniLM-L6-v2")
        await e.start()
        return e
    return asyncio.run(load())


QUESTIONS = [
    "Write a function that returns the n-th Fibonacci number.",
    "Implement a function that reverses the order of words in a sentence.",
    "Write a function returning the nth number of the Fibonacci sequence.",  # a near-duplicate of the first
    "Given a grid of 0s and 1s, count the islands of 1s connected horizontally or vertically.",
    "Return the length of the longest strictly increasing subsequence of a list of integers.",
    "Given a grid of 0s and 1s, count the islands: groups of 1s connected horizontally or vertically.",  # of the 4th
]


def dedup_run(journal_path: Path, order: list[int], extra: list[str] = ()) -> dict[str, tuple[bool, str]]:
    async def go() -> dict[str, tuple[bool, str]]:
        journal = Journal(str(journal_path))
        embedder = Embedder("all-MiniLM-L6-v2", journal)
        await embedder.start()
        stage = DedupStage(embedder, journal, 0.8, concurrency=8)
        await stage.start()
        items = [Item(f"q{i}", {"question": QUESTIONS[i], "subset": "s"}) for i in order]
        items += [Item(f"x{i}", {"question": q, "subset": "s"}) for i, q in enumerate(extra)]
        results = await asyncio.gather(*(stage.process(it) for it in items))
        await embedder.close()
        journal.close()
        return {it.id: (isinstance(r, Dropped), it.row["metadata"]["dedup"]["nearest"]) for it, r in zip(items, results)}
    return asyncio.run(go())


def test_the_real_model_drops_near_duplicates_and_a_resumed_run_replays_every_decision(
        tmp_path: Path, model: Embedder) -> None:
    journal = tmp_path / "journal.sqlite"
    first = dedup_run(journal, [0, 1, 2, 3, 4, 5])
    assert {k for k, (dup, _) in first.items() if dup} == {"q2", "q5"}
    assert first["q2"][1] == "q0" and first["q5"][1] == "q3"
    # resumed, the questions arriving in another order: every recorded decision stands, and a new
    # near-duplicate of a question kept earlier is still caught (the index was rebuilt from the journal)
    again = dedup_run(journal, [5, 4, 3, 2, 1, 0], extra=["Compute the n-th Fibonacci number with a function."])
    assert {k: v for k, v in again.items() if k.startswith("q")} == first
    assert again["x0"] == (True, "q0")


def test_decontamination_catches_a_humaneval_paraphrase_and_passes_an_unrelated_question(model: Embedder) -> None:
    bench = humaneval_questions()
    assert len(bench) == 164 and bench[0].task_id == "HumanEval/0" and ">>>" not in bench[0].text

    async def go() -> list:
        stage = DecontamStage(model, bench, 0.8, concurrency=4)
        await stage.start()
        items = [Item("a", {"question": "Given a list of floats and a threshold, determine whether any two numbers "
                                        "in the list are closer to each other than the threshold.", "subset": "s"}),
                 Item("b", {"question": "Implement an LRU cache class with get and put in O(1) time.", "subset": "s"})]
        return [(await stage.process(it), it.row) for it in items]

    (ra, a), (rb, b) = asyncio.run(go())
    assert isinstance(ra, Dropped) and a["benchmark_task_id"] == "HumanEval/0" and a["benchmark_similarity"] >= 0.8
    assert a["benchmark_instruction"].startswith("Check if in given list of numbers")
    assert not isinstance(rb, Dropped) and b["benchmark_similarity"] < 0.8


def test_the_embedder_batches_concurrent_texts_encodes_repeats_once_and_replays_from_the_journal(
        tmp_path: Path, model: Embedder) -> None:
    texts = [f"Write a function number {i} that adds {i} to its argument." for i in range(150)]

    async def go(journal: Journal) -> Embedder:
        e = Embedder("all-MiniLM-L6-v2", journal, batch=64, wait_ms=50)
        await e.start()
        vecs = await asyncio.gather(*(e.embed(t) for t in texts + texts[:10]))
        assert all(abs(float(np.linalg.norm(v)) - 1) < 1e-4 for v in vecs)
        assert np.allclose(vecs[0], vecs[150])
        await e.close()
        return e

    journal = Journal(str(tmp_path / "j.sqlite"))
    first = asyncio.run(go(journal))
    assert first.encoded == 150 and first.batches == 3  # 64 + 64 + 22, the repeats share one encoding
    second = asyncio.run(go(journal))
    assert second.encoded == 0 and second.replayed == 150
    journal.close()


def test_an_unknown_embedding_model_stops_the_run_with_one_clear_error(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # as on a machine without network: fail at once, no retries
    proc = subprocess.run([sys.executable, "-m", "kodcode_async.cli", "run", "--subsets", "prefill", "--backend",
                           "recorded", "--recorded", "examples/synth/recorded.jsonl", "--out", str(out),
                           "--stop-after", "questions", "--embedding-model", "no-such-org/no-such-embedding-model"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "error: cannot load the embedding model 'no-such-org/no-such-embedding-model'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "questions.jsonl").exists()
