"""Untrusted-code execution for verification: a pool of warm, isolated, limited pytest workers."""

from sandbox.protocol import Job, Limits, StdinCase, TestOutcome, Verdict

__all__ = ["Job", "Limits", "StdinCase", "TestOutcome", "Verdict", "SandboxConfig", "SandboxPool",
           "SandboxUnavailable", "verify_batch"]


def __getattr__(name: str):  # noqa: ANN202 - lazy, so the zygote never imports asyncio machinery
    if name in ("SandboxConfig", "SandboxPool", "SandboxUnavailable", "verify_batch"):
        from sandbox import pool

        return getattr(pool, name)
    raise AttributeError(name)
