"""Putting the shards back together: their files into the run directory (each row once), their
progress snapshots into one live view, their reports into one."""

from __future__ import annotations

import hashlib
import os
import time

import orjson

from kodcode_async.idset import IdSet
from kodcode_async.jsonl import iter_lines
from kodcode_async.options import STAGES
from kodcode_async.run import RunReport
from kodcode_async.stats import Snapshot, TimelineSample, add, add_stages
from kodcode_async.writers import replacing


def merge_file(sources: list[str], dest: str) -> int:
    """Concatenate the shards' copies of one file into `dest` (atomically), each distinct row once.
    A torn last line (a runner killed mid-write) is left out: that shard's resume rewrites it.
    Rows are told apart by a 128-bit digest of their canonical form, kept on disk (IdSet): a
    KodCode-sized merge holds ~450k rows of ~10 KB. On a write error (a full disk) the partial
    copy is removed and `dest` keeps what it held; the error goes up."""
    seen = IdSet()
    n = 0
    try:
        with replacing(dest, ".merging") as tmp, open(tmp, "wb") as out:
            for src in sources:
                if not os.path.exists(src):
                    continue
                for _, line in iter_lines(src):
                    if not line.endswith(b"\n"):
                        continue
                    try:
                        key = orjson.dumps(orjson.loads(line), option=orjson.OPT_SORT_KEYS)
                    except orjson.JSONDecodeError:
                        continue
                    if seen.add(hashlib.blake2b(key, digest_size=16).hexdigest()):
                        out.write(line)
                        n += 1
    except OSError as e:
        if e.filename is None:  # a failed write names no file: say which
            raise OSError(e.errno, e.strerror, dest) from e
        raise
    finally:
        seen.close()
    return n


def merge_snapshots(snaps: list[Snapshot], elapsed: float, isolation: str) -> Snapshot:
    """The runners' progress snapshots as one (per-stage lines summed by stage name, in chain order)."""
    merged = Snapshot(elapsed_s=elapsed, isolation=isolation)
    for snap in snaps:
        merged.finished += snap.finished
        merged.unfinished += snap.unfinished
        add_stages(merged.stages, snap.stages)
        add(merged.llm, snap.llm)
        add(merged.sandbox, snap.sandbox)
    order = {name: i for i, name in enumerate(STAGES)}
    merged.stages.sort(key=lambda st: order.get(st.name.split(".")[0], 0))
    return merged


def sum_reports(report: RunReport, reports: list[RunReport], pools: list[dict], isolation: str,
                timeline: list[TimelineSample], started: float) -> None:
    """The shards' reports merged into `report` (which holds the merged files' counts); `pools`: each
    pool actor's info (its workers count once, however many shards used it)."""
    for r in reports:
        report.merge(r)
    # The pool actors are shared: the cluster's workers once, not once per shard.
    report.sandbox.workers = sum(i["workers"] for i in pools)
    report.sandbox.isolation = isolation
    report.timeline = timeline
    report.wall_s = time.monotonic() - started
    for name, n in list(report.existing.items()):
        report.existing[name] = n - report.files[name]  # stats.json counts this run's rows apart
