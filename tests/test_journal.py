"""The journal: what is persisted, keyed how, and read back after the process is gone."""

import sqlite3

from kodcode_async.journal import Journal, payload_hash


def test_payload_hash_is_stable_and_order_independent():
    a = payload_hash({"b": 1, "a": [1, 2]})
    assert a == payload_hash({"a": [1, 2], "b": 1}) and len(a) == 32
    assert a != payload_hash({"a": [2, 1], "b": 1}) and a != payload_hash({"a": [1, 2], "b": 2})


def test_records_are_keyed_by_kind_stage_item_attempt_and_payload(tmp_path):
    path = str(tmp_path / "j.sqlite")
    j = Journal(path)
    j.put("response", "solutions", "q1", 0, "h", {"texts": ["a"]})
    key = ("response", "solutions", "q1", 0, "h")
    assert j.get(*key) == {"texts": ["a"]} and j.hits == 1 and j.writes == 1
    for other in (("verdict", "solutions", "q1", 0, "h"), ("response", "style", "q1", 0, "h"),
                  ("response", "solutions", "q2", 0, "h"), ("response", "solutions", "q1", 1, "h"),
                  ("response", "solutions", "q1", 0, "other")):
        assert j.get(*other) is None
    assert j.hits == 1
    j.put("response", "solutions", "q1", 0, "h", {"texts": ["b"]})  # the same key again: replaced
    assert j.get(*key) == {"texts": ["b"]} and j.count("response") == 1 and j.count("verdict") == 0
    j.put("verdict", "solutions", "q1", 0, "h", {"status": "pass"})
    assert j.count("verdict") == 1 and j.writes == 3
    j.put_meta("fingerprint", {"model": "m"})
    assert j.get_meta("fingerprint") == {"model": "m"} and j.get_meta("missing") is None
    j.close()


def test_a_put_is_durable_before_the_next_call_returns(tmp_path):
    path = str(tmp_path / "j.sqlite")
    j = Journal(path)
    j.put("response", "s", "q", 0, "h", [1, 2, 3])
    # Another connection (as after a kill -9) sees it at once: autocommit, no open transaction.
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 1
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    j.close()
    again = Journal(path)
    assert again.get("response", "s", "q", 0, "h") == [1, 2, 3] and again.hits == 1 and again.writes == 0
    again.close()


def test_the_journal_can_be_used_from_another_thread_and_counts_every_hit(tmp_path):
    import threading

    path = str(tmp_path / "j.sqlite")
    j = Journal(path)
    assert j.path == path
    errors = []

    def other() -> None:
        try:
            j.put("response", "s", "q", 1, "h", "from a thread")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors == []
    for _ in range(3):
        assert j.get("response", "s", "q", 1, "h") == "from a thread"
    assert j.hits == 3
    # WAL with synchronous=NORMAL: a commit survives the process being killed (not power loss).
    assert j.db.execute("PRAGMA synchronous").fetchone()[0] == 1
    j.close()
