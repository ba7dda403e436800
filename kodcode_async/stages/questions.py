"""Question synthesis: one prompt (its seeds) in, its questions out (a fan-out stage).

A prompt row (subsets.prompt_rows) names its subset and seeds. The stage builds that subset's
request (a chat for fewshot/snippet/docs, a raw completion for prefill), asks the model once
(prefill: n samples in one request), and yields one question item per usable answer, or
Dropped(reason) with the answer for each unusable one (empty, abstained, no question section,
too short), written to questions_rejected.jsonl. Question ids are `<prompt id>/<k>`, k the
sample's index, so they are the same in every rerun.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Container
from typing import TYPE_CHECKING

import msgspec
import orjson

from kodcode_async.backends import Request, Sampling
from kodcode_async.engine import Dropped
from kodcode_async.extract import Reject, extract_question, glue_prefill
from kodcode_async.prompts import DEFAULT as DEFAULT_PROMPTS
from kodcode_async.prompts import PromptError, Prompts
from kodcode_async.resources import LLMClient
from kodcode_async.stages.base import BadRow, Item, RunStage, StageClients, StagePlan
from kodcode_async.stats import QuestionCounts, SubsetCounts
from kodcode_async.subsets import ABSTAIN, SUBSETS, SynthOptions

if TYPE_CHECKING:
    from kodcode_async.run import RunConfig

STAGE = "questions"
# A seed longer than this is cut (with a note to the model): one huge documentation page or
# snippet must not make its request fail for good on the server's context limit.
MAX_SEED_CHARS = 12000


def _clip_answer(text: object) -> object:
    """A rejected answer as recorded: whole unless it is huge (a runaway generation)."""
    if isinstance(text, str) and len(text) > 4 * MAX_SEED_CHARS:
        return text[:4 * MAX_SEED_CHARS] + f"\n[... {len(text) - 4 * MAX_SEED_CHARS} more characters not kept ...]"
    return text


def _clip(text: str) -> str:
    text = text.strip("\n")
    if len(text) <= MAX_SEED_CHARS:
        return text
    return text[:MAX_SEED_CHARS].rstrip() + "\n[... the rest is cut ...]"


def prompt_item(row: object, lineno: int) -> Item:
    if not isinstance(row, dict) or row.get("subset") not in SUBSETS or not isinstance(row.get("prompt_id"), str):
        raise BadRow("not a prompt row (prompt_id, subset, seeds)")
    return Item(row["prompt_id"], row)


class QuestionStage(RunStage):
    name = STAGE
    drop_file = "questions_rejected.jsonl"
    read_item = staticmethod(prompt_item)
    replays_finished = True  # dedup must see every question again; SkipFinished ends the group

    def __init__(self, options: SynthOptions, llm: LLMClient, concurrency: int,
                 prompts: Prompts = DEFAULT_PROMPTS) -> None:
        self.options = options
        self.llm = llm
        self.concurrency = concurrency
        self.prompts = prompts
        if any(SUBSETS[s].method == "prefill" for s in options.subsets):
            if options.prefill_template not in prompts.prefill:
                raise PromptError(f"--prefill-template {options.prefill_template}: no such template; known: "
                                  f"{', '.join(sorted(prompts.prefill))} (add one as prompts DIR/prefill/NAME.toml)")
        self.template = prompts.prefill.get(options.prefill_template)
        self.rejects: Counter = Counter()  # (subset, reason) -> answers
        self.made: Counter = Counter()  # subset -> questions

    def stats(self) -> dict:
        per = {subset: SubsetCounts(questions=self.made[subset],
                                    rejected={r: n for (s, r), n in sorted(self.rejects.items()) if s == subset})
               for subset in self.options.subsets}
        return {"questions": QuestionCounts(per_subset=per)}

    def prompt_hash(self, subset: str) -> str:
        method = SUBSETS[subset].method
        if method == "prefill":
            assert self.template is not None
            return self.template.hash()
        return self.prompts.stage_hash(method)

    async def process(self, item: Item) -> AsyncIterator[Item | Dropped]:
        row = item.row
        subset = SUBSETS[row["subset"]]
        request, prefix = self.request(item)
        texts = await self.llm.complete(request)
        meta = {"prompt_id": item.id, "seed_ids": [s["id"] for s in row["seeds"]],
                "question_model": self.llm.model_name, "question_prompt_hash": self.prompt_hash(subset.name),
                "question_sampling": {"n": request.sampling.n, "temperature": request.sampling.temperature,
                                      "max_tokens": request.sampling.max_tokens, "seed": request.sampling.seed}}
        if prefix is not None:
            meta["prefill_prefix"] = prefix
            meta["prefill_template"] = self.options.prefill_template
        stdin = self.options.stdin_format and subset.stdin
        # A server that sent no choice at all still leaves one recorded fate for the prompt.
        for k, text in enumerate(texts or [""]):
            qid = f"{item.id}/{k}"
            try:
                if prefix is not None:
                    assert self.template is not None
                    question = glue_prefill(prefix, text, self.template.stop)
                else:
                    question = extract_question(text, require_section=subset.method == "snippet",
                                                abstain=ABSTAIN if subset.method == "docs" else None)
            except Reject as e:
                self.rejects[(subset.name, e.reason)] += 1
                yield Dropped(e.reason, Item(qid, {"question_id": qid, "subset": subset.name, "reason": e.reason,
                                                   "detail": str(e), "answer": _clip_answer(text),
                                                   "metadata": dict(meta)}))
                continue
            self.made[subset.name] += 1
            out = {"question_id": qid, "subset": subset.name, "question": question, "metadata": dict(meta)}
            if stdin:
                out["format"] = "stdin"
            yield Item(qid, out)

    def request(self, item: Item) -> tuple[Request, str | None]:
        """The request for a prompt row, and the prefill prefix (None for chat subsets)."""
        o, row, p = self.options, item.row, self.prompts
        subset = SUBSETS[row["subset"]]
        seeds = row["seeds"]
        seed = o.seed + int(row.get("index", 0))
        if subset.method == "prefill":
            assert self.template is not None
            prefix = o.prefill_prefixes[int(row.get("index", 0)) % len(o.prefill_prefixes)]
            sampling = Sampling(n=o.prefill_n, temperature=o.prefill_temperature, max_tokens=min(o.max_tokens, 1024),
                                seed=seed, stop=self.template.stop)
            return Request(STAGE, item.id, 0, prompt=self.template.prompt + prefix, sampling=sampling), prefix
        if subset.method == "fewshot":
            examples = "\n\n".join(f"Example {n}:\n{_clip(s['text'])}" for n, s in enumerate(seeds, 1))
            fmt = p.format_stdin if (o.stdin_format and subset.stdin) else p.format_function
            text = p.questions_fewshot.format(count=len(seeds), source=subset.source, examples=examples, format=fmt)
        elif subset.method == "snippet":
            s = seeds[0]
            title = f" ({s['title']})" if s.get("title") else ""
            text = p.questions_snippet.format(kind=subset.kind, title=title, code=_clip(s["text"]))
        else:
            s = seeds[0]
            text = p.questions_docs.format(package=s.get("package") or "the package", page=_clip(s["text"]),
                                           abstain=ABSTAIN)
        sampling = Sampling(n=1, temperature=o.temperature, max_tokens=o.max_tokens, seed=seed)
        return Request(STAGE, item.id, 0, messages=[{"role": "user", "content": text}], sampling=sampling), None


class SkipFinished(RunStage):
    """Ends the question stages: questions whose rows an earlier run already wrote go no further.

    A resumed run regenerates every prompt's questions (from the journal: no request is sent
    again) so that the dedup index sees them all; this stage then lets through only the
    questions that are not finished yet."""

    name = "resume"
    output = "questions.jsonl"  # the rows of a run that stops after the question stages

    def __init__(self, done: Container[str], subsets: tuple[str, ...] = ()) -> None:
        self.done = done  # filled by the run from its output files before the first item comes
        self.subsets = subsets
        self.skipped = 0
        self.kept: Counter = Counter()  # subset -> questions that came through every question stage

    def stats(self) -> dict:
        return {"questions": QuestionCounts(per_subset={s: SubsetCounts(kept=self.kept[s]) for s in self.subsets},
                                            finished_earlier=self.skipped)}

    async def process_stream(self, items: AsyncIterator[Item]) -> AsyncIterator[Item]:
        async for item in items:
            self.kept[item.row.get("subset", "")] += 1
            if item.id in self.done:
                self.skipped += 1
                continue
            yield item


def question_stages(config: RunConfig, clients: StageClients) -> list[RunStage]:
    """Generate -> filter (classifying subsets) -> decontamination -> dedup -> skip finished.

    Decontamination comes before dedup so that a benchmark copy never enters the dedup index;
    finished questions are skipped only after dedup, which must see every question to decide
    the rest the same way in a resumed run."""
    from kodcode_async.stages.tagging import FilterStage

    o = config.synth
    assert o is not None
    stages: list[RunStage] = [QuestionStage(o, clients.llm, clients.concurrency, config.prompts)]
    if any(SUBSETS[s].classify for s in o.subsets):
        stages.append(FilterStage(clients.llm, clients.concurrency, o.filter_keep, config.prompts, subsets=o.subsets))
    if o.embeds:
        from kodcode_async.stages.decontam import DecontamStage, load_benchmarks
        from kodcode_async.stages.dedup import DedupStage

        embedder = clients.embedder
        assert embedder is not None
        # Enough tasks that a whole embedding batch can be waiting at once.
        many = max(clients.concurrency, embedder.batch * 2)
        if o.decontam_threshold is not None:
            stages.append(DecontamStage(embedder, load_benchmarks(o.benchmarks), o.decontam_threshold, many,
                                        subsets=o.subsets))
        if o.dedup_threshold is not None:
            stages.append(DedupStage(embedder, clients.journal, o.dedup_threshold, many, o.dedup_index,
                                     subsets=o.subsets))
    stages.append(SkipFinished(clients.done, o.subsets))
    return stages


def _file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:16]


def synth_fingerprint(o: SynthOptions, prompts: Prompts) -> dict:
    """What shapes the questions: options, seed files (by content), templates."""
    methods = sorted({SUBSETS[s].method for s in o.subsets})
    # through JSON, as run.json stores it: tuples become lists, so a rerun compares equal
    fp = orjson.loads(orjson.dumps(msgspec.to_builtins({k: getattr(o, k) for k in o.__dataclass_fields__
                                                        if k != "seeds"})))
    fp["seeds"] = [{"subset": s.subset, "text": s.text, "id": s.id, "package": s.package,
                    "content": _file_hash(s.path)} for s in o.seeds]
    fp["prompts"] = {m: (prompts.prefill[o.prefill_template].hash() if m == "prefill" and o.prefill_template in
                         prompts.prefill else prompts.stage_hash(m)) for m in methods}
    if any(SUBSETS[s].classify for s in o.subsets):
        fp["prompts"]["filter"] = prompts.stage_hash("filter")
    return fp


PLAN = StagePlan(STAGE, turned_on=lambda c: c.synth is not None, how_to_turn_on="--subsets",
                 build=question_stages, fingerprint=lambda c: synth_fingerprint(c.synth, c.prompts))
