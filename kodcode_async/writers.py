"""Output files: append-only JSONL (orjson), recovered on resume, stats written atomically."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import orjson

from kodcode_async.idset import IdSet


def recover_jsonl(path: str, key: str, into: set[str] | IdSet | None = None) -> set[str] | IdSet:
    """Keys of the complete rows already in `path`, added to `into` (a new set when None) and
    returned; a torn last line (kill -9 mid-write) is cut off."""
    done = set() if into is None else into
    if not os.path.exists(path):
        return done
    good_end = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                break
            done.add(str(row.get(key)))
            good_end += len(line)
    if good_end != os.path.getsize(path):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return done


class JsonlWriter:
    """One file, appended row by row; `await write(row)` returns once the row is in the OS.

    Rows written in the same event-loop tick go out in one `write` system call: a burst of
    finished items costs one call, not one thread hop each. The write is a plain append to the
    page cache, done on the loop (cheaper than a hop); a kill -9 mid-write leaves at most a torn
    last line, which `recover_jsonl` cuts off.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows = 0
        self.writes = 0  # system calls
        self._f = None
        self._buffer: list[bytes] = []
        self._written: asyncio.Future | None = None

    async def write(self, row: dict) -> None:
        self._buffer.append(orjson.dumps(row) + b"\n")
        self.rows += 1
        if self._written is None:
            loop = asyncio.get_running_loop()
            self._written = loop.create_future()
            loop.call_soon(self.flush)
        await asyncio.shield(self._written)

    def flush(self) -> None:
        """Write every buffered row now and wake their writers."""
        written, self._written = self._written, None
        try:
            if self._buffer:
                data, self._buffer = b"".join(self._buffer), []
                if self._f is None:
                    self._f = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open, closed in close()
                view = memoryview(data)
                while view:
                    view = view[self._f.write(view):]
                self.writes += 1
        except OSError as e:
            if e.filename is None:
                e.filename = self.path  # a failed write(2) names no file; the user needs to know which
            if written is not None and not written.done():
                written.set_exception(e)
                return
            raise
        if written is not None and not written.done():
            written.set_result(None)

    async def close(self) -> None:
        self.flush()
        if self._f is not None:
            self._f.close()
            self._f = None


@contextlib.contextmanager
def replacing(path: str, suffix: str = ".tmp") -> Iterator[str]:
    """A temporary path beside `path` to write to: when the block ends normally it replaces
    `path` (which holds the old content or the new, never a part); when it raises (a full disk),
    the temporary file is removed and `path` keeps what it held."""
    tmp = path + suffix  # pragma: no mutate - any name beside the output works
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str, data: object) -> None:
    """`path` holds the old content or the new, never a part; a failed write (a full disk) leaves
    no temporary file behind."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        f.flush()
        os.fsync(f.fileno())
