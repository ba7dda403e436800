"""What a command prints for people: the live progress lines, the end-of-run summary, and one
line for an error of the disk or the engine (the path, why, what is free, how to go on)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kodcode_async.progress import Progress
    from kodcode_async.stats import Snapshot, Stats


def setup_logging(level: str, log_file: str, quiet: bool) -> None:
    """Logs go to --log-file when given (default level info), else to the terminal (default warning);
    the terminal never gets less than warnings when a file takes the logs, and only errors with --quiet."""
    import logging

    file_level = getattr(logging, (level or "info").upper())
    term_level = getattr(logging, (level or "warning").upper())
    if log_file:
        term_level = max(term_level, logging.WARNING)
    if quiet:
        term_level = logging.ERROR
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(min(file_level if log_file else term_level, term_level))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setLevel(term_level)
    terminal.setFormatter(fmt)
    root.addHandler(terminal)
    if log_file:
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setLevel(file_level)
        handler.setFormatter(fmt)
        root.addHandler(handler)


def render_progress(snap: Snapshot) -> str:
    """One line per stage, then one for the LLM and one for the sandbox: real work, replays apart."""
    lines = [""]
    for s in snap.stages:
        dropped = sum(s.dropped.values())
        unfinished = sum(s.unfinished.values())
        lines.append(f"  {s.name:<10} in {s.items_in}, out {s.items_out}, in flight {s.in_flight}"
                     + (f", dropped {dropped} {s.dropped}" if dropped else "")
                     + (f", unfinished {unfinished}" if unfinished else ""))
    llm, box = snap.llm, snap.sandbox
    elapsed = max(1e-9, snap.elapsed_s)
    errors = ", ".join(f"{k} {n}" for k, n in llm.errors.items()) or "none"
    lines.append(f"  LLM        {llm.requests} requests ({llm.requests / elapsed:.1f}/s), "
                 f"{llm.in_flight}/{llm.limit} in flight, {llm.replayed} replayed from the journal, "
                 f"{llm.parse_errors} unparsable, errors: {errors}, {llm.completion_tokens / elapsed:.0f} tok/s")
    lines.append(f"  sandbox    {box.jobs} jobs ({box.jobs / elapsed:.1f}/s), {box.busy}/{box.workers} "
                 f"busy, {box.replayed} replayed ({snap.isolation})")
    return "\n".join(lines)


def storage_error(error: BaseException) -> OSError | None:
    """A file-system error (full disk, read-only, I/O) in `error` or its group; not a network one."""
    found = first_of(error, (OSError,))
    if isinstance(found, OSError) and found.errno is not None and not isinstance(found, (ConnectionError, TimeoutError)):
        return found
    return None


def storage_line(e: OSError, out: str | None = None, progress: Progress | None = None,
                 input_path: str | None = None, verb: str = "write") -> str:
    """One line for a write that failed: the path, why, and for a full disk what is free and, when a
    run's progress says, about how much more it needs; then how to go on."""
    import errno
    import shutil

    path = e.filename or out or "?"
    text = f"error: cannot {verb} {path}: {e.strerror or e}"
    if e.errno == errno.ENOSPC:
        where = os.path.dirname(os.path.abspath(str(path))) if e.filename else str(path)
        try:
            text += f" ({shutil.disk_usage(where).free / 1e6:.1f} MB free there)"
        except OSError:
            pass
        done, total = _run_progress(out, progress, input_path)
        if out and done and total and total > done:
            used = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
            need = used / done * (total - done)
            text += f"; the {total - done} items left need about {need / 1e6:.1f} MB more"
    if out and e.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
        text += f"; finished items are in {out}: free space and run the same command again to resume"
    return text


def storage_exit(e: OSError) -> int:
    """1 when the disk failed under a run (full, I/O), 2 when the path itself is wrong (usage)."""
    import errno

    return 1 if e.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT) else 2


def _run_progress(out: str | None, progress: Progress | None, input_path: str | None) -> tuple[int, int]:
    """(items finished, items in all) of a run, from its live view or else from its files."""
    if progress is not None and progress.done and progress.total:
        return progress.done, int(progress.total)
    if not out or not input_path:
        return 0, 0
    from kodcode_async.jsonl import count_rows

    try:
        done = sum(count_rows(os.path.join(out, name)) for name in ("verified.jsonl", "failed.jsonl")
                   if os.path.exists(os.path.join(out, name)))
        return done, count_rows(input_path)
    except OSError:
        return 0, 0


def first_of(error: BaseException, kinds: tuple[type, ...]) -> BaseException | None:
    """The first error of the given kinds in `error` or, for exception groups, among its leaves."""
    if isinstance(error, kinds):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = first_of(inner, kinds)
            if found is not None:
                return found
    return None


def print_summary(out: str, stats: Stats) -> None:
    synth = stats.question_synthesis
    if synth.per_subset:
        print("\nquestion synthesis (per subset: made -> rejected / filtered / benchmark / duplicate -> kept):")
        for subset, c in synth.per_subset.items():
            rejected = sum((c.rejected or {}).values())
            print(f"  {subset:<15} {(c.questions or 0) + rejected:>5} answers: {rejected} rejected"
                  + (f" {c.rejected}" if rejected else "")
                  + f", {c.filtered_out or 0} filtered, {c.contaminated or 0} benchmark, {c.duplicates or 0} "
                  f"duplicate -> {c.kept or 0} kept")
    for tag, t in (synth.tags or {}).items():
        print(f"  tag {tag}: {t.invalid_answers} answers were not the JSON asked for (stored as errors)")
    if stats.questions or not synth.per_subset:
        print(f"\nquestions: {stats.questions}  verified: {stats.verified}  "
              f"difficulty: {stats.difficulty}  (isolation: {stats.sandbox_isolation})")
    for subset, ks in stats.pass_at_k.items():
        shown = ", ".join(f"pass@{k} {v.questions} ({v.rate:.0%})" for k, v in list(ks.items())[:5])
        print(f"  {subset}: questions solved within k attempts (share of all): {shown}")
    if stats.failure_reasons:
        print(f"  failed attempts by reason: {stats.failure_reasons}")
    if stats.style_converted or stats.style_rejected:
        by_check = ", ".join(f"{k} {n}" for k, n in stats.style_rejected_by_check.items())
        print(f"  completion style: {stats.style_converted} converted, {stats.style_rejected} rejected"
              + (f" (this run, by failed check: {by_check})" if by_check else ""))
    if stats.sft_conversations:
        print(f"  SFT conversations kept by the tests: {stats.sft_conversations}")
    if stats.flaky_trials:
        print(f"  flaky trials (passed once, then not on a rerun): {stats.flaky_trials}")
    if stats.rejected_rows:
        print(f"  rejected input rows: {len(stats.rejected_rows)} (see stats.json)")
    files = [f for f in ("questions.jsonl", "questions_rejected.jsonl", "filtered_out.jsonl", "contaminated.jsonl",
                         "duplicates.jsonl", "verified.jsonl", "failed.jsonl", "verified_complete.jsonl", "sft.jsonl",
                         "stats.json")
             if os.path.exists(os.path.join(out, f))]
    print(f"output in {out}/: " + ", ".join(files))
