"""A flakiness rerun in a fresh interpreter (started by exec from a job process).

`python -m sandbox.worker.rerun_unsafe SPEC`: PYTHONHASHSEED is already the rerun's seed; the
collected tests run shuffled by the same seed; events go to fd 3 through the same audit hooks as
in a warm job (installed when the session starts, before the test module and so the solution are
imported). The job's token comes from the spec on an inherited fd, never the command line.
Coverage is off: a rerun only asks whether the verdict holds.
"""

from __future__ import annotations

import os
import sys

import msgspec

from sandbox.protocol import RESULT_FD, Done, decode_spec
from sandbox.worker.pytest_unsafe import Reporter
from sandbox.worker.warmup import BlockedImports


def main() -> None:
    spec = msgspec.json.decode(sys.argv[1].encode())
    fd = spec["spec_fd"]
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    os.close(fd)
    box = [decode_spec(b"".join(chunks)).token]
    del chunks
    if spec["blocked"]:
        sys.meta_path.insert(0, BlockedImports(spec["blocked"]))
    reporter = Reporter()
    reporter.order_seed = spec["seed"]

    class Guard:
        # At the start of collection (pytest's own plugins are all registered by then), before the
        # test module and so the solution are imported.
        def pytest_collectstart(self, collector) -> None:  # noqa: ANN001
            from sandbox.worker import guard_unsafe

            if box:
                guard_unsafe.install(RESULT_FD, box, collector.config, Reporter._send.__code__,
                                     reporter.emit_callers((main.__code__,)))

    code, reason = 3, ""
    try:
        import pytest

        code = int(pytest.main(spec["args"], plugins=[Guard(), reporter]))
    except MemoryError:
        reporter.memory_error = True
    except BaseException as e:  # noqa: BLE001 - a test may raise anything at session level
        reason = f"pytest session aborted: {type(e).__name__}: {e}"[:500]
    sys.stdout.flush()
    sys.stderr.flush()
    reporter._send(Done(exit_code=code, memory_error=reporter.memory_error, reason=reason))


if __name__ == "__main__":
    main()
