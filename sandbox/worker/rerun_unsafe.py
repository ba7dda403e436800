"""A flakiness rerun in a fresh interpreter (started by exec from a job process).

`python -m sandbox.worker.rerun_unsafe SPEC`: PYTHONHASHSEED is already the rerun's seed; the
collected tests run shuffled by the same seed; events go to fd 3 as in a warm job. Coverage is
off: a rerun only asks whether the verdict holds.
"""

from __future__ import annotations

import sys

import msgspec

from sandbox.protocol import RESULT_FD, Done, event_frame, write_all
from sandbox.worker.pytest_unsafe import Reporter
from sandbox.worker.warmup import BlockedImports


def main() -> None:
    spec = msgspec.json.decode(sys.argv[1].encode())
    if spec["blocked"]:
        sys.meta_path.insert(0, BlockedImports(spec["blocked"]))
    reporter = Reporter()
    reporter.fd = RESULT_FD
    reporter.token = bytes.fromhex(spec["token"])
    reporter.order_seed = spec["seed"]
    code, reason = 3, ""
    try:
        import pytest

        code = int(pytest.main(spec["args"], plugins=[reporter]))
    except MemoryError:
        reporter.memory_error = True
    except BaseException as e:  # noqa: BLE001 - a test may raise anything at session level
        reason = f"pytest session aborted: {type(e).__name__}: {e}"[:500]
    sys.stdout.flush()
    sys.stderr.flush()
    write_all(RESULT_FD, event_frame(reporter.token, Done(exit_code=code, memory_error=reporter.memory_error,
                                                          reason=reason)))


if __name__ == "__main__":
    main()
