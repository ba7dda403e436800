"""Output files: torn-line recovery after a crash, appends, atomic JSON."""

import asyncio
import json
import os

from kodcode_async.writers import JsonlWriter, recover_jsonl, write_json_atomic


def test_recover_keeps_complete_rows_and_cuts_a_torn_tail(tmp_path):
    p = tmp_path / "v.jsonl"
    p.write_bytes(b'{"question_id": "a"}\n{"question_id": 7}\n{"question_id": "c", "x": [1, 2')
    assert recover_jsonl(str(p), "question_id") == {"a", "7"}
    assert p.read_bytes() == b'{"question_id": "a"}\n{"question_id": 7}\n'


def test_recover_cuts_at_the_first_bad_line_and_handles_missing_and_empty_files(tmp_path):
    p = tmp_path / "v.jsonl"
    p.write_bytes(b'{"question_id": "a"}\nnot json\n{"question_id": "c"}\n')
    assert recover_jsonl(str(p), "question_id") == {"a"}
    assert p.read_bytes() == b'{"question_id": "a"}\n'
    assert recover_jsonl(str(tmp_path / "missing.jsonl"), "question_id") == set()
    assert not (tmp_path / "missing.jsonl").exists()
    e = tmp_path / "e.jsonl"
    e.write_bytes(b"")
    assert recover_jsonl(str(e), "question_id") == set() and e.read_bytes() == b""
    whole = tmp_path / "w.jsonl"
    whole.write_bytes(b'{"id": 1}\n{"id": 2}\n')
    assert recover_jsonl(str(whole), "id") == {"1", "2"} and whole.read_bytes() == b'{"id": 1}\n{"id": 2}\n'
    nokey = tmp_path / "n.jsonl"
    nokey.write_bytes(b'{"other": 1}\n')
    assert recover_jsonl(str(nokey), "id") == {"None"}


def test_writer_appends_rows_after_recovery(tmp_path):
    p = tmp_path / "v.jsonl"
    p.write_bytes(b'{"question_id": "a"}\n{"question_id": "b", "torn')
    recover_jsonl(str(p), "question_id")

    async def main():
        w = JsonlWriter(str(p))
        await w.write({"question_id": "b"})
        await w.write({"question_id": "c", "n": 1})
        rows = w.rows
        await w.close()
        assert w._f is None  # closed, and written again only by reopening
        await w.close()  # twice is fine
        return rows

    assert asyncio.run(main()) == 2
    assert [json.loads(x)["question_id"] for x in p.read_bytes().splitlines()] == ["a", "b", "c"]


def test_write_json_atomic_replaces_whole_files(tmp_path):
    p = tmp_path / "stats.json"
    write_json_atomic(str(p), {"a": 1})
    write_json_atomic(str(p), {"b": [1, 2]})
    assert p.read_text() == '{\n  "b": [\n    1,\n    2\n  ]\n}'  # indented for people reading stats.json
    assert sorted(os.listdir(tmp_path)) == ["stats.json"]


def test_rows_of_one_tick_go_out_in_one_write_and_each_write_returns_after_it(tmp_path):
    p = tmp_path / "v.jsonl"

    async def main():
        w = JsonlWriter(str(p))
        await asyncio.gather(*(w.write({"question_id": i}) for i in range(500)))
        assert w.writes == 1 and len(p.read_bytes().splitlines()) == 500  # on disk when write returned
        await w.write({"question_id": "last"})
        assert w.writes == 2 and p.read_bytes().endswith(b'{"question_id":"last"}\n')
        await w.close()

    asyncio.run(main())
