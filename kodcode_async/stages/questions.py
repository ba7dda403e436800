"""Question synthesis: one prompt (its seeds) in, its questions out (a fan-out stage).

A prompt row (subsets.prompt_rows) names its subset and seeds. The stage builds that subset's
request (a chat for fewshot/snippet/docs, a raw completion for prefill), asks the model once
(prefill: n samples in one request), and yields one question item per usable answer, or
Dropped(reason) with the answer for each unusable one (empty, abstained, no question section,
too short), written to questions_rejected.jsonl. Question ids are `<prompt id>/<k>`, k the
sample's index, so they are the same in every rerun.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Container

from kodcode_async.backends import Request, Sampling
from kodcode_async.engine import Dropped
from kodcode_async.extract import Reject, extract_question, glue_prefill
from kodcode_async.prompts import DEFAULT as DEFAULT_PROMPTS
from kodcode_async.prompts import PromptError, Prompts
from kodcode_async.resources import LLMClient
from kodcode_async.stages.base import BadRow, Item
from kodcode_async.subsets import ABSTAIN, SUBSETS, SynthOptions

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


class QuestionStage:
    name = STAGE
    output = "questions.jsonl"
    drop_file = "questions_rejected.jsonl"
    side_files = ()
    read_item = staticmethod(prompt_item)

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


class SkipFinished:
    """Ends the question stages: questions whose rows an earlier run already wrote go no further.

    A resumed run regenerates every prompt's questions (from the journal: no request is sent
    again) so that the dedup index sees them all; this stage then lets through only the
    questions that are not finished yet."""

    name = "resume"
    output = "questions.jsonl"  # the rows of a run that stops after the question stages
    drop_file = None
    side_files = ()

    def __init__(self, done: Container[str]) -> None:
        self.done = done  # filled by the run from its output files before the first item comes
        self.skipped = 0
        self.kept: Counter = Counter()  # subset -> questions that came through every question stage

    async def process_stream(self, items: AsyncIterator[Item]) -> AsyncIterator[Item]:
        async for item in items:
            self.kept[item.row.get("subset", "")] += 1
            if item.id in self.done:
                self.skipped += 1
                continue
            yield item
