"""A run directory: its files, torn-line recovery, which configuration it belongs to, its manifest.

    RUN_DIR/
      run.json          the fingerprint of what shapes the rows (model, attempts, prompts, limits, stages)
      journal.sqlite    every answer and verdict, written before use (journal.py)
      <stage files>     verified.jsonl, failed.jsonl, verified_complete.jsonl, ... (append-only)
      stats.json        the run report, rewritten as the run goes and at its end
      manifest.json     written last: row counts, and `complete` only when nothing is left to do

A directory belongs to one configuration. Running into it again with the same one resumes;
with a different one is refused (RunDirMismatch names what differs) unless a new run is asked
for, which moves the old files to `replaced-<time>/` inside it: nothing is deleted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import orjson

from kodcode_async.idset import IdSet
from kodcode_async.jsonl import count_rows, iter_lines
from kodcode_async.writers import JsonlWriter, recover_jsonl, write_json_atomic

RUN_JSON, JOURNAL, STATS, MANIFEST = "run.json", "journal.sqlite", "stats.json", "manifest.json"


class RunDirMismatch(ValueError):
    """The run directory was made by a different configuration."""


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'key: old -> new' for every key whose value differs (nested dicts by dotted key)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


class RunDir:
    def __init__(self, path: str) -> None:
        self.path = path
        self._writers: dict[str, JsonlWriter] = {}

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _run_files(self) -> list[str]:
        if not os.path.isdir(self.path):
            return []
        return sorted(n for n in os.listdir(self.path)
                      if n.endswith((".jsonl", ".json", ".sqlite", ".sqlite-wal", ".sqlite-shm")))

    def claim(self, fingerprint: dict, new_run: bool = False) -> None:
        """Make this directory this configuration's: create it, or check it is already, or (new_run)
        move the old run aside. Raises RunDirMismatch with the differences."""
        problem = self.check(fingerprint, new_run)
        existing = self._run_files()
        if existing and (problem or new_run):
            self._move_aside(existing)
        os.makedirs(self.path, exist_ok=True)
        if self.fingerprint() is None:
            write_json_atomic(self.file(RUN_JSON), {"fingerprint": fingerprint, "created": time.time()})
        if os.path.exists(self.file(MANIFEST)):
            os.remove(self.file(MANIFEST))  # the directory is being written again

    def check(self, fingerprint: dict, new_run: bool = False) -> str:
        """Raise RunDirMismatch if this directory belongs to another configuration (unless new_run);
        writes nothing. Returns the mismatch that new_run overrides ("" when none)."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunDirMismatch(f"the run directory {self.path} exists and is a file")
        existing = self._run_files()
        problem = ""
        if existing:
            old = self.fingerprint()
            if old is None:
                problem = f"{self.path} holds files ({', '.join(existing[:4])}) but no {RUN_JSON}"
            elif old != fingerprint:
                problem = (f"{self.path} belongs to a run with another configuration: "
                           + "; ".join(differences(old, fingerprint)))
            if problem and not new_run:
                raise RunDirMismatch(f"{problem}. Resume it with the same options, choose another --out, or pass "
                                     "--new-run to start a new run there (the old files move to a replaced-* folder).")
        return problem

    def _move_aside(self, names: list[str]) -> None:
        aside = self.file(time.strftime("replaced-%Y%m%d-%H%M%S"))
        while os.path.exists(aside):
            aside += "x"
        os.makedirs(aside)
        for name in names:
            os.replace(self.file(name), os.path.join(aside, name))

    def fingerprint(self) -> dict | None:
        try:
            with open(self.file(RUN_JSON), "rb") as f:
                return orjson.loads(f.read())["fingerprint"]
        except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError):
            return None

    def recover(self, name: str, key: str = "question_id", into: IdSet | None = None) -> IdSet:
        """Keys of the complete rows of one output file (a torn last line is cut off), added to
        `into` (a new IdSet when None): kept on disk, as a KodCode-sized run has ~450k."""
        return recover_jsonl(self.file(name), key, IdSet() if into is None else into)

    def rows(self, name: str) -> Iterator[dict]:
        """The rows of one output file (none when it does not exist yet)."""
        path = self.file(name)
        if os.path.exists(path):
            for _, line in iter_lines(path):
                yield orjson.loads(line)

    def writer(self, name: str) -> JsonlWriter:
        if name not in self._writers:
            self._writers[name] = JsonlWriter(self.file(name))
        return self._writers[name]

    async def close(self) -> None:
        for w in self._writers.values():
            await w.close()

    def write_stats(self, stats: dict) -> None:
        write_json_atomic(self.file(STATS), stats)

    def write_manifest(self, complete: bool, unfinished: int) -> None:
        """Written last and atomically; `complete` means every input item is finished."""
        files = {n: count_rows(self.file(n)) for n in self._run_files() if n.endswith(".jsonl")}
        write_json_atomic(self.file(MANIFEST), {"complete": complete, "unfinished": unfinished, "files": files,
                                               "stats": STATS, "journal": JOURNAL, "run": RUN_JSON})
