"""Executors run the same stage chain (run.py) in different places.

The local executor is `kodcode_async.run.execute` itself: one event loop, one sandbox pool. The Ray
executor (`executors.ray`, an optional extra) runs that same function once per shard of the items,
in Ray actors, with one sandbox pool per node shared by every shard, then merges the shards' rows.
Stages never know which one runs them (CONTRIBUTING rule 2).
"""
