"""What is persisted, and how a run resumes.

Every LLM response and every verdict is written to SQLite (WAL mode) *before* the engine
acts on it, keyed by (stage, item id, attempt, hash of the request payload). A re-run of the
same command finds them there and never asks the model or the sandbox twice. Output rows
are the other half: the writers' files are the record of finished items (see writers.py).

sqlite3 is called directly on the event loop: with WAL and synchronous=NORMAL a commit is a
write to the OS page cache (tens of microseconds), cheaper than a thread hop; a crash of the
process loses nothing that was committed, and kill -9 is a process crash.
"""

from __future__ import annotations

import hashlib
import sqlite3

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,          -- 'response' or 'verdict'
    stage TEXT NOT NULL,
    item_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    payload_hash TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (kind, stage, item_id, attempt, payload_hash)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


def payload_hash(payload: object) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class Journal:
    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # SQL keywords and names are case-insensitive, so mutants that change their case are
        # equivalent; the SQL lines carry `pragma: no mutate` for that reason alone.
        self.db.execute("PRAGMA journal_mode=WAL")  # pragma: no mutate
        self.db.execute("PRAGMA synchronous=NORMAL")  # pragma: no mutate
        self.db.executescript(SCHEMA)
        self.hits = 0
        self.writes = 0

    def get(self, kind: str, stage: str, item_id: str, attempt: int, phash: str) -> object | None:
        row = self.db.execute(
            "SELECT body FROM records WHERE kind=? AND stage=? AND item_id=? AND attempt=? AND payload_hash=?",  # pragma: no mutate
            (kind, stage, item_id, attempt, phash)).fetchone()
        if row is None:
            return None
        self.hits += 1
        return orjson.loads(row[0])

    def put(self, kind: str, stage: str, item_id: str, attempt: int, phash: str, body: object) -> None:
        self.db.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?)",  # pragma: no mutate
                        (kind, stage, item_id, attempt, phash, orjson.dumps(body)))
        self.writes += 1

    def get_meta(self, key: str) -> object | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()  # pragma: no mutate
        return orjson.loads(row[0]) if row else None

    def put_meta(self, key: str, value: object) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, orjson.dumps(value)))  # pragma: no mutate

    def count(self, kind: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM records WHERE kind=?", (kind,)).fetchone()[0]  # pragma: no mutate

    def close(self) -> None:
        self.db.close()
