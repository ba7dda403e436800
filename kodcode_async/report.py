"""`kodcode-async report` and `select`: a run drawn as a page of figures, and light subsets of it.

The dataset figures come from the output files (every finished row, across every resumed run);
the operational ones (per-stage counts, timeline) from stats.json, which describes the latest
run. Rows are streamed: a report of a 447K-row run keeps a few numbers per row, not the rows.
"""

from __future__ import annotations

import base64
import html
import io
import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import orjson

from kodcode_async.jsonl import iter_lines
from kodcode_async.rundir import MANIFEST, RUN_JSON, STATS
from kodcode_async.stats import QuestionCounts, Stats, read_stats

DIFFICULTIES = ("easy", "medium", "hard", "fail")
COLORS = {"easy": "#4caf50", "medium": "#ffb300", "hard": "#e53935", "fail": "#9e9e9e"}
_TOKEN = re.compile(r"\w+|[^\w\s]")


class ReportError(ValueError):
    pass


def approx_tokens(text: str | None) -> int:
    """Words and punctuation marks: a tokenizer-free count, close to a code tokenizer's for code."""
    return len(_TOKEN.findall(text or ""))


def tests_in(test: str | None) -> int:
    return len(re.findall(r"^\s*(?:async\s+)?def\s+test_\w*\s*\(", test or "", re.M))


@dataclass
class RunData:
    """What the figures need, gathered in one pass over the output files."""

    run_dir: str
    questions: Counter = field(default_factory=Counter)  # subset -> finished questions
    verified: Counter = field(default_factory=Counter)
    complete: Counter = field(default_factory=Counter)  # subset -> completion-style rows
    sft: Counter = field(default_factory=Counter)  # subset -> questions with an accepted SFT answer
    difficulty: dict = field(default_factory=lambda: defaultdict(Counter))  # subset -> label -> n
    passed_at: dict = field(default_factory=lambda: defaultdict(list))  # subset -> first passing attempt (or None)
    question_tokens: list = field(default_factory=list)
    solution_tokens: list = field(default_factory=list)
    tests_per_question: list = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)  # status of every failed attempt
    stats: Stats = field(default_factory=Stats)  # stats.json (empty when it is missing or unreadable)
    manifest: dict | None = None
    fingerprint: dict | None = None

    @property
    def partial(self) -> bool:
        return not (self.manifest or {}).get("complete")

    @property
    def total(self) -> int:
        return sum(self.questions.values())


def _json(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            return orjson.loads(f.read())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def _stats(path: str) -> Stats:
    try:
        with open(path, "rb") as f:
            return read_stats(f.read())
    except (FileNotFoundError, ValueError):  # not written yet, or torn by a crash before its atomic write
        return Stats()


def _rows(path: str):  # noqa: ANN202
    if os.path.exists(path):
        for _, line in iter_lines(path):
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                return  # a torn last line of a run that is still going


def load_run(run_dir: str) -> RunData:
    if not os.path.isdir(run_dir):
        raise ReportError(f"{run_dir} is not a directory; give the run directory of `kodcode-async run --out`")
    data = RunData(run_dir, stats=_stats(os.path.join(run_dir, STATS)), manifest=_json(os.path.join(run_dir, MANIFEST)))
    data.fingerprint = (_json(os.path.join(run_dir, RUN_JSON)) or {}).get("fingerprint")
    if data.fingerprint is None and not os.path.exists(os.path.join(run_dir, "verified.jsonl")):
        raise ReportError(f"{run_dir} is not a run directory: it has neither {RUN_JSON} nor verified.jsonl")
    sft_nick = ((data.fingerprint or {}).get("sft") or {}).get("nickname")
    for name in ("verified.jsonl", "failed.jsonl"):
        for row in _rows(os.path.join(run_dir, name)):
            subset = str(row.get("subset"))
            seq = row.get("gpt_pass_sequence") or []
            data.questions[subset] += 1
            data.difficulty[subset][row.get("gpt_difficulty", "fail")] += 1
            data.passed_at[subset].append(seq.index(1) if 1 in seq else None)
            data.question_tokens.append(approx_tokens(row.get("question")))
            data.failures.update(t.get("status", "fail") for t in (row.get("trials") or {}).values()
                                 if t.get("test_result") != "Pass")
            if row.get("gpt_pass_trial_num", 0) > 0:
                data.verified[subset] += 1
                data.solution_tokens.append(approx_tokens(row.get("solution")))
                data.tests_per_question.append(tests_in(row.get("test")))
                if sft_nick and row.get(f"{sft_nick}_correctness"):
                    data.sft[subset] += 1
    for row in _rows(os.path.join(run_dir, "verified_complete.jsonl")):
        data.complete[str(row.get("subset"))] += 1
    return data


# ---- figures --------------------------------------------------------------------------------

def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fig_dataflow(d: RunData):  # noqa: ANN201
    plt = _plt()
    steps = [("finished", d.questions), ("verified", d.verified)]
    stages = (d.fingerprint or {}).get("stages", [])
    if "style" in stages:
        steps.append(("style-converted", d.complete))
    if "sft" in stages:
        steps.append(("SFT-accepted", d.sft))
    subsets = sorted(d.questions)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(1, len(steps))
    for i, (label, counts) in enumerate(steps):
        xs = [j + i * width for j in range(len(subsets))]
        bars = ax.bar(xs, [counts.get(s, 0) for s in subsets], width, label=label)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks([j + width * (len(steps) - 1) / 2 for j in range(len(subsets))], subsets)
    ax.set_ylabel("questions")
    ax.set_title("Data flow per subset" + (" (run unfinished: rows so far)" if d.partial else ""))
    ax.legend(fontsize=8)
    return fig


def fig_pass_at_k(d: RunData):  # noqa: ANN201
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    attempts = [a for v in d.passed_at.values() for a in v if a is not None]
    configured = int(((d.fingerprint or {}).get("solutions") or {}).get("max_attempts") or 1)
    max_k = max([configured] + [a + 1 for a in attempts])
    ks = list(range(1, max_k + 1))

    def curve(values: list) -> list[float]:
        return [sum(1 for a in values if a is not None and a < k) / max(1, len(values)) for k in ks]

    for subset, values in sorted(d.passed_at.items()):
        ax.plot(ks, curve(values), marker="o", label=f"{subset} ({len(values)})")
    if len(d.passed_at) > 1:
        everything = [a for v in d.passed_at.values() for a in v]
        ax.plot(ks, curve(everything), "k--", linewidth=2, label="all")
    ax.set_xticks(ks)
    ax.set_xlabel("k (attempts)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1.02)
    ax.set_title("Questions verified within k attempts")
    ax.legend(fontsize=8)
    return fig


def fig_difficulty(d: RunData):  # noqa: ANN201
    plt = _plt()
    subsets = sorted(d.difficulty)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    bottom = [0] * len(subsets)
    for label in DIFFICULTIES:
        values = [d.difficulty[s].get(label, 0) for s in subsets]
        ax.bar(subsets, values, bottom=bottom, label=label, color=COLORS[label])
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("questions")
    ax.set_title("Difficulty per subset (share of attempts that passed)")
    ax.legend(fontsize=8)
    return fig


def fig_distributions(d: RunData):  # noqa: ANN201
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, values, title in ((axes[0], d.question_tokens, "question length (tokens, approx.)"),
                              (axes[1], d.solution_tokens, "solution length (tokens, approx.)"),
                              (axes[2], d.tests_per_question, "unit tests per verified question")):
        if values:
            ax.hist(values, bins=min(30, max(5, len(set(values)))), color="#5c6bc0")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("questions", fontsize=8)
    fig.tight_layout()
    return fig


def fig_failures(d: RunData):  # noqa: ANN201
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    reasons = d.failures.most_common()
    ax.barh([r for r, _ in reasons][::-1], [n for _, n in reasons][::-1], color="#ef6c00")
    ax.set_xlabel("failed attempts")
    ax.set_title("Why attempts failed" + ("" if reasons else ": no failed attempt"))
    return fig


def fig_timeline(d: RunData):  # noqa: ANN201
    plt = _plt()
    samples = d.stats.timeline
    fig, axes = plt.subplots(4, 1, figsize=(9, 7.6), sharex=True)
    t = [s.t for s in samples]
    axes[0].plot(t, [s.llm_in_flight for s in samples], label="LLM requests in flight")
    axes[0].plot(t, [s.llm_limit for s in samples], "k--", label="limit (--workers)")
    axes[0].set_ylabel("requests")
    axes[1].plot(t, [s.sandbox_busy for s in samples], color="#e65100", label="sandbox workers busy")
    axes[1].plot(t, [s.sandbox_workers for s in samples], "k--", label="sandbox workers")
    axes[1].set_ylabel("workers")
    for name in sorted({k for s in samples for k in s.items_per_s}):
        axes[2].plot(t, [s.items_per_s.get(name, 0) for s in samples], label=name)
    axes[2].set_ylabel("items/s out")
    axes[3].plot(t, [s.cpu_pct for s in samples], color="#8d6e63", label="host CPU")
    axes[3].set_ylabel("CPU %")
    axes[3].set_ylim(0, 100)
    axes[3].set_xlabel("seconds since the latest run started")
    for ax in axes:
        if samples:
            ax.legend(fontsize=7, loc="upper right")
    axes[0].set_title("The latest run, sampled (is each side kept busy?)"
                      + ("" if samples else ": no samples in stats.json"))
    fig.tight_layout()
    return fig


FIGURES = (("dataflow", "Data flow", fig_dataflow), ("pass_at_k", "Pass@k", fig_pass_at_k),
           ("difficulty", "Difficulty", fig_difficulty), ("distributions", "Lengths and tests", fig_distributions),
           ("failures", "Failure reasons", fig_failures), ("timeline", "Run timeline", fig_timeline))


def _png(fig) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    return buf.getvalue()


def summary_rows(d: RunData) -> list[tuple[str, str]]:
    s = d.stats
    rows = [("questions finished", str(d.total)), ("verified", str(sum(d.verified.values()))),
            ("completion-style rows", str(sum(d.complete.values()))), ("SFT-accepted", str(sum(d.sft.values()))),
            ("unfinished (latest run)", str(sum(s.unfinished.values()))),
            ("model", s.model or "?"), ("sandbox isolation", s.sandbox_isolation or "?"),
            ("LLM requests (latest run)", f"{s.llm_requests_this_run} (+{s.llm_replayed_this_run} replayed)"),
            ("completion tokens (latest run)", str(s.llm.completion_tokens)),
            ("sandbox jobs (latest run)", str(s.sandbox_jobs_this_run)),
            ("wall time (latest run)", f"{s.wall_s_this_run:.1f} s"),
            ("cost", "not reported by the backend")]
    return rows


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}
img{{max-width:100%;border:1px solid #ddd}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}} .partial{{background:#fff3cd;padding:8px}}</style>
</head><body>
<h1>{title}</h1>
{banner}
<h2>Summary</h2>
<table>{summary}</table>
{sections}
<h2>Stages (latest run)</h2>
<table><tr><th>stage</th><th>in</th><th>out</th><th>dropped</th><th>unfinished</th><th>busy s</th></tr>{stages}</table>
</body></html>
"""


def synthesis_table(synth: QuestionCounts) -> str:
    """Question synthesis per subset: answers, rejected by reason, filtered, benchmark, duplicates, kept."""
    head = ("<h2>Question synthesis</h2>\n<table id=\"question-synthesis\"><tr><th>subset</th><th>questions</th>"
            "<th>rejected answers</th><th>filtered out</th><th>benchmark overlap</th><th>duplicates</th>"
            "<th>kept</th></tr>")
    rows = []
    for subset, c in synth.per_subset.items():
        rejected = ", ".join(f"{k} {v}" for k, v in (c.rejected or {}).items()) or "0"
        counts = (c.questions, c.filtered_out, c.contaminated, c.duplicates, c.kept)
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (
            subset, counts[0] or 0, rejected, *(n or 0 for n in counts[1:])))
            + "</tr>")
    return head + "".join(rows) + "</table>"


@dataclass(frozen=True, slots=True)
class Report:
    html: str
    figures: dict[str, str]  # name -> PNG path
    partial: bool


def write_report(run_dir: str, output: str | None = None) -> Report:
    """Write RUN_DIR's report (self-contained HTML) and its figures as PNGs beside it."""
    d = load_run(run_dir)
    synth = d.stats.question_synthesis
    if d.total == 0 and not synth.per_subset:
        raise ReportError(f"{run_dir} has no finished questions yet: nothing to draw "
                          "(run `kodcode-async run` into it, or wait for its first rows)")
    out = output or os.path.join(run_dir, "report", "report.html")
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(os.path.basename(out))[0]
    figures, sections = {}, []
    if synth.per_subset:
        sections.append(synthesis_table(synth))
    for name, title, draw in FIGURES if d.total else ():
        png = _png(draw(d))
        path = os.path.join(folder, f"{stem}-{name}.png")
        with open(path, "wb") as f:
            f.write(png)
        figures[name] = path
        sections.append(f'<h2>{html.escape(title)}</h2>\n<img id="fig-{name}" alt="{html.escape(title)}" '
                        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    banner = ('<p class="partial">This run is unfinished (still going, interrupted, or with unfinished items): '
              "the figures show the rows written so far.</p>") if d.partial else ""
    stages = "".join(f"<tr><td>{html.escape(s.name)}</td><td>{s.items_in}</td><td>{s.items_out}</td>"
                     f"<td>{html.escape(str(s.dropped or ''))}</td><td>{html.escape(str(s.unfinished or ''))}"
                     f"</td><td>{s.busy_s}</td></tr>" for s in d.stats.stages)
    page = PAGE.format(title=html.escape(f"kodcode-async report: {os.path.basename(os.path.abspath(run_dir))}"),
                       banner=banner, sections="\n".join(sections), stages=stages,
                       summary="".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                                       for k, v in summary_rows(d)))
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, out)
    return Report(out, figures, d.partial)


# ---- select ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Selection:
    path: str
    rows: int
    strata: dict[str, tuple[int, int]]  # "subset/difficulty" -> (available, selected)
    report: str


def select(run_dir: str, n: int, output: str, *, difficulty: tuple[str, ...] = (), subsets: tuple[str, ...] = (),
           style: str = "instruct", seed: int = 0) -> Selection:
    """A stratified sample of n verified rows: each (subset, difficulty) stratum keeps its share."""
    if n < 1:
        raise ReportError(f"--n must be at least 1, got {n}")
    bad = set(difficulty) - set(DIFFICULTIES[:3])
    if bad:
        raise ReportError(f"--difficulty takes easy, medium, hard; not {', '.join(sorted(bad))}")
    files = {"instruct": ["verified.jsonl"], "complete": ["verified_complete.jsonl"],
             "all": ["verified.jsonl", "verified_complete.jsonl"]}.get(style)
    if files is None:
        raise ReportError(f"--style must be instruct, complete or all, not {style!r}")
    load_run(run_dir)  # a run directory, or a clear error
    strata: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for name in files:
        for i, row in enumerate(_rows(os.path.join(run_dir, name))):
            if difficulty and row.get("gpt_difficulty") not in difficulty:
                continue
            if subsets and row.get("subset") not in subsets:
                continue
            strata[(str(row.get("subset")), str(row.get("gpt_difficulty")))].append((name, i))
    total = sum(len(v) for v in strata.values())
    if total == 0:
        raise ReportError(f"no verified rows in {run_dir} match the selection")
    want = min(n, total)
    # Largest remainder: every stratum gets floor(share), the biggest remainders one more.
    shares = {k: want * len(v) / total for k, v in strata.items()}
    quota = {k: int(s) for k, s in shares.items()}
    for k in sorted(shares, key=lambda k: (shares[k] - quota[k], k), reverse=True)[:want - sum(quota.values())]:
        quota[k] += 1
    rng = random.Random(seed)
    chosen: set[tuple[str, int]] = set()
    for k in sorted(strata):
        chosen |= set(rng.sample(strata[k], quota[k]))
    os.makedirs(os.path.dirname(os.path.abspath(output)) or ".", exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "wb") as f:
        for name in files:
            for i, row in enumerate(_rows(os.path.join(run_dir, name))):
                if (name, i) in chosen:
                    f.write(orjson.dumps(row) + b"\n")
    os.replace(tmp, output)
    counts = {f"{s}/{d}": (len(strata[(s, d)]), quota[(s, d)]) for s, d in sorted(strata)}
    report = os.path.splitext(output)[0] + ".report.html"
    table = "".join(f"<tr><td>{html.escape(k)}</td><td>{a}</td><td>{b}</td></tr>" for k, (a, b) in counts.items())
    with open(report, "w", encoding="utf-8") as f:
        f.write(f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>selection</title></head><body>"
                f"<h1>Selection of {want} rows from {html.escape(run_dir)}</h1><p>seed {seed}, style {style}"
                f"{', difficulty ' + ','.join(difficulty) if difficulty else ''}"
                f"{', subsets ' + ','.join(subsets) if subsets else ''}</p><table><tr><th>subset/difficulty</th>"
                f"<th>available</th><th>selected</th></tr>{table}</table></body></html>")
    return Selection(output, want, counts, report)
