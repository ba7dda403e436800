"""The commands: parsing (from the option tables in kodcode_async/options.py) and wiring only. The
one module that reads environment variables."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
from typing import TYPE_CHECKING

from kodcode_async import __version__
from kodcode_async.configure import check_sandbox_workers, names, run_problem, run_setup, run_values, sandbox_config
from kodcode_async.options import RUN, SERVE, VERIFY, ConfigError, add_options, range_problem
from kodcode_async.terminal import (
    first_of,
    print_summary,
    render_progress,
    setup_logging,
    storage_error,
    storage_exit,
    storage_line,
)

if TYPE_CHECKING:  # imported lazily at run time: --help and bad flags answer without the engine
    from collections.abc import Callable
    from types import SimpleNamespace

    from kodcode_async.progress import Progress
    from kodcode_async.run import RunConfig, RunReport
    from kodcode_async.stats import Snapshot

EXIT_INTERRUPTED = 130
EXIT_UNFINISHED = 3  # the run ended, but some items are unfinished (e.g. the LLM server was down): run it again
NO_ISOLATION_WARNING = ("WARNING: --isolation none: untrusted, model-written code runs WITHOUT any sandbox "
                        "isolation, as this user, with this machine's network and files.")


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


def cmd_verify(args: argparse.Namespace) -> int:
    from kodcode_async.verify import VerifyOptions, run_verify
    from sandbox.pool import SandboxUnavailable

    problem = range_problem(vars(args), VERIFY) or check_sandbox_workers("--workers", args.workers)
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
    config = sandbox_config(args, args.workers)
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
        dead = first_of(e, (SandboxUnavailable,))
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


def cmd_run(args: argparse.Namespace) -> int:
    from kodcode_async.backends import BackendDead, make_backend
    from kodcode_async.embedder import EmbedderUnavailable
    from kodcode_async.run import execute
    from kodcode_async.rundir import RunDirMismatch
    from kodcode_async.seeds import SeedError
    from kodcode_async.stages.decontam import BenchmarkError
    from sandbox.pool import SandboxUnavailable

    try:
        o = run_values(args.config, vars(args))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    problem = run_problem(o)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:
        setup = run_setup(o, os.environ)
        config, spec, sft_spec = setup.config, setup.backend, setup.sft_backend
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
        dead = first_of(e, (BackendDead, SandboxUnavailable, EmbedderUnavailable))
        storage = storage_error(e)
        if dead is None and storage is not None:
            progress.close()
            print(storage_line(storage, o.out, progress, o.input), file=sys.stderr)
            return storage_exit(storage)
        if dead is None:
            raise
        progress.close()
        where = ("nothing was run." if isinstance(dead, SandboxUnavailable) else
                 f"finished items are in {o.out}; fix the cause and run the same command to resume.")
        print(f"error: {dead}\n{where}", file=sys.stderr)
        return 1
    return _finish_run(o, report, progress)


def _start_run(o: SimpleNamespace) -> tuple[Progress, Callable[[Snapshot], None]] | None:
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

    def on_progress(snap: Snapshot) -> None:
        progress.done = snap.finished
        progress.total = snap.total or None
        progress.render = lambda: render_progress(snap)
        progress.update()

    return progress, on_progress


def _finish_run(o: SimpleNamespace, report: RunReport, progress: Progress) -> int:
    """The summary, the isolation warning again, and the exit code of a run that ended."""
    progress.close()
    stats = report.stats()
    if not o.quiet:
        print_summary(o.out, stats)
    if o.isolation == "none":
        print(NO_ISOLATION_WARNING, file=sys.stderr)
    rejected = stats.rejected_rows
    for row in rejected[:3]:  # on the terminal, --quiet or not: the reason a row was not used
        where = f"line {row['line']}" if "line" in row else "a row"
        print(f"warning: input {where} rejected: {row.get('reason', '?')}", file=sys.stderr)
    if len(rejected) > 3:
        print(f"warning: {len(rejected)} input rows rejected in all (every one in stats.json)", file=sys.stderr)
    if (o.input and not (o.subsets and o.start_at in ("", "questions")) and stats.questions == 0
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


def _run_on_ray(o: SimpleNamespace, config: RunConfig, spec: dict, sft_spec: dict | None) -> int:
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
        storage = storage_error(e)
        if storage is None:
            raise
        progress.close()
        print(storage_line(storage, o.out, progress, o.input), file=sys.stderr)
        return storage_exit(storage)
    return _finish_run(o, report, progress)


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
        result = select(args.run_dir, args.n, args.output, difficulty=names(args.difficulty),
                        subsets=names(args.subsets), style=args.style, seed=args.seed)
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

    problem = range_problem(vars(args), SERVE) or check_sandbox_workers("--workers", args.workers)
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
    sandbox = dataclasses.replace(sandbox_config(args, args.workers), warm_pytest_at_start=False)
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
    add_options(v, VERIFY)
    v.set_defaults(func=cmd_verify)

    r = sub.add_parser("run", help="solve-and-verify questions into a run directory (re-run to resume)")
    r.add_argument("--config", help="TOML file with any of the options below (CLI flags win; every key with its "
                   "help: examples/full.toml)")
    add_options(r, RUN, from_config=True)
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
    add_options(sv, SERVE)
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
