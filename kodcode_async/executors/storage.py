"""Run directories at an fsspec URL (s3://, gs://, abfs://, ...), for the Ray executor.

A run directory holds a SQLite journal and append-only JSONL files: both need a POSIX filesystem.
On an object store, each process works in a local mirror instead and copies it up:

    URL/shards/00003/  ◄── push every MIRROR_S and at the end ── /tmp/…/shard (the runner's run dir)
                        ── pull at start ──────────────────────►

* The journal is pushed as a consistent snapshot (SQLite's online backup, taken while the run
  writes), the JSONL files as they are; every object is replaced whole, so a reader never sees
  half a file.
* A runner that dies loses what it did since its last push: those items are redone and their
  requests asked again when the shard resumes, never lost and never written twice (rows mark
  items finished, and the pushed rows and journal are each consistent on their own).
* Object stores have no locks: one writer per shard relies on Ray starting a shard's runner again
  only after the old one is dead.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile

from kodcode_async.rundir import JOURNAL

MIRROR_S = 30.0  # seconds between pushes of a running shard: what a crash may cost in redone work


def is_url(path: str) -> bool:
    return "://" in path


def _fs(url: str):  # noqa: ANN202 - fsspec types are optional
    try:
        import fsspec
    except ImportError as e:
        raise RuntimeError(f"{url}: a run directory at a URL needs fsspec (and its driver for the scheme, "
                           "e.g. s3fs): pip install 'kodcode-async[ray]' s3fs") from e
    return fsspec.core.url_to_fs(url)


class Mirror:
    """A local copy of the run directory at `url`."""

    def __init__(self, url: str, local: str) -> None:
        self.url, self.local = url.rstrip("/"), local
        self.fs, self.root = _fs(self.url)

    def pull(self, only_top: bool = False, suffixes: tuple[str, ...] = ()) -> None:
        """Copy what exists at the URL here: files of the top level only, or everything; only names
        with these suffixes when given."""
        os.makedirs(self.local, exist_ok=True)
        if not self.fs.exists(self.root):
            return
        for info in self.fs.ls(self.root, detail=True):
            name = os.path.basename(info["name"].rstrip("/"))
            if info["type"] == "directory":
                if not only_top:
                    Mirror(f"{self.url}/{name}", os.path.join(self.local, name)).pull(suffixes=suffixes)
            elif not suffixes or name.endswith(suffixes):
                self.fs.get_file(info["name"], os.path.join(self.local, name))

    def push(self, names: list[str] | None = None) -> None:
        """Copy the local files up (these names, or every file of the top level); the journal as a
        consistent snapshot."""
        self.fs.makedirs(self.root, exist_ok=True)
        for name in sorted(names if names is not None else os.listdir(self.local)):
            path = os.path.join(self.local, name)
            if not os.path.isfile(path) or name.endswith((".sqlite-wal", ".sqlite-shm", ".lock")):
                continue
            if name == JOURNAL:
                with tempfile.TemporaryDirectory(prefix="kodcode-journal-") as tmp:
                    snapshot = os.path.join(tmp, JOURNAL)
                    src, dst = sqlite3.connect(path), sqlite3.connect(snapshot)
                    try:
                        src.backup(dst)
                    finally:
                        src.close()
                        dst.close()
                    self.fs.put_file(snapshot, f"{self.root}/{name}")
            else:
                self.fs.put_file(path, f"{self.root}/{name}")


def fetch(url: str, local_dir: str) -> str:
    """A local copy of one file at `url` (an input file), in `local_dir`; its path."""
    fs, path = _fs(url)
    dest = os.path.join(local_dir, os.path.basename(path.rstrip("/")) or "input.jsonl")
    fs.get_file(path, dest)
    return dest
