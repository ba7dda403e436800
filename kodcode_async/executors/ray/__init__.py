"""The Ray executor: the same run (run.execute) on a Ray cluster, sharded, with a sandbox pool per node.

    driver (run_on_ray)
      │ one PoolActor per node ◄──────────────── jobs (msgpack) from every shard, least-loaded first
      │ ShardRunner × shards: run.execute(config, shard=(k, n)) into OUT/shards/k/ (own journal)
      │     LLM: its own HTTP client, or GenerationActors (in-process vLLM, one per GPU group)
      │ polls the runners' progress ──► one live view, one timeline
      └ merge: OUT/shards/*/<file> ──► OUT/<file>, each row once; stats.json, manifest.json

Why this shape:
* A shard is an ordinary run directory on storage every node reaches (a shared filesystem path,
  or an fsspec URL through a local mirror: storage.py). Its journal makes it resumable per item: a runner that dies (node lost, actor
  killed) is started again elsewhere on the same directory and asks nothing twice; so does a rerun
  of the whole command after the driver stopped.
* Items go to shards by a stable hash of their id (run.shard_of), so duplicate ids meet in one shard
  and the shards are disjoint: every item's rows are written by one shard, once. The merge copies
  the shards' files into OUT in shard order and drops byte-identical repeats, so running it again
  (a resumed run) rewrites the same files: idempotent.
* Verification is the cluster's shared resource: each node has one pool of warm sandbox workers
  (a PoolActor); each runner sends a job to the pool with the lowest load relative to its size and
  keeps at most as many jobs in flight as the cluster has workers (backpressure); the pool actors
  queue what exceeds their workers. A job whose pool actor died is sent again (Ray restarts the
  actor; its verdict is journaled only once it arrives).
* Question synthesis with semantic dedup is one ordered pass over every question (dedup keeps the
  first of near-duplicates in arrival order), so the "questions" stages run as a first phase in
  one runner, and the stages after them run sharded on its questions.jsonl.

The package by role, top-down: driver.py (starts the actors, runs the phases, restarts dead
runners, merges), actors.py (what runs on the nodes), clients.py (what a shard's run sees of the
actors: its pool and its LLM backend, through one retry rule), merge.py (files, progress and
reports of the shards into one), messages.py (what crosses between processes, typed: a runner's
task and result, jobs and verdicts as msgpack of the sandbox's own structs, requests as msgpack of
the engine's Request; CONTRIBUTING rule 10). Ray is imported only here, and this package only when
`--executor ray` is chosen.
"""

from kodcode_async.executors.ray.driver import RayOptions, RayUnavailable, init_ray, run_on_ray
from kodcode_async.executors.ray.merge import merge_snapshots

__all__ = ["RayOptions", "RayUnavailable", "init_ray", "merge_snapshots", "run_on_ray"]
