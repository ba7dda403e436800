"""From option values (kodcode_async/options.py: flags over a config file over the defaults) to a
run's config objects: the checks a run's options must pass, then `RunConfig` and the backends'
specs. The CLI calls this; a test builds configs with it to check which options shape the rows."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING

from kodcode_async.options import DEFAULTS, RUN, load_config, range_problem

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kodcode_async.prompts import Prompts
    from kodcode_async.run import RunConfig
    from kodcode_async.subsets import SynthOptions
    from sandbox.pool import SandboxConfig


def names(text: str | None) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c')."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def run_values(config_path: str | None, flags: dict) -> SimpleNamespace:
    """Every `run` option's value: a flag given on the command line (not None) wins over the config
    file, which wins over the default. Raises ConfigError for a bad config file."""
    values = dict(DEFAULTS)
    values.update(load_config(config_path))
    values.update({k: v for k, v in flags.items() if k in DEFAULTS and v is not None})
    return SimpleNamespace(**values)


def makes_questions(o: SimpleNamespace) -> bool:
    return bool(o.subsets) and o.start_at in ("", "questions")


def run_problem(o: SimpleNamespace) -> str:
    """'' when the options make a run, else the one error line (nothing has started)."""
    synthesis = makes_questions(o)
    stray = [x.flag for x in RUN if x.synthesis and getattr(o, x.key) != x.default] if not o.subsets else []
    if stray:
        return ("error: " + ", ".join(stray) + (" only takes" if len(stray) == 1 else " only take")
                + " effect with --subsets (question synthesis); add --subsets, or leave them out")
    if synthesis and o.input:
        return ("error: --input and --subsets both given: with --subsets the questions are made from --seeds; "
                "to solve a questions file, leave out --subsets (or add --start-at solutions)")
    if not o.out or not (o.input or synthesis):
        return ("error: run needs --out RUN_DIR, and --input QUESTIONS.jsonl or --subsets LIST (with --seeds) "
                "to make the questions")
    problem = range_problem(vars(o), RUN) or check_sandbox_workers("--sandbox-workers", o.sandbox_workers)
    if problem:
        return problem
    if "://" in (o.input + o.out) and o.executor != "ray":
        return "error: --input and --out at URLs are for --executor ray; the local executor takes paths"
    if o.input and not synthesis and "://" not in o.input:  # a URL (with Ray): the runners read it
        if os.path.isdir(o.input):
            return f"error: the input {o.input} is a directory; give a JSONL file"
        if not os.path.exists(o.input):
            return f"error: input file not found: {o.input}"
    if os.path.exists(o.out) and not os.path.isdir(o.out):
        return f"error: the run directory {o.out} exists and is a file"
    return ""


def check_sandbox_workers(flag: str, workers: int | None) -> str:
    """'' if this machine can hold `workers` sandbox workers, else the error line (nothing has started).

    Each worker is a warm interpreter (~60-120 MB with its jobs) and a bubblewrap process: more than
    the memory holds, or far more than the cores can run, only thrashes or brings the machine down.
    """
    if not workers:
        return ""
    from sandbox.pool import max_sandbox_workers

    limit, why = max_sandbox_workers()
    if workers > limit:
        return (f"error: {flag} {workers} is more sandbox workers than this machine can hold ({why}: at most "
                f"{limit}); each is a warm interpreter running one job at a time")
    cores = os.cpu_count() or 1
    if workers > 4 * cores:
        print(f"warning: {flag} {workers} sandbox workers on {cores} cores: jobs will mostly wait for a core",
              file=sys.stderr)
    return ""


def sandbox_config(o: SimpleNamespace, workers: int | None) -> SandboxConfig:
    """The sandbox options `verify`, `serve` and `run` share; `workers` None or 0 means one per core."""
    from sandbox.pool import SandboxConfig

    return SandboxConfig(workers=workers or os.cpu_count() or 1, isolation=o.isolation,
                         blocked_imports=names(o.block_imports), flaky_reruns=o.flaky_reruns,
                         strict_compare=o.strict_compare)


@dataclass(frozen=True, slots=True)
class RunSetup:
    config: RunConfig
    backend: dict  # make_backend's keyword arguments
    sft_backend: dict | None  # the reasoning model's, when it has a backend of its own


def run_setup(o: SimpleNamespace, environ: Mapping[str, str]) -> RunSetup:
    """The run's config and backend specs. Raises ValueError (PromptError, SeedError are ValueErrors)
    naming the flag. `environ` is where --api-key-env is looked up (the CLI passes os.environ)."""
    from kodcode_async.prompts import load_prompts
    from kodcode_async.run import RunConfig
    from kodcode_async.stages.sft import SFTOptions
    from kodcode_async.stages.solutions import SolveOptions
    from sandbox import Limits

    synthesis = makes_questions(o)
    prompts = load_prompts(o.prompts or None)
    solve = SolveOptions(attempts=o.attempts, max_attempts=o.max_attempts, temperature=o.temperature,
                         max_tokens=o.max_tokens, model_name=o.model or o.backend,
                         limits=Limits(wall_s=o.timeout, memory_mb=o.memory_mb), seed=o.seed)
    sft = SFTOptions(n=o.sft_n, nickname=o.sft_nickname, limits=solve.limits, seed=o.seed) if o.sft_n > 0 else None
    synth = None
    if o.subsets:
        synth, prompts = synth_options(o, prompts)
    sandbox = sandbox_config(o, o.sandbox_workers)
    if not synthesis and o.input and os.path.isfile(o.input):
        # No more workers than jobs can run at once: each question's first attempts (or its SFT
        # answers) at most. A warm worker with nothing to do only holds memory.
        from kodcode_async.jsonl import count_rows

        rows = min(count_rows(o.input), o.limit or sys.maxsize)
        most = max(1, rows * max(o.attempts, o.sft_n, 1))
        if sandbox.workers > most:
            sandbox = dataclasses.replace(sandbox, workers=most)
    config = RunConfig(input_path="" if synthesis else o.input, out_dir=o.out, workers=o.workers, solve=solve,
                       sandbox=sandbox, style=o.style, sft=sft, sft_model_name=o.sft_model or o.model or o.backend,
                       start_at=o.start_at or None, stop_after=o.stop_after or None, new_run=o.new_run,
                       prompts=prompts, limit=o.limit or None, synth=synth, tags=names(o.tag))
    spec = {"kind": o.backend, "model": o.model, "base_url": o.base_url,
            "api_key": environ.get(o.api_key_env) if o.api_key_env else None, "recorded_path": o.recorded,
            "workers": o.workers, "timeout_s": o.request_timeout, "max_retries": o.max_retries}
    sft_spec = None
    if sft is not None and o.sft_backend:
        sft_spec = {**spec, "kind": o.sft_backend, "model": o.sft_model, "base_url": o.sft_base_url or o.base_url,
                    "recorded_path": o.sft_recorded or o.recorded}
    return RunSetup(config, spec, sft_spec)


def pairs(text: str, flag: str) -> list[tuple[str, str]]:
    """'a=1,b=2' -> [('a', '1'), ('b', '2')]; a malformed pair is a ValueError naming the flag."""
    out = []
    for part in names(text):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{flag}: expected NAME=VALUE pairs separated by commas, got {part!r}")
        out.append((key.strip(), value.strip()))
    return out


def synth_options(o: SimpleNamespace, prompts: Prompts) -> tuple[SynthOptions, Prompts]:
    """SynthOptions from the run's options, and the prompts with a --prefill-template file added."""
    from kodcode_async.prompts import load_prefill_template
    from kodcode_async.seeds import SeedSource
    from kodcode_async.subsets import SynthOptions

    fields: dict[str, dict[str, str]] = {}
    for key, value in pairs(o.seed_fields, "--seed-fields"):
        subset, dot, which = key.partition(".")
        if not dot or which not in ("text", "id", "package"):
            raise ValueError(f"--seed-fields: expected SUBSET.text|id|package=FIELD, got {key}={value}")
        fields.setdefault(subset, {})[which] = value
    seeds = tuple(SeedSource(subset, path, **fields.get(subset, {})) for subset, path in pairs(o.seeds, "--seeds"))
    unused = set(fields) - {s.subset for s in seeds}
    if unused:
        raise ValueError(f"--seed-fields names {', '.join(sorted(unused))}, which has no --seeds file")

    def numbers(text: str, flag: str) -> dict[str, int]:
        out = {}
        for k, v in pairs(text, flag):
            try:
                out[k] = int(v)
            except ValueError:
                raise ValueError(f"{flag}: {k}={v} is not a whole number") from None
        return out

    template = o.prefill_template
    if template.endswith(".toml"):
        loaded = load_prefill_template(template)
        prompts = dataclasses.replace(prompts, prefill={**prompts.prefill, loaded.name: loaded})
        template = loaded.name
    prefixes = tuple(p for p in (x.strip() for x in o.prefill_prefix.split("|")) if p)
    synth = SynthOptions(
        subsets=names(o.subsets), seeds=seeds, model_name=o.model or o.backend,
        counts=numbers(o.counts, "--counts"), shots=numbers(o.shots, "--shots"),
        temperature=o.question_temperature, max_tokens=o.question_max_tokens, seed=o.seed,
        stdin_format=o.stdin_format, prefill_template=template, prefill_prefixes=prefixes,
        prefill_requests=o.prefill_requests, prefill_n=o.prefill_n, filter_keep=names(o.filter_keep),
        dedup_threshold=None if o.no_dedup else o.dedup_threshold, dedup_index=o.dedup_index,
        decontam_threshold=None if o.no_decontam else o.decontam_threshold, benchmarks=names(o.benchmarks),
        embedding_model=o.embedding_model)
    return synth, prompts
