"""IdSet: the on-disk set of ids a run keeps (inputs met, items finished earlier)."""

from kodcode_async.idset import IdSet
from kodcode_async.writers import recover_jsonl


def test_idset_behaves_as_a_set_of_strings():
    s = IdSet(["a", "b", "a"])
    assert len(s) == 2 and "a" in s and "b" in s and "c" not in s
    assert s.add("c") is True and s.add("c") is False and s.add("a") is False
    assert len(s) == 3
    s.update(["d", "a", "e", "d"])
    assert len(s) == 5 and set(s) == {"a", "b", "c", "d", "e"}
    assert 1 not in s and None not in s  # only strings are ids
    assert "" not in s and s.add("") and "" in s and len(s) == 6
    assert repr(s) == "IdSet(6 ids)"


def test_two_idsets_are_independent():
    a, b = IdSet(["x"]), IdSet()
    assert "x" in a and "x" not in b and len(b) == 0
    b.add("y")
    assert "y" not in a


def test_idset_holds_many_ids_exactly():
    ids = [f"q{i:07d}" for i in range(0, 60_000, 3)]
    s = IdSet(ids)
    assert len(s) == len(ids)
    assert all(i in s for i in ids[::97]) and not any(f"q{i:07d}" in s for i in range(1, 60_000, 3 * 97))
    assert sum(1 for _ in s) == len(ids)


def test_recover_fills_the_idset_it_is_given(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_bytes(b'{"question_id": "a"}\n{"question_id": "b"}\n{"question_id": "c"')
    done = IdSet(["z"])
    assert recover_jsonl(str(p), "question_id", done) is done
    assert set(done) == {"z", "a", "b"} and len(done) == 3
    assert p.read_bytes() == b'{"question_id": "a"}\n{"question_id": "b"}\n'


def test_reading_input_refuses_a_repeated_id_and_skips_finished_ones(tmp_path):
    import asyncio

    from kodcode_async.run import read_items, shard_of
    from kodcode_async.stages.base import question_item

    p = tmp_path / "q.jsonl"
    ids = ["a", "b", "a", "c", "d", "b", "e"]
    p.write_text("".join(f'{{"question_id": "{i}", "question": "Write f{i}."}}\n' for i in ids))

    async def read(skip, shard=None):
        rejected: list[dict] = []
        got = [item.id async for item in read_items(str(p), question_item, skip, rejected, shard=shard)]
        return got, rejected

    got, rejected = asyncio.run(read(IdSet(["c"])))
    assert got == ["a", "b", "d", "e"]  # c finished earlier; the second a and b are refused
    assert [(r["line"], r["question_id"], r["reason"]) for r in rejected] == [
        (3, "a", "duplicate question_id"), (6, "b", "duplicate question_id")]
    # Each shard keeps its own ids and refuses the repeats among them.
    per_shard = [asyncio.run(read(set(), (k, 2))) for k in range(2)]
    assert sorted(i for got, _ in per_shard for i in got) == ["a", "b", "c", "d", "e"]
    assert all(shard_of(i, 2) == k for k, (got, _) in enumerate(per_shard) for i in got)
    assert sorted(r["line"] for _, rej in per_shard for r in rej) == [3, 6]


def test_a_full_temporary_directory_is_an_enospc_naming_it():
    import errno
    import tempfile

    import pytest

    s = IdSet(["a"])
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    with pytest.raises(OSError) as e:
        s.update(f"id-{i:06d}-{'x' * 40}" for i in range(5000))
    assert e.value.errno == errno.ENOSPC and e.value.filename == tempfile.gettempdir()
    first = e.value
    # Without a rollback journal the database may now be inconsistent: every later use says the same.
    for use in (lambda: s.add("b"), lambda: "a" in s, lambda: s.update(["c"])):
        with pytest.raises(OSError) as e:
            use()
        assert e.value is first
