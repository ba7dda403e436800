"""LLM labels on questions: the `filter` subset's classifier, and reusable tags.

* FilterStage: questions of classifying subsets (`filter`) get a category; only the configured
  categories go on (the category is kept as `filter_reason`), the rest are Dropped into
  filtered_out.jsonl with it. Questions of other subsets pass untouched.
* TagStage: one label per question, added to `metadata.tags[<tag>]` with the tagging model:
  `quality` (very poor .. excellent), `category` (primary and others), `judge` (online-judge
  style, i.e. a stdin/stdout program). An answer that is not the JSON asked for is recorded as
  `{"error": reason}` and counted; the question goes on (a tag never loses a question).
"""

from __future__ import annotations

import re
from collections import Counter

import orjson

from kodcode_async.backends import Request, Sampling
from kodcode_async.engine import Dropped
from kodcode_async.prompts import DEFAULT as DEFAULT_PROMPTS
from kodcode_async.prompts import Prompts
from kodcode_async.resources import LLMClient
from kodcode_async.stages.base import Item, RunStage, StagePlan
from kodcode_async.stats import FilterCounts, QuestionCounts, SubsetCounts, TagCounts
from kodcode_async.subsets import CATEGORIES, SUBSETS

QUALITY = ("very poor", "poor", "average", "good", "excellent")
_OBJECT = re.compile(r"\{.*\}", re.S)
MAX_ANSWER_CHARS = 8000


class TagError(ValueError):
    pass


def parse_json_object(text: object) -> dict:
    """The JSON object in an answer (bare, fenced, or with prose around it). Raises TagError."""
    if not isinstance(text, str) or not text.strip():
        raise TagError("empty answer")
    # A label is a short object; a long answer is cut first so that the fallback scan below (which
    # tries each brace pair) stays cheap whatever a server sends back.
    body = text.split("</think>")[-1][:MAX_ANSWER_CHARS]
    m = _OBJECT.search(body)
    if m is None:
        raise TagError("no JSON object in the answer")
    try:
        value = orjson.loads(m.group(0))
    except orjson.JSONDecodeError:
        # prose with braces around the object: try the last object that parses
        for start in [i for i, c in enumerate(body) if c == "{"][::-1]:
            end = body.find("}", start)
            while end >= 0:
                try:
                    value = orjson.loads(body[start:end + 1])
                    break
                except orjson.JSONDecodeError:
                    end = body.find("}", end + 1)
            else:
                continue
            break
        else:
            raise TagError("the answer's JSON does not parse") from None
    return value  # JSON text that starts with "{" and parses is an object


def _category(value: object) -> str:
    if not isinstance(value, str) or value.strip().lower() not in CATEGORIES:
        raise TagError(f"category {value!r} is not one of the listed categories")
    return value.strip().lower()


def validate(tag: str, value: dict) -> dict:
    """The tag's fields, checked and normalised. Raises TagError."""
    if tag == "quality":
        q = value.get("quality")
        if not isinstance(q, str) or q.strip().lower() not in QUALITY:
            raise TagError(f"quality {q!r} is not one of {', '.join(QUALITY)}")
        return {"quality": q.strip().lower(), "explanation": str(value.get("explanation") or "")}
    if tag == "category":
        others = value.get("others") or []
        if not isinstance(others, list):
            raise TagError("others must be a list")
        primary = _category(value.get("primary"))
        return {"primary": primary, "others": [c for c in dict.fromkeys(_category(o) for o in others) if c != primary]}
    if tag == "judge":
        oj = value.get("online_judge")
        if not isinstance(oj, bool):
            raise TagError(f"online_judge must be true or false, got {oj!r}")
        return {"online_judge": oj, "reason": str(value.get("reason") or "")}
    if tag == "filter":
        return {"category": _category(value.get("category")), "reason": str(value.get("reason") or "")}
    raise ValueError(f"unknown tag {tag}")


class _LabelStage(RunStage):
    def __init__(self, llm: LLMClient, concurrency: int, prompts: Prompts) -> None:
        self.llm = llm
        self.concurrency = concurrency
        self.prompts = prompts
        self.invalid: Counter = Counter()  # reason -> answers

    async def label(self, tag: str, template: str, item: Item) -> dict:
        """The validated label; raises TagError (the reason is counted)."""
        fields = {"question": item.row["question"]}
        if "{categories}" in template:
            fields["categories"] = "\n".join(f"- {c}" for c in CATEGORIES)
        request = Request(self.name, item.id, 0, messages=[{"role": "user", "content": template.format(**fields)}],
                          sampling=Sampling(n=1, temperature=0.0, max_tokens=256, seed=0))
        texts = await self.llm.complete(request)
        try:
            return validate(tag, parse_json_object(texts[0] if texts else ""))
        except TagError as e:
            self.invalid[str(e)] += 1
            raise


class FilterStage(_LabelStage):
    name = "filter"
    drop_file = "filtered_out.jsonl"

    def __init__(self, llm: LLMClient, concurrency: int, keep: tuple[str, ...],
                 prompts: Prompts = DEFAULT_PROMPTS, subsets: tuple[str, ...] = ()) -> None:
        super().__init__(llm, concurrency, prompts)
        self.keep = keep
        self.subsets = subsets
        self.categories: Counter = Counter()  # category -> questions classified
        self.dropped: Counter = Counter()  # subset -> questions filtered out

    def stats(self) -> dict:
        return {"questions": QuestionCounts(
            per_subset={s: SubsetCounts(filtered_out=self.dropped[s]) for s in self.subsets},
            filter=FilterCounts(categories=dict(self.categories), invalid_answers=sum(self.invalid.values()),
                                keep=list(self.keep)))}

    async def process(self, item: Item) -> Item | Dropped:
        if not SUBSETS[item.row["subset"]].classify:
            return item
        try:
            label = await self.label("filter", self.prompts.filter_user, item)
        except TagError as e:
            item.row["filter_reason"] = f"unclassified: {e}"
            self.dropped[item.row["subset"]] += 1
            return Dropped("unclassified", item)
        self.categories[label["category"]] += 1
        item.row["filter_reason"] = label["category"]
        item.row.setdefault("metadata", {})["filter_model"] = self.llm.model_name
        if label["category"] not in self.keep:
            self.dropped[item.row["subset"]] += 1
            return Dropped(f"category: {label['category']}", item)
        return item


class TagStage(_LabelStage):
    """A question row in, the same row out with its label (reads --input question rows when first)."""

    output = "questions.jsonl"  # the rows of a run that stops after tagging

    def __init__(self, tag: str, llm: LLMClient, concurrency: int, prompts: Prompts = DEFAULT_PROMPTS) -> None:
        super().__init__(llm, concurrency, prompts)
        self.tag = tag
        self.name = f"tag.{tag}"
        self.template = {"quality": prompts.tag_quality, "category": prompts.tag_category,
                         "judge": prompts.tag_judge}[tag]

    def stats(self) -> dict:
        return {"questions": QuestionCounts(tags={self.tag: TagCounts(invalid_answers=sum(self.invalid.values()))})}

    async def process(self, item: Item) -> Item:
        try:
            label = await self.label(self.tag, self.template, item)
        except TagError as e:
            label = {"error": str(e)}
        meta = item.row.setdefault("metadata", {})
        meta.setdefault("tags", {})[self.tag] = label
        meta.setdefault("tag_models", {})[self.tag] = self.llm.model_name
        return item


PLAN = StagePlan(
    "tags", turned_on=lambda c: bool(c.tags), how_to_turn_on="--tag",
    build=lambda c, clients: [TagStage(tag, clients.llm, clients.concurrency, c.prompts) for tag in c.tags],
    fingerprint=lambda c: {"model": c.solve.model_name,
                           "prompts": {t: c.prompts.stage_hash(f"tag.{t}") for t in c.tags}})
