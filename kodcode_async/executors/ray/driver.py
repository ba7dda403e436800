"""The driver: starts the actors, runs the phases, restarts dead runners, shows one live view, and
merges the shards into the run directory (merge.py)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson

from kodcode_async.backends import BackendDead
from kodcode_async.executors.ray.actors import GenerationActor, PoolActor, ShardRunner
from kodcode_async.executors.ray.merge import merge_file, merge_snapshots, sum_reports
from kodcode_async.executors.ray.messages import ShardResult, ShardTask
from kodcode_async.executors.storage import Mirror, is_url
from kodcode_async.jsonl import count_rows, iter_lines
from kodcode_async.options import DEFAULTS
from kodcode_async.run import RunConfig, RunReport, RunStats, fingerprint
from kodcode_async.rundir import RunDir
from kodcode_async.stats import Snapshot, Timeline
from sandbox.pool import SandboxConfig, SandboxUnavailable

log = logging.getLogger("kodcode_async.ray")

SHARDS_DIR = "shards"
QUESTIONS_PHASE_DIR = "questions-phase"
PROGRESS_S = 1.0  # how often the driver asks the runners for their progress
POOL_START_S = 60.0  # a pool that has not answered its check by then is on a node that is gone


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


@dataclass(frozen=True, slots=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray instance; "auto" or "ray://host:10001": join a cluster
    shards: int = 0  # 0: two per node (each runner is one event loop: one core's worth of dispatch)
    pool_workers: int | None = None  # sandbox workers per node; None: the node's CPUs
    shard_retries: int = 3  # times a shard's runner is started again after it died
    num_cpus: int | None = None  # for a local instance only
    generation_actors: int = 0  # in-process vLLM actors (backend "vllm"); 0: one per GPU group found
    gpus_per_actor: int = 1  # vLLM tensor-parallel size: GPUs in each actor's placement group


def _ray():  # noqa: ANN202 - the optional module
    try:
        import ray
    except ImportError as e:
        raise RayUnavailable("--executor ray needs Ray: pip install 'kodcode-async[ray]'") from e
    return ray


def run_on_ray(config: RunConfig, backend_spec: dict, options: RayOptions = RayOptions(), *,
               sft_backend_spec: dict | None = None,
               on_progress: Callable[[Snapshot], None] | None = None) -> RunReport:
    """Run (or resume) `config` on Ray into `config.out_dir`; returns the merged report (also in
    stats.json). `backend_spec` holds make_backend's arguments; each runner builds its own client
    from it (backend "vllm": generation actors on the cluster's GPUs instead).

    Raises, before anything is written: RayUnavailable; SandboxUnavailable when a node cannot set
    up isolation; RunDirMismatch. Later: BackendDead / SandboxUnavailable when a shard cannot go on."""
    ray = _ray()
    _check_runnable(config)
    with tempfile.TemporaryDirectory(prefix="kodcode-ray-driver-") as scratch:
        main = None
        if is_url(config.out_dir):  # the driver's files live in a local mirror, pushed at the end
            main = Mirror(config.out_dir, os.path.join(scratch, "main"))
            main.pull(only_top=True)
        local_out = main.local if main is not None else config.out_dir
        report = _run_on_ray(ray, config, backend_spec, options, sft_backend_spec, on_progress, local_out, scratch)
        if main is not None:
            main.push()
        return report


def _run_on_ray(ray, config: RunConfig, backend_spec: dict, options: RayOptions,  # noqa: ANN001
                sft_backend_spec: dict | None, on_progress: Callable[[Snapshot], None] | None, local_out: str,
                scratch: str) -> RunReport:
    if options.shards:  # a directory of another configuration is refused before Ray starts
        RunDir(local_out).check(_fingerprint(config, options.shards), config.new_run)
    started = time.monotonic()
    if not ray.is_initialized():
        init_ray(options.address, options.num_cpus)
    # This run's actors are named (kodcode-pool-0, kodcode-shard-3-main, ...) in a namespace of
    # their own, so runs in one Ray job never meet each other's names; progress snapshots carry it.
    namespace = f"kodcode-{uuid.uuid4().hex[:12]}"
    pools, infos = _start_pools(ray, config.sandbox, options, namespace)  # refuses before anything is written
    gen_actors = (_start_generation(ray, backend_spec, options, namespace) if backend_spec.get("kind") == "vllm"
                  else [])
    isolation = ", ".join(sorted({i["isolation"] for i in infos}))
    shards = options.shards or 2 * len(infos)
    run_dir = RunDir(local_out)
    run_dir.claim(_fingerprint(config, shards), config.new_run)
    driver = _Driver(ray, config, options, pools, infos, isolation, gen_actors, backend_spec, sft_backend_spec,
                     on_progress, started)
    driver.namespace = namespace
    # The workers warm up while the runners start and ask their first questions; jobs wait for them
    # (a failed start reaches the jobs, and through them the run, as SandboxUnavailable).
    warming = [a.start.remote() for a in pools]
    try:
        phases = _phases(config, shards)
        results: list[ShardResult] = []
        for phase_config, count in phases:
            results += driver.run_phase(phase_config, count)
    finally:
        ray.wait(warming, num_returns=len(warming), timeout=60)
        for a in pools + gen_actors:
            try:
                ray.get(a.close.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - a dead actor has nothing to close
                pass
            ray.kill(a)
    report = driver.merge(phases, results, local_out, scratch)
    stats = report.stats()
    stats.executor = driver.executor_stats(shards)
    run_dir.write_stats(stats.to_json())
    run_dir.write_manifest(report.complete, sum(report.unfinished.values()))
    return report


def init_ray(address: str | None = None, num_cpus: int | None = None, extra_paths: tuple[str, ...] = ()) -> None:
    """Join the cluster at `address`, or start a local Ray instance (address None). The workers get
    this very code on their PYTHONPATH, wherever the driver's copy lives; on a real cluster every
    node has kodcode-async installed (docs/multi-node.md) and the same path wins either way."""
    ray = _ray()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    local = address is None
    if address not in (None, "auto", "local"):
        _reachable(address)  # Ray itself retries an unreachable address for minutes
    try:
        ray.init(address=address, num_cpus=num_cpus if local else None, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING,
                 # messages are small (configs, jobs, verdicts): a modest store, not 30% of the RAM;
                 # workers at normal priority (Ray's default is nice 15): on a machine busy with other
                 # work the sandbox pools and runners would get a few percent of a core and crawl
                 **({"object_store_memory": 256 * 1024 * 1024, "_system_config": {"worker_niceness": 0}}
                    if local else {}),
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join((root, *extra_paths))}})
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError ...
        raise RayUnavailable(f"cannot start or reach Ray ({address or 'a local instance'}): {e}") from e


def _reachable(address: str, timeout_s: float = 10.0) -> None:
    import socket

    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"--ray-address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {e.strerror or e}; is `ray start "
                             f"--head` running there, and is the port open from this machine?") from None


def _fingerprint(config: RunConfig, shards: int) -> dict:
    # The shard count is part of it: another count would move items between shard directories.
    return {**fingerprint(config), "executor": {"kind": "ray", "shards": shards}}


def _check_runnable(config: RunConfig) -> None:
    if not config.input_path and config.makes_questions is None:
        raise ValueError("--executor ray reads its questions from a file (--input) or makes them (--subsets); "
                         "rows passed in memory are for the local executor")
    if is_url(config.out_dir) and config.new_run:
        raise ValueError(f"--new-run with a run directory at a URL ({config.out_dir}): choose a new --out instead "
                         "(objects are not moved aside)")
    if config.synth is not None and any(is_url(s.path) for s in config.synth.seeds):
        raise ValueError("seed files at URLs are not read by the Ray executor: put them on a path every node "
                         "reaches, or copy them to each node")


def _phases(config: RunConfig, shards: int) -> list[tuple[RunConfig, int]]:
    """(config, shard count) per phase: the questions stages as one ordered pass, the rest sharded."""
    names = config.stage_names()
    base = os.path.join(config.out_dir, SHARDS_DIR)
    if names[0] != "questions":
        return [(replace(config, out_dir=base), shards)]
    first = replace(config, out_dir=os.path.join(config.out_dir, QUESTIONS_PHASE_DIR), stop_after="questions")
    if names == ["questions"]:
        return [(first, 1)]
    rest = replace(config, input_path=os.path.join(first.out_dir, "questions.jsonl"), out_dir=base,
                   start_at=names[1], limit=None)
    return [(first, 1), (rest, shards)]


def _start_pools(ray, config: SandboxConfig, options: RayOptions,  # noqa: ANN001
                 namespace: str) -> tuple[list, list[dict]]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    if not nodes:
        raise RayUnavailable("the Ray cluster has no live node with CPUs for the sandbox")
    remote = ray.remote(PoolActor)
    actors = []
    for i, n in enumerate(nodes):
        workers = options.pool_workers or max(1, int(n["Resources"]["CPU"]))
        actors.append(remote.options(
            name=f"kodcode-pool-{i}", namespace=namespace, num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=max(64, workers * 8),
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
        ).remote(replace(config, workers=workers)))
    checks = [a.check.remote() for a in actors]
    # A node that just died can still be listed alive for a few seconds (until Ray's health check
    # notices): its pool never starts. Wait a while for every pool, then go on with those that answered.
    ready, _ = ray.wait(checks, num_returns=len(checks), timeout=POOL_START_S)
    try:
        infos = [ray.get(ref) if ref in ready else None for ref in checks]
    except ray.exceptions.RayTaskError as e:
        for b in actors:
            ray.kill(b)
        cause = getattr(e, "cause", None)
        if isinstance(cause, SandboxUnavailable):
            raise SandboxUnavailable(str(cause)) from None
        raise
    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError,
            ray.exceptions.ActorUnschedulableError):  # its node died meanwhile
        infos = [ray.get(ref) if ref in ready and _answered(ray, ref) else None for ref in checks]
    for actor, info, n in zip(actors, infos, nodes):
        if info is None:
            log.warning("no sandbox pool on node %s: it did not start within %g s (node gone?)", n["NodeID"][:12],
                        POOL_START_S)
            ray.kill(actor)
    kept = [(a, i) for a, i in zip(actors, infos) if i is not None]
    if not kept:
        raise RayUnavailable(f"no sandbox pool started on any node within {POOL_START_S:g} s")
    return [a for a, _ in kept], [i for _, i in kept]


def _answered(ray, ref) -> bool:  # noqa: ANN001
    try:
        ray.get(ref)
        return True
    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.ActorUnschedulableError):
        return False


def _start_generation(ray, spec: dict, options: RayOptions, namespace: str) -> list:  # noqa: ANN001
    """One GenerationActor per GPU group, each in a placement group of `gpus_per_actor` GPUs."""
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    gpus = int(ray.cluster_resources().get("GPU", 0))
    per = options.gpus_per_actor
    count = options.generation_actors or (gpus // per if per else 0)
    if count < 1:
        raise BackendDead(f"--backend vllm on Ray needs GPUs: the cluster has {gpus}, each engine needs "
                          f"{per}; or use --backend openai against running servers")
    remote = ray.remote(GenerationActor)
    actors = []
    for i in range(count):
        placement = {}
        if per:
            # The engine's GPUs on one node (tensor parallelism needs them together); vLLM's own
            # workers for tp > 1 land in this group too (capture_child_tasks).
            pg = placement_group([{"GPU": 1, "CPU": 1}] * per, strategy="STRICT_PACK")
            try:
                ray.get(pg.ready(), timeout=600)
            except ray.exceptions.GetTimeoutError:
                raise BackendDead(f"no node has {per} free GPUs for generation actor {i}") from None
            placement = {"scheduling_strategy": PlacementGroupSchedulingStrategy(
                pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True),
                "num_gpus": 1 if per == 1 else 0}
        # An actor that dies comes back (max_restarts); its in-flight requests go to the others.
        actors.append(remote.options(name=f"kodcode-generation-{i}", namespace=namespace, max_restarts=-1, max_concurrency=100_000,
                                     num_cpus=0 if not per else 1, **placement).remote(
            {**spec, "tensor_parallel_size": max(1, per)}))
    try:
        ray.get([a.ready.remote() for a in actors])  # the engines load (or fail) before any shard starts
    except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as e:
        for a in actors:
            ray.kill(a)
        raise BackendDead(f"a generation actor could not start its engine: {str(e)[:2000]}") from None
    return actors


@dataclass(slots=True)
class _Shard:
    index: int
    count: int
    config: RunConfig
    runner: object = None
    ref: object = None
    restarts: int = 0
    result: ShardResult | None = None
    snapshot: Snapshot | None = None


class _Driver:
    def __init__(self, ray, config: RunConfig, options: RayOptions, pools: list, infos: list[dict],  # noqa: ANN001
                 isolation: str, gen_actors: list, backend_spec: dict, sft_backend_spec: dict | None,
                 on_progress: Callable[[Snapshot], None] | None, started: float) -> None:
        self.ray, self.config, self.options = ray, config, options
        self.pools, self.infos, self.isolation, self.gen_actors = pools, infos, isolation, gen_actors
        self.backend_spec, self.sft_backend_spec = backend_spec, sft_backend_spec
        self.on_progress, self.started = on_progress, started
        self.timeline = Timeline()
        self.shard_restarts = 0
        self.actor_failures = 0
        self.generation_failures = 0
        self.phase = "main"
        self.namespace = ""
        self.total = _input_total(config)

    def _task(self, shard: _Shard) -> ShardTask:
        # --workers is the cluster's LLM requests in flight: each of a phase's runners gets its share
        # (with generation actors: a share of what all the engines keep in flight).
        total = self.backend_spec.get("workers", DEFAULTS["workers"])
        if self.gen_actors:
            total = len(self.gen_actors) * int(total * 1.25)  # each engine batches --workers; see VLLMConfig
        share = -(-total // shard.count)
        return ShardTask(config=shard.config, shard=(shard.index, shard.count) if shard.count > 1 else None,
                         pools=self.pools, pool_sizes=[i["workers"] for i in self.infos], isolation=self.isolation,
                         backend={**self.backend_spec, "workers": share},
                         sft_backend={**self.sft_backend_spec, "workers": share} if self.sft_backend_spec else None,
                         generation_actors=self.gen_actors)

    def _launch(self, shard: _Shard) -> None:
        name = f"kodcode-shard-{shard.index}-{self.phase}" + (f"-r{shard.restarts}" if shard.restarts else "")
        shard.runner = self.ray.remote(ShardRunner).options(name=name, namespace=self.namespace, num_cpus=0,
                                                            max_restarts=0,
                                                            scheduling_strategy="SPREAD").remote()
        shard.ref = shard.runner.run.remote(self._task(shard))

    def run_phase(self, config: RunConfig, count: int) -> list[ShardResult]:
        ray = self.ray
        self.phase = "questions" if config.stop_after == "questions" and count == 1 else "main"
        shards = [_Shard(k, count, replace(config, out_dir=os.path.join(config.out_dir, f"{k:05d}"))
                         if count > 1 else config) for k in range(count)]
        for s in shards:
            self._launch(s)
        try:
            while pending := [s for s in shards if s.result is None]:
                ready, _ = ray.wait([s.ref for s in pending], num_returns=len(pending), timeout=PROGRESS_S)
                for s in pending:
                    if s.ref in ready:
                        self._collect(s)
                self._poll(shards)
        except BaseException:
            self._stop(shards)
            raise
        return [s.result for s in shards]  # type: ignore[misc]

    def _collect(self, s: _Shard) -> None:
        ray = self.ray
        try:
            s.result = ray.get(s.ref)
            ray.kill(s.runner)  # done: its process goes now, not when the Ray job ends
            self.actor_failures += s.result.actor_failures
            self.generation_failures += s.result.generation_failures
        except ray.exceptions.RayTaskError as e:  # the run raised: engine-dead errors stop everything
            dead = _engine_dead(getattr(e, "cause", None))
            if dead is not None:
                raise dead from None
            raise
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError,
                ray.exceptions.ActorUnschedulableError) as e:
            # The runner (or its node) died: its shard directory resumes per item in a new one.
            if s.restarts >= self.options.shard_retries:
                raise RuntimeError(f"shard {s.index}: its runner died {s.restarts + 1} times; last: {e}") from None
            s.restarts += 1
            self.shard_restarts += 1
            log.warning("shard %d: runner died (%s); starting it again (%d/%d)", s.index, type(e).__name__,
                        s.restarts, self.options.shard_retries)
            self._launch(s)

    def _stop(self, shards: list[_Shard]) -> None:
        """Interrupted: cancel the runs (each closes its files) and give them a moment, then kill."""
        ray = self.ray
        live = [s for s in shards if s.result is None and s.ref is not None]
        for s in live:
            ray.cancel(s.ref)
        ray.wait([s.ref for s in live], num_returns=len(live), timeout=15)
        for s in live:
            ray.kill(s.runner)

    def _poll(self, shards: list[_Shard]) -> None:
        ray = self.ray
        live = [s for s in shards if s.result is None]
        refs = [s.runner.progress.remote() for s in live]
        for s, ref in zip(live, refs):
            try:
                s.snapshot = ray.get(ref, timeout=5)
            except Exception:  # noqa: BLE001 - a dying runner: its last snapshot stands
                pass
        snap = merge_snapshots([s.snapshot for s in shards if s.snapshot is not None],
                               time.monotonic() - self.started, self.isolation)
        snap.total = self.total
        snap.ray_namespace = self.namespace
        # The pools are shared: their own counts, not the runners' sum (each runner sees the whole cluster).
        pools = [self.pools[i].stats.remote() for i in range(len(self.pools))]
        try:
            counts = ray.get(pools, timeout=5)
            snap.sandbox.busy = sum(c["busy"] for c in counts)
            snap.sandbox.workers = sum(c["workers"] for c in counts)
        except Exception:  # noqa: BLE001 - a restarting pool actor: the sums stand for one tick
            snap.sandbox.workers = sum(i["workers"] for i in self.infos)
        self.timeline.maybe_sample(snap)
        if self.on_progress is not None:
            self.on_progress(snap)

    def merge(self, phases: list[tuple[RunConfig, int]], results: list[ShardResult], out: str, scratch: str) -> RunReport:
        """The shards' files into the run directory `out` (each row once), and one report."""
        dirs = []
        for config, count in phases:
            for k in range(count):
                d = os.path.join(config.out_dir, f"{k:05d}") if count > 1 else config.out_dir
                if is_url(d):  # the shard's rows, copied down (not its journal)
                    local = os.path.join(scratch, "shards", str(len(dirs)))
                    Mirror(d, local).pull(suffixes=(".jsonl",))
                    d = local
                dirs.append(d)
        last_dirs = dirs[-phases[-1][1]:]
        reports = [r.report for r in results]
        internal = {"questions.jsonl"} if len(phases) > 1 else set()  # the first phase's hand-over file
        final = sorted({n for r in reports for n in r.item_files} - internal)
        names = sorted({n for d in dirs if os.path.isdir(d) for n in os.listdir(d)
                        if n.endswith(".jsonl") and (d in last_dirs or n not in internal)})
        report = RunReport(RunStats(self.config.solve.max_attempts), model=self.config.solve.model_name,
                           item_files=final)
        for name in names:
            rows = merge_file([os.path.join(d, name) for d in dirs], os.path.join(out, name))
            report.existing[name] = rows
            if name in final:
                for _, line in iter_lines(os.path.join(out, name)):
                    report.dataset.add(orjson.loads(line))
        sum_reports(report, reports, self.infos, self.isolation, self.timeline.samples, self.started)
        for name in internal:
            report.files.pop(name, None)
        report.complete = not report.unfinished
        return report

    def executor_stats(self, shards: int) -> dict:
        return {"kind": "ray", "shards": shards, "nodes": len(self.infos), "pools": self.infos,
                "shard_restarts": self.shard_restarts, "sandbox_actor_failures": self.actor_failures,
                "generation_actors": len(self.gen_actors), "generation_actor_failures": self.generation_failures}


def _input_total(config: RunConfig) -> int | None:
    if config.makes_questions is not None or not os.path.exists(config.input_path):
        return None
    rows = count_rows(config.input_path)
    return min(rows, config.limit) if config.limit is not None else rows


def _engine_dead(error: BaseException | None) -> BaseException | None:
    kinds = (BackendDead, SandboxUnavailable)
    if isinstance(error, kinds):
        # Ray's errors from another process are also instances of their cause's type, with Ray's
        # traceback as their text: the cause itself reads better.
        cause = getattr(error, "cause", None)
        return _engine_dead(cause) if isinstance(cause, BaseException) and cause is not error else error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _engine_dead(inner)
            if found is not None:
                return found
    return None
