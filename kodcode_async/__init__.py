"""kodcode-async: an asyncio engine for verifiable synthetic coding datasets."""

__version__ = "0.1.0"
