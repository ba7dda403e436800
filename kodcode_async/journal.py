"""What is persisted, and how a run resumes.

Every LLM response and every verdict is written to SQLite (WAL mode) *before* the engine
acts on it, keyed by (stage, item id, attempt, hash of the request payload). Writes are batched:
`await put(...)` queues the row and returns once the transaction that holds it has committed,
one transaction per event-loop tick (or per `BATCH_ROWS` rows), so a thousand answers that
arrive together cost one commit, and still no answer is used before it is on record. A re-run of the
same command finds them there and never asks the model or the sandbox twice. Output rows
are the other half: the writers' files are the record of finished items (see writers.py).

sqlite3 is called directly on the event loop: with WAL and synchronous=NORMAL a commit is a
write to the OS page cache (tens of microseconds), cheaper than a thread hop; a crash of the
process loses nothing that was committed, and kill -9 is a process crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import sqlite3
from collections.abc import Iterator

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


@contextlib.contextmanager
def storage_errors(path: str) -> Iterator[None]:
    """SQLite's "disk is full" and I/O errors as the OSError they are (ENOSPC, EIO) naming the file:
    callers and the CLI handle a full disk in one place, whatever wrote to it. Other SQLite errors
    (a bug, a corrupt file) stay what they are."""
    try:
        yield
    except sqlite3.Error as e:
        code = getattr(e, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL:
            raise OSError(errno.ENOSPC, "No space left on device", path) from e
        if code is not None and code & 0xFF in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
            raise OSError(errno.EIO, f"cannot write the journal ({e})", path) from e
        raise


BATCH_ROWS = 2000  # a tick with more answers than this commits early: bounded memory, bounded commit time
# A journal that was empty when opened (a new run) answers lookups of keys it never recorded
# without SQL: each put sets one bit of this many; a lookup whose bit is clear cannot be on record.
# 2 MiB; at a million records about 6% of lookups of unknown keys still go to SQLite.
SEEN_BITS = 1 << 24

Key = tuple[str, str, str, int, str]


def payload_hash(payload: object) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class Journal:
    def __init__(self, path: str) -> None:
        self.path = path
        with storage_errors(path):
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # SQL keywords and names are case-insensitive, so mutants that change their case are
            # equivalent; the SQL lines carry `pragma: no mutate` for that reason alone.
            self.db.execute("PRAGMA journal_mode=WAL")  # pragma: no mutate
            self.db.execute("PRAGMA synchronous=NORMAL")  # pragma: no mutate
            self.db.executescript(SCHEMA)
        self.hits = 0
        self.writes = 0
        self.commits = 0
        self._pending: dict[Key, bytes] = {}
        self._committed: asyncio.Future | None = None  # resolved when the pending rows are committed
        empty = self.db.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None  # pragma: no mutate
        self._seen = bytearray(SEEN_BITS // 8) if empty else None

    def _bit(self, key: Key) -> tuple[int, int]:
        # A filter: which bit a key gets changes how often a lookup still asks SQLite, never an
        # answer (a set bit only sends the lookup on), so mutants of these two lines are equivalent.
        h = hash(key) & (SEEN_BITS - 1)  # pragma: no mutate
        return h >> 3, 1 << (h & 7)  # pragma: no mutate

    def get(self, kind: str, stage: str, item_id: str, attempt: int, phash: str) -> object | None:
        key = (kind, stage, item_id, attempt, phash)
        pending = self._pending.get(key)
        if pending is not None:
            self.hits += 1
            return orjson.loads(pending)
        if self._seen is not None:
            byte, bit = self._bit(key)
            if not self._seen[byte] & bit:
                return None  # never put since the journal was opened empty
        row = self.db.execute(
            "SELECT body FROM records WHERE kind=? AND stage=? AND item_id=? AND attempt=? AND payload_hash=?",  # pragma: no mutate
            (kind, stage, item_id, attempt, phash)).fetchone()
        if row is None:
            return None
        self.hits += 1
        return orjson.loads(row[0])

    async def put(self, kind: str, stage: str, item_id: str, attempt: int, phash: str, body: object) -> None:
        """Record `body`; returns once it is committed (cancelling the caller does not un-record it)."""
        key = (kind, stage, item_id, attempt, phash)
        self._pending[key] = orjson.dumps(body)
        if self._seen is not None:
            byte, bit = self._bit(key)
            self._seen[byte] |= bit
        self.writes += 1
        if self._committed is None:
            loop = asyncio.get_running_loop()
            self._committed = loop.create_future()
            loop.call_soon(self.flush)
        committed = self._committed
        if len(self._pending) >= BATCH_ROWS:
            self.flush()
        await asyncio.shield(committed)

    def flush(self) -> None:
        """Commit every pending row in one transaction and wake their writers."""
        committed, self._committed = self._committed, None
        if self._pending:
            rows = [(*key, body) for key, body in self._pending.items()]
            self._pending = {}
            try:
                with storage_errors(self.path), self.db:  # one transaction
                    self.db.execute("BEGIN")  # pragma: no mutate
                    self.db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?)",  # pragma: no mutate
                                        rows)
            except (sqlite3.Error, OSError) as e:
                if committed is not None and not committed.done():
                    committed.set_exception(e)
                    return
                raise
            self.commits += 1
        if committed is not None and not committed.done():
            committed.set_result(None)

    def get_meta(self, key: str) -> object | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()  # pragma: no mutate
        return orjson.loads(row[0]) if row else None

    def put_meta(self, key: str, value: object) -> None:
        with storage_errors(self.path):
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, orjson.dumps(value)))  # pragma: no mutate

    def records(self, kind: str, stage: str) -> list[tuple[str, object]]:
        """(item id, body) of every committed record of `kind` and `stage`, oldest first."""
        self.flush()
        rows = self.db.execute("SELECT item_id, body FROM records WHERE kind=? AND stage=? ORDER BY rowid",  # pragma: no mutate
                               (kind, stage)).fetchall()
        return [(item_id, orjson.loads(body)) for item_id, body in rows]

    def count(self, kind: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM records WHERE kind=?", (kind,)).fetchone()[0]  # pragma: no mutate

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.db.close()
