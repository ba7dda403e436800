"""vLLM's two engine error types, by the names and module path vLLM defines them under."""


class EngineGenerateError(Exception):
    """One generate() call failed; the engine lives on."""


class EngineDeadError(Exception):
    """The engine core died; nothing more can be generated."""
