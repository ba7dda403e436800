"""Output files: append-only JSONL (orjson + aiofiles), recovered on resume, stats written atomically."""

from __future__ import annotations

import os

import aiofiles
import orjson


def recover_jsonl(path: str, key: str) -> set[str]:
    """Keys of the complete rows already in `path`; a torn last line (kill -9 mid-write) is cut off."""
    done: set[str] = set()
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
    """One file, appended row by row; every row is flushed to the OS before `write` returns."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows = 0
        self._f = None

    async def write(self, row: dict) -> None:
        if self._f is None:
            self._f = await aiofiles.open(self.path, "ab")
        await self._f.write(orjson.dumps(row) + b"\n")
        await self._f.flush()
        self.rows += 1

    async def close(self) -> None:
        if self._f is not None:
            await self._f.close()
            self._f = None


def write_json_atomic(path: str, data: object) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
