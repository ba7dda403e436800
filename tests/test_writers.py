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


def test_rows_of_one_tick_go_out_in_one_write_and_a_full_disk_reaches_every_writer(tmp_path):
    import asyncio
    import errno

    import pytest

    async def two(path):
        w = JsonlWriter(path)
        results = await asyncio.gather(w.write({"a": 1}), w.write({"b": 2}), return_exceptions=True)
        await w.close() if not any(isinstance(r, Exception) for r in results) else None
        return w, results

    p = tmp_path / "out.jsonl"
    w, results = asyncio.run(two(str(p)))
    assert results == [None, None] and w.writes == 1 and w.rows == 2
    assert p.read_bytes() == b'{"a":1}\n{"b":2}\n'
    # /dev/full: every write(2) fails with ENOSPC, naming no file; both writers hear it, with the path.
    w, results = asyncio.run(two("/dev/full"))
    assert [type(r) for r in results] == [OSError, OSError] and results[0] is results[1]
    assert results[0].errno == errno.ENOSPC and results[0].filename == "/dev/full"
    # A flush with no writer waiting raises it itself.
    w = JsonlWriter("/dev/full")
    w._buffer.append(b"x\n")
    with pytest.raises(OSError) as e:
        w.flush()
    assert e.value.errno == errno.ENOSPC and e.value.filename == "/dev/full"


def test_a_failed_atomic_write_leaves_the_old_content_and_no_temporary_file(tmp_path):
    import pytest

    target = tmp_path / "stats.json"
    target.mkdir()  # the final rename fails: a directory is in the way
    with pytest.raises(OSError):
        write_json_atomic(str(target), {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json"]
