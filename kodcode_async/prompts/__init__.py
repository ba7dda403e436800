"""The stages' prompt templates: text files in this folder, replaceable with `--prompts DIR`.

A template is a file named `<stage>.<role>.txt` with `{placeholders}` for str.format (write `{{`
and `}}` for literal braces). A DIR given by the user may hold any of them; the rest keep our
defaults. Every template must use exactly its placeholders, so a typo is an error at start-up,
not a silently worse dataset. The hash of the templates a stage uses is recorded in the run's
fingerprint and in every row's metadata.
"""

from __future__ import annotations

import hashlib
import os
import string
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent

# file name -> (field, placeholders it must use)
TEMPLATES = {
    "solutions.system.txt": ("solutions_system", frozenset()),
    "solutions.user.txt": ("solutions_user", frozenset({"question"})),
    "style.user.txt": ("style_user", frozenset({"question", "solution", "name"})),
    "sft.user.txt": ("sft_user", frozenset({"question"})),
}
STAGE_TEMPLATES = {"solutions": ("solutions_system", "solutions_user"), "style": ("style_user",),
                   "sft": ("sft_user",)}


class PromptError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Prompts:
    solutions_system: str
    solutions_user: str
    style_user: str
    sft_user: str

    def stage_hash(self, stage: str) -> str:
        """A short hash of the templates `stage` uses (recorded in its rows' metadata)."""
        text = "\0".join(getattr(self, name) for name in STAGE_TEMPLATES[stage])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _placeholders(text: str, name: str) -> set[str]:
    try:
        return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    except ValueError as e:
        raise PromptError(f"{name}: not a valid template ({e}); write {{{{ and }}}} for literal braces") from None


def _read(path: Path | str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().removesuffix("\n")


def load_prompts(directory: str | None = None) -> Prompts:
    """Our templates, with those found in `directory` instead. Raises PromptError with the reason."""
    values = {field: _read(HERE / name) for name, (field, _) in TEMPLATES.items()}
    if directory:
        if not os.path.isdir(directory):
            raise PromptError(f"--prompts {directory}: not a directory")
        for name in sorted(os.listdir(directory)):
            if not name.endswith(".txt"):
                continue
            if name not in TEMPLATES:
                raise PromptError(f"--prompts {directory}: unknown template {name}; known: {', '.join(TEMPLATES)}")
            values[TEMPLATES[name][0]] = _read(os.path.join(directory, name))
    for name, (field, wanted) in TEMPLATES.items():
        used = _placeholders(values[field], name)
        if used != wanted:
            raise PromptError(f"{name} must use the placeholders {sorted(wanted) or 'none'}, and uses "
                              f"{sorted(used) or 'none'}")
    return Prompts(**values)


DEFAULT = load_prompts()
__all__ = ["DEFAULT", "PromptError", "Prompts", "load_prompts"]
