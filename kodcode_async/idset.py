"""A set of item ids that lives on disk, so a run's memory does not grow with its input.

A run keeps the ids it has met (to refuse a repeated `question_id`) and the ids earlier runs
finished (to skip them on resume). KodCode-sized inputs have ~450k ids; as a Python set they
cost ~100 bytes each, 40 MB at 400k and growing with every row. `IdSet` keeps them in SQLite's
private temporary database (an empty file name: a file in the temporary directory that SQLite
deletes when the connection closes) behind a page cache of 2 MB, so memory stays flat and
lookups stay ~2 us however many ids there are (benchmarks/kodcode_scale.py measures the run).

One connection, used from one thread: the event loop's (the run's stages and writers). When
the temporary directory is full, a write raises OSError (ENOSPC) naming it, as the journal does,
so the CLI says so in one line. With no rollback journal a failed write may leave the
temporary database inconsistent, so after one such error every later use raises the same error.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterable, Iterator

from kodcode_async.journal import storage_errors

_ADD = "INSERT OR IGNORE INTO ids VALUES (?)"
_HAS = "SELECT 1 FROM ids WHERE id = ?"


class IdSet:
    """`add`, `in`, `len` and iteration, like a set of str; nothing is kept in Python objects."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        # Nothing here must survive a crash (the ids are rebuilt from the output files on every
        # start), so no rollback journal and no syncs; one open transaction for the whole life.
        # SQL keywords and names ignore case, and the explicit BEGIN opens the transaction the
        # default isolation level would open too: mutants of these lines are equivalent.
        self._db = sqlite3.connect("", isolation_level=None)  # pragma: no mutate
        self._db.execute("PRAGMA journal_mode = OFF")  # pragma: no mutate
        self._db.execute("PRAGMA synchronous = OFF")  # pragma: no mutate
        self._db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY) WITHOUT ROWID")  # pragma: no mutate
        self._db.execute("BEGIN")  # pragma: no mutate
        self._len = 0
        self._broken: OSError | None = None
        self.update(ids)

    def _failed(self, error: sqlite3.Error) -> OSError:
        """The OSError a full temporary directory is (any other SQLite error is raised as it is);
        remembered, since the database may be inconsistent after it."""
        try:
            with storage_errors(tempfile.gettempdir()):
                raise error
        except OSError as e:
            self._broken = e
            return e

    def _usable(self) -> None:
        if self._broken is not None:
            raise self._broken

    def add(self, item_id: str) -> bool:
        """Add one id; True when it was not there yet."""
        self._usable()
        try:
            new = self._db.execute(_ADD, (item_id,)).rowcount == 1
        except sqlite3.Error as e:
            raise self._failed(e) from e
        self._len += new
        return new

    def update(self, ids: Iterable[str]) -> None:
        self._usable()
        before = self._db.total_changes
        try:
            self._db.executemany(_ADD, ((i,) for i in ids))
        except sqlite3.Error as e:
            raise self._failed(e) from e
        self._len += self._db.total_changes - before

    def __contains__(self, item_id: object) -> bool:
        self._usable()
        # An empty set (a first run's finished items: asked once per item) answers without SQL.
        return bool(self._len) and isinstance(item_id, str) and self._db.execute(_HAS, (item_id,)).fetchone() is not None

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        return (row[0] for row in self._db.execute("SELECT id FROM ids"))  # pragma: no mutate

    def __repr__(self) -> str:
        return f"IdSet({self._len} ids)"

    def close(self) -> None:
        self._db.close()
