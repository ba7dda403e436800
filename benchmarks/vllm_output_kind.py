"""The event loop's cost per generated token with vLLM's output kinds: CUMULATIVE (vLLM's default)
against FINAL_ONLY (what kodcode-async's vLLM backend asks for).

No GPU here, so a fake engine with vLLM v1 AsyncLLM's interface stands in: `generate(prompt,
sampling_params, request_id)` is an async generator of RequestOutputs, and one engine-step task
advances every running sequence by one token every `--step-ms` (a GPU's decode pace), at most
`--batch` sequences at once (max_num_seqs). As in vLLM v1, where the output processor runs in
the caller's event loop, each step appends the new token to each sequence's text; with
CUMULATIVE it then builds a RequestOutput holding a copy of every sequence's whole text so far
and wakes that request's consumer (the latest output replaces an unread one, as vLLM's output
collector does); with FINAL_ONLY it does that once, when the sequence ends.

The real VLLMBackend drives the fake engine (the backend forces FINAL_ONLY; for the CUMULATIVE
row the benchmark restores vLLM's default on the same SamplingParams). Printed: loop CPU per
generated token, wall time, and the ratio.

Usage: python benchmarks/vllm_output_kind.py [--requests 512] [--tokens 512] [--batch 256] [--step-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
try:
    import vllm  # noqa: F401  (the real one, on a GPU machine)
except ImportError:
    sys.path.insert(0, str(ROOT / "tests" / "vllm_shim"))  # vLLM's names at vLLM's module paths

from vllm.sampling_params import RequestOutputKind  # noqa: E402

from benchmarks.engine_overhead import _run  # noqa: E402
from kodcode_async.backends import vllm as vllm_backend  # noqa: E402
from kodcode_async.backends.base import Request, Sampling  # noqa: E402

TOKEN = " tok"  # each generated token detokenises to 4 characters


@dataclass
class CompletionOutput:
    text: str
    token_ids: list[int]


@dataclass
class RequestOutput:
    outputs: list[CompletionOutput]
    prompt_token_ids: list[int]
    finished: bool


@dataclass
class Sequence:
    params: object
    max_tokens: int
    texts: list[str] = field(default_factory=list)
    ids: list[list[int]] = field(default_factory=list)
    pending: RequestOutput | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False


class FakeAsyncLLM:
    def __init__(self, batch: int, step_s: float) -> None:
        self.batch, self.step_s = batch, step_s
        self.running: dict[str, Sequence] = {}
        self.waiting: list[str] = []
        self.seqs: dict[str, Sequence] = {}
        self.tokens = 0
        self._stepper: asyncio.Task | None = None

    async def get_tokenizer(self):  # noqa: ANN201
        return None

    async def generate(self, prompt: str, sampling_params, request_id: str):  # noqa: ANN001, ANN201
        seq = Sequence(sampling_params, sampling_params.max_tokens,
                       texts=[""] * sampling_params.n, ids=[[] for _ in range(sampling_params.n)])
        self.seqs[request_id] = seq
        self.waiting.append(request_id)
        if self._stepper is None:
            self._stepper = asyncio.create_task(self._steps())  # owned by the engine, like vLLM's output handler
        while True:
            await seq.wake.wait()
            seq.wake.clear()
            out, seq.pending = seq.pending, None
            if out is not None:
                yield out
                if out.finished:
                    return

    async def _steps(self) -> None:
        while self.seqs:
            await asyncio.sleep(self.step_s)
            while self.waiting and len(self.running) < self.batch:
                rid = self.waiting.pop(0)
                self.running[rid] = self.seqs[rid]
            for rid, seq in list(self.running.items()):
                for i in range(len(seq.texts)):
                    seq.texts[i] += TOKEN  # incremental detokenisation, done in the loop as in vLLM v1
                    seq.ids[i].append(1)
                    self.tokens += 1
                finished = len(seq.ids[0]) >= seq.max_tokens
                if finished or seq.params.output_kind != RequestOutputKind.FINAL_ONLY:
                    seq.pending = RequestOutput([CompletionOutput(t[:], list(ids)) for t, ids in zip(seq.texts, seq.ids)],
                                                [0], finished)
                    seq.wake.set()
                if finished:
                    del self.running[rid], self.seqs[rid]

    def abort(self, request_id: str) -> None:
        self.seqs.pop(request_id, None)
        self.running.pop(request_id, None)

    def shutdown(self) -> None:
        pass


async def measure(kind: str, requests: int, tokens: int, batch: int, step_s: float) -> dict:
    engine = FakeAsyncLLM(batch, step_s)
    backend = vllm_backend.VLLMBackend(vllm_backend.VLLMConfig(model="fake", max_num_seqs=batch), engine=engine)
    make = vllm_backend._sampling_params

    def params(request: Request):  # noqa: ANN202
        p = make(request)
        if kind == "CUMULATIVE":
            p.output_kind = RequestOutputKind.CUMULATIVE  # vLLM's default, for comparison
        return p

    vllm_backend._sampling_params = params
    try:
        limit = asyncio.Semaphore(backend.max_in_flight)

        async def one(i: int) -> None:
            async with limit:
                await backend.generate(Request(stage="b", item_id=str(i), attempt=0, prompt="p",
                                               sampling=Sampling(n=1, max_tokens=tokens)))

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        vllm_backend._sampling_params = make
    return {"kind": kind, "tokens": engine.tokens, "cpu": cpu, "wall": wall, "us_per_token": 1e6 * cpu / engine.tokens}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--step-ms", type=float, default=20.0)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.requests} requests x {args.tokens} tokens, batch {args.batch}, one decode step per "
          f"{args.step_ms:g} ms ({args.batch * 1000 / args.step_ms:.0f} tokens/s at full batch)")
    rows = [_run(measure(kind, args.requests, args.tokens, args.batch, args.step_ms / 1000))
            for kind in ("CUMULATIVE", "FINAL_ONLY")]
    ideal = args.requests / args.batch * args.tokens * args.step_ms / 1000
    print(f"\n{'output kind':<13}{'tokens':>9}{'loop CPU s':>12}{'us/token':>10}{'wall s':>8}")
    for r in rows:
        print(f"{r['kind']:<13}{r['tokens']:>9}{r['cpu']:>12.2f}{r['us_per_token']:>10.2f}{r['wall']:>8.2f}")
    print(f"GPU-paced ideal wall: {ideal:.2f} s; loop CPU per token, CUMULATIVE / FINAL_ONLY: "
          f"{rows[0]['us_per_token'] / rows[1]['us_per_token']:.1f}x")


if __name__ == "__main__":
    main()
