"""The journal: what is persisted, keyed how, and read back after the process is gone."""

import asyncio
import sqlite3

from kodcode_async.journal import Journal, payload_hash


def test_payload_hash_is_stable_and_order_independent():
    a = payload_hash({"b": 1, "a": [1, 2]})
    assert a == payload_hash({"a": [1, 2], "b": 1}) and len(a) == 32
    assert a != payload_hash({"a": [2, 1], "b": 1}) and a != payload_hash({"a": [1, 2], "b": 2})


def test_records_are_keyed_by_kind_stage_item_attempt_and_payload(tmp_path):
    async def main():
        j = Journal(str(tmp_path / "j.sqlite"))
        await j.put("response", "solutions", "q1", 0, "h", {"texts": ["a"]})
        key = ("response", "solutions", "q1", 0, "h")
        assert j.get(*key) == {"texts": ["a"]} and j.hits == 1 and j.writes == 1
        for other in (("verdict", "solutions", "q1", 0, "h"), ("response", "style", "q1", 0, "h"),
                      ("response", "solutions", "q2", 0, "h"), ("response", "solutions", "q1", 1, "h"),
                      ("response", "solutions", "q1", 0, "other")):
            assert j.get(*other) is None
        assert j.hits == 1
        await j.put("response", "solutions", "q1", 0, "h", {"texts": ["b"]})  # the same key again: replaced
        assert j.get(*key) == {"texts": ["b"]} and j.count("response") == 1 and j.count("verdict") == 0
        await j.put("verdict", "solutions", "q1", 0, "h", {"status": "pass"})
        assert j.count("verdict") == 1 and j.writes == 3
        j.put_meta("fingerprint", {"model": "m"})
        assert j.get_meta("fingerprint") == {"model": "m"} and j.get_meta("missing") is None
        j.close()

    asyncio.run(main())


def test_a_put_is_committed_before_it_returns_and_puts_of_one_tick_share_one_commit(tmp_path):
    path = str(tmp_path / "j.sqlite")
    other = sqlite3.connect(path)

    async def main():
        j = Journal(path)
        await j.put("response", "s", "q", 0, "h", [1, 2, 3])
        # Another connection (as after a kill -9) sees it as soon as put returned.
        assert other.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 1
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # A thousand answers arriving together: one transaction, every put returns after it.
        commits = j.commits
        await asyncio.gather(*(j.put("response", "s", f"q{i}", 0, "h", i) for i in range(1000)))
        assert other.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 1001
        assert j.commits == commits + 1
        # Read before the commit: the pending row is already visible to this journal.
        task = asyncio.ensure_future(j.put("response", "s", "pending", 0, "h", "soon"))
        await asyncio.sleep(0)
        assert j.get("response", "s", "pending", 0, "h") == "soon"
        await task
        # A putter cancelled while waiting does not un-record its row.
        task = asyncio.ensure_future(j.put("response", "s", "cancelled", 0, "h", "kept"))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0.01)
        assert other.execute("SELECT COUNT(*) FROM records WHERE item_id='cancelled'").fetchone()[0] == 1
        # WAL with synchronous=NORMAL: a commit survives the process being killed (not power loss).
        assert j.db.execute("PRAGMA synchronous").fetchone()[0] == 1
        j.close()

    asyncio.run(main())
    other.close()
    again = Journal(path)
    assert again.get("response", "s", "q", 0, "h") == [1, 2, 3] and again.hits == 1 and again.writes == 0
    again.close()


def test_more_rows_than_a_batch_in_one_tick_commit_early(tmp_path):
    from kodcode_async.journal import BATCH_ROWS

    async def main():
        j = Journal(str(tmp_path / "j.sqlite"))
        await asyncio.gather(*(j.put("verdict", "s", f"q{i}", 0, "h", i) for i in range(2 * BATCH_ROWS + 1)))
        assert j.count("verdict") == 2 * BATCH_ROWS + 1 and j.commits == 3
        j.close()

    asyncio.run(main())


def test_a_journal_opened_empty_answers_unknown_keys_without_sql_and_still_finds_its_own(tmp_path, monkeypatch):
    import kodcode_async.journal as journal

    path = str(tmp_path / "j.sqlite")
    statements: list[str] = []

    async def fresh():
        j = Journal(path)
        j.db.set_trace_callback(statements.append)
        for i in range(500):
            assert j.get("response", "solutions", f"q{i}", 0, "h") is None
        assert not any(s.startswith("SELECT") for s in statements)  # a new run's lookups cost no SQL
        await j.put("response", "solutions", "q1", 0, "h", {"texts": ["a"]})
        assert j.get("response", "solutions", "q1", 0, "h") == {"texts": ["a"]}  # committed this run: found
        j.close()

    asyncio.run(fresh())

    async def collide():  # one bit for every key: each lookup after a put goes to SQL, and SQL decides
        j = Journal(str(tmp_path / "tiny.sqlite"))
        await j.put("response", "solutions", "q1", 0, "h", {"texts": ["a"]})
        assert j.get("response", "solutions", "q2", 0, "h") is None
        assert j.get("response", "solutions", "q1", 0, "h") == {"texts": ["a"]}
        j.close()

    monkeypatch.setattr(journal, "SEEN_BITS", 8)
    asyncio.run(collide())
    monkeypatch.undo()

    async def reopened():  # a journal with records (a resumed run) looks every key up
        j = Journal(path)
        statements.clear()
        j.db.set_trace_callback(statements.append)
        assert j.get("response", "solutions", "q1", 0, "h") == {"texts": ["a"]}
        assert j.get("response", "solutions", "q2", 0, "h") is None
        assert sum(s.startswith("SELECT") for s in statements) == 2
        j.close()

    asyncio.run(reopened())


def test_every_key_put_into_a_new_journal_is_found_again(tmp_path, monkeypatch):
    # A small seen-bitmap (512 bytes) for 2,000 keys: most bytes hold several keys' bits, so each
    # put must add its bit, not replace the byte.
    from kodcode_async import journal

    monkeypatch.setattr(journal, "SEEN_BITS", 1 << 12)
    j = Journal(str(tmp_path / "j.sqlite"))
    keys = [("llm", "solutions", f"q{i}", i % 3, "h") for i in range(2_000)]

    async def put_all():
        await asyncio.gather(*(j.put(*k, {"n": n}) for n, k in enumerate(keys)))

    asyncio.run(put_all())
    assert all(j.get(*k) == {"n": n} for n, k in enumerate(keys))
    j.close()


def test_a_full_journal_fails_every_waiting_put_with_enospc_naming_the_file(tmp_path):
    import errno

    import pytest

    path = str(tmp_path / "j.sqlite")
    j = Journal(path)
    pages = j.db.execute("PRAGMA page_count").fetchone()[0]
    j.db.execute(f"PRAGMA max_page_count = {pages + 1}")  # SQLite's own "database or disk is full"
    big = {"text": "x" * 50_000}

    async def two():
        return await asyncio.gather(j.put("llm", "s", "a", 0, "h", big), j.put("llm", "s", "b", 0, "h", big),
                                    return_exceptions=True)

    a, b = asyncio.run(two())
    assert a is b and isinstance(a, OSError) and a.errno == errno.ENOSPC and a.filename == path
    with pytest.raises(OSError) as e:
        j.put_meta("big", big)
    assert e.value.errno == errno.ENOSPC and e.value.filename == path
    j.db.execute("PRAGMA max_page_count = 1000000")
    j.put_meta("small", 1)
    assert j.get_meta("small") == 1
    j.close()


def test_hits_count_answers_found_and_a_journal_that_cannot_open_names_its_path(tmp_path):
    import errno

    import pytest

    j = Journal(str(tmp_path / "j.sqlite"))

    async def go():
        await j.put("llm", "s", "a", 0, "h", 1)
        j._pending[("llm", "s", "b", 0, "h")] = b"2"  # pending, not yet committed
        return j.get("llm", "s", "b", 0, "h"), j.get("llm", "s", "a", 0, "h"), j.get("llm", "s", "z", 0, "h")

    assert asyncio.run(go()) == (2, 1, None) and j.hits == 2
    j._pending.clear()
    j.db.execute(f"PRAGMA max_page_count = {j.db.execute('PRAGMA page_count').fetchone()[0]}")
    j._pending[("llm", "s", "c", 0, "h")] = b'"' + b"x" * 50_000 + b'"'
    with pytest.raises(OSError) as e:  # no put waiting: the flush raises it itself
        j.flush()
    assert e.value.errno == errno.ENOSPC
    j.db.close()
    missing = str(tmp_path / "no-such-dir" / "j.sqlite")
    with pytest.raises(OSError) as e:
        Journal(missing)
    assert e.value.filename == missing
