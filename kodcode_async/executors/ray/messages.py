"""What crosses between the Ray executor's processes, typed.

* A runner gets one `ShardTask` (the run's frozen config, its shard, the actors to use) and answers
  with one `ShardResult`.
* Jobs and verdicts go to and from a pool actor as msgpack bytes of the sandbox's own structs.
* A request goes to a generation actor as msgpack of the engine's own `Request`; the answer is a
  `GenerationAnswer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from kodcode_async.backends import Request
from kodcode_async.run import RunConfig, RunReport
from sandbox import Job, Verdict

encode = msgspec.msgpack.Encoder().encode
decode_job = msgspec.msgpack.Decoder(Job).decode
decode_verdict = msgspec.msgpack.Decoder(Verdict).decode
decode_request = msgspec.msgpack.Decoder(Request).decode


class GenerationAnswer(msgspec.Struct, kw_only=True):
    """A generation actor's answer: the texts and token counts, or the request's failure."""

    texts: list[str] = []
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error_kind: str = ""  # set: the request failed for good (LLMRequestError's kind and message)
    error: str = ""


decode_answer = msgspec.msgpack.Decoder(GenerationAnswer).decode


@dataclass(frozen=True, slots=True)
class ShardTask:
    """One runner's work: run `config` (one shard of it, or the whole questions phase)."""

    config: RunConfig
    shard: tuple[int, int] | None  # (index, count); None: not sharded
    pools: list  # the cluster's PoolActor handles
    pool_sizes: list[int]  # workers of each
    isolation: str  # the pools' isolation label(s)
    backend: dict  # make_backend's arguments, with this runner's share of --workers
    sft_backend: dict | None = None
    generation_actors: list | None = None  # GenerationActor handles (backend "vllm")


@dataclass(frozen=True, slots=True)
class ShardResult:
    """What a runner hands back when its run is done."""

    report: RunReport  # the shard's run
    host: str
    actor_failures: int  # sends that met a dead or restarting pool actor
    generation_failures: int  # the same for generation actors
