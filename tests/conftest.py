import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def isolation_mode() -> str:
    """'bwrap' when namespaces work here; on CI (KODCODE_REQUIRE_BWRAP=1) their absence is a failure."""
    from sandbox.isolation import bwrap_works

    ok, why = bwrap_works()
    if ok:
        return "bwrap"
    if os.environ.get("KODCODE_REQUIRE_BWRAP"):
        pytest.fail(f"bubblewrap is required on CI: {why}")
    pytest.skip(f"bubblewrap unavailable: {why}")


def read_jsonl(path):
    import orjson

    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]


def stray_processes(marker: str) -> list[str]:
    """Processes on this machine whose command line contains marker."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def zombie_children() -> list[int]:
    me = os.getpid()
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z" and int(fields[1]) == me:
            out.append(int(pid))
    return out
