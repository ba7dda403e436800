"""The run directory: which configuration owns it, what a new run moves aside, its manifest."""

import asyncio
import json
import os

import pytest

from kodcode_async.rundir import RunDir, RunDirMismatch, differences

FP = {"model": "m", "solve": {"attempts": 3, "limits": {"wall_s": 20}}, "stages": ["solutions"]}


def test_differences_name_every_changed_key_by_its_dotted_path_in_order():
    new = {"model": "n", "solve": {"attempts": 3, "limits": {"wall_s": 30}, "extra": 1}, "stages": ["solutions"],
           "added": True}
    assert differences(FP, new) == ["added: None -> True", "model: 'm' -> 'n'", "solve.extra: None -> 1",
                                    "solve.limits.wall_s: 20 -> 30"]
    assert differences(FP, FP) == []
    assert differences({"a": {"b": 1}}, {"a": 2}) == ["a: {'b': 1} -> 2"]  # a dict against a value is one change


def test_a_new_directory_is_claimed_and_the_same_configuration_resumes_it(tmp_path):
    d = RunDir(str(tmp_path / "run"))
    assert d.fingerprint() is None and d.check(FP) == ""
    d.claim(FP)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["fingerprint"] == FP and isinstance(saved["created"], float)
    (tmp_path / "run" / "verified.jsonl").write_text('{"question_id": "a"}\n')
    d.write_manifest(True, 0)
    d.claim(FP)  # resuming: same run.json, the manifest goes (the directory is being written again)
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == saved
    assert not (tmp_path / "run" / "manifest.json").exists()
    assert (tmp_path / "run" / "verified.jsonl").exists()


def test_another_configuration_is_refused_with_what_differs_unless_a_new_run_is_asked(tmp_path):
    path = str(tmp_path / "run")
    d = RunDir(path)
    d.claim(FP)
    (tmp_path / "run" / "verified.jsonl").write_text('{"question_id": "a"}\n')
    other = {**FP, "model": "n"}
    with pytest.raises(RunDirMismatch) as e:
        d.check(other)
    assert str(e.value) == (f"{path} belongs to a run with another configuration: model: 'm' -> 'n'. Resume it "
                            "with the same options, choose another --out, or pass --new-run to start a new run "
                            "there (the old files move to a replaced-* folder).")
    with pytest.raises(RunDirMismatch):
        d.claim(other)
    assert d.fingerprint() == FP  # a refused claim writes nothing
    assert d.check(other, new_run=True) == f"{path} belongs to a run with another configuration: model: 'm' -> 'n'"
    d.claim(other, new_run=True)
    assert d.fingerprint() == other and not (tmp_path / "run" / "verified.jsonl").exists()
    aside = [n for n in os.listdir(path) if n.startswith("replaced-")]
    assert len(aside) == 1 and sorted(os.listdir(tmp_path / "run" / aside[0])) == ["run.json", "verified.jsonl"]
    d.claim(FP, new_run=True)  # twice in one second: a second folder, nothing overwritten
    d.claim(other, new_run=True)
    folders = sorted(n for n in os.listdir(path) if n.startswith("replaced-"))
    assert len(folders) == 3 and all(os.listdir(tmp_path / "run" / f) == ["run.json"] for f in folders[1:])
    # new_run on the same configuration starts over too
    (tmp_path / "run" / "failed.jsonl").write_text("{}\n")
    d.claim(other, new_run=True)
    assert not (tmp_path / "run" / "failed.jsonl").exists() and d.fingerprint() == other


def test_files_without_a_run_json_or_a_file_in_the_way_are_refused(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    for name in ("a.jsonl", "b.json", "c.sqlite", "d.sqlite-wal", "e.sqlite-shm", "notes.txt"):
        (loose / name).write_text("x")
    with pytest.raises(RunDirMismatch) as e:
        RunDir(str(loose)).check(FP)
    assert str(e.value).startswith(f"{loose} holds files (a.jsonl, b.json, c.sqlite, d.sqlite-wal) but no run.json.")
    only_notes = tmp_path / "notes"
    only_notes.mkdir()
    (only_notes / "notes.txt").write_text("x")
    RunDir(str(only_notes)).claim(FP)  # files that are not a run's do not count
    assert RunDir(str(only_notes)).fingerprint() == FP
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunDirMismatch, match=f"^the run directory {f} exists and is a file$"):
        RunDir(str(f)).check(FP)


@pytest.mark.parametrize("content", ["not json", '{"no": "fingerprint"}', "[1, 2]", '"text"'])
def test_an_unreadable_run_json_has_no_fingerprint(tmp_path, content):
    (tmp_path / "run.json").write_text(content)
    assert RunDir(str(tmp_path)).fingerprint() is None


def test_rows_recovery_writers_and_the_manifest(tmp_path):
    d = RunDir(str(tmp_path))
    assert list(d.rows("verified.jsonl")) == []
    (tmp_path / "verified.jsonl").write_bytes(b'{"question_id": "a"}\n{"question_id": "b"}\n{"question_id": "c"')
    done = d.recover("verified.jsonl")
    assert set(done) == {"a", "b"} and [r["question_id"] for r in d.rows("verified.jsonl")] == ["a", "b"]
    assert set(d.recover("verified.jsonl", into=done)) == {"a", "b"}
    (tmp_path / "other.jsonl").write_text('{"id": "x"}\n')
    assert set(d.recover("other.jsonl", key="id", into=done)) == {"a", "b", "x"}
    assert d.writer("failed.jsonl") is d.writer("failed.jsonl")

    async def write():
        await d.writer("failed.jsonl").write({"question_id": "z"})
        await d.close()

    asyncio.run(write())
    d.write_stats({"questions": 3})
    d.write_manifest(False, 2)
    assert json.loads((tmp_path / "stats.json").read_text()) == {"questions": 3}
    assert json.loads((tmp_path / "manifest.json").read_text()) == {
        "complete": False, "unfinished": 2, "files": {"failed.jsonl": 1, "other.jsonl": 1, "verified.jsonl": 2},
        "stats": "stats.json", "journal": "journal.sqlite", "run": "run.json"}
