"""Answers from recorded responses: offline runs, the bundled demo and tests."""

from __future__ import annotations

import orjson

from kodcode_async.backends.base import Completion, LLMRequestError, Request
from kodcode_async.jsonl import iter_lines
from kodcode_async.options import DEFAULTS


class RecordedBackend:
    """Rows of {stage, item_id, attempt, response} (or `responses`, a list, for n > 1)."""

    name = "recorded"

    def __init__(self, path: str, max_in_flight: int = DEFAULTS["workers"]) -> None:
        self.max_in_flight = max_in_flight
        self.calls = 0
        self._answers: dict[tuple[str, str, int], list[str]] = {}
        for lineno, line in iter_lines(path):
            try:
                row = orjson.loads(line)
                key = (str(row["stage"]), str(row["item_id"]), int(row["attempt"]))
                texts = row["responses"] if "responses" in row else [row["response"]]
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: not a recorded response row ({e})") from None
            self._answers[key] = [str(t) for t in texts]

    async def generate(self, request: Request) -> Completion:
        self.calls += 1
        texts = self._answers.get((request.stage, request.item_id, request.attempt))
        if texts is None:
            raise LLMRequestError("not_recorded", f"no recorded response for {request.stage}/{request.item_id}/"
                                                  f"attempt {request.attempt}")
        n = request.sampling.n
        return Completion(texts=(texts * n)[:n] if len(texts) < n else texts[:n])

    async def close(self) -> None:
        pass
