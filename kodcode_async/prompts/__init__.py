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
    "solutions.stdin.user.txt": ("solutions_stdin_user", frozenset({"question"})),
    "questions.fewshot.txt": ("questions_fewshot", frozenset({"count", "source", "examples", "format"})),
    "questions.snippet.txt": ("questions_snippet", frozenset({"kind", "title", "code"})),
    "questions.docs.txt": ("questions_docs", frozenset({"package", "page", "abstain"})),
    "format.function.txt": ("format_function", frozenset()),
    "format.stdin.txt": ("format_stdin", frozenset()),
    "filter.user.txt": ("filter_user", frozenset({"categories", "question"})),
    "tag.quality.txt": ("tag_quality", frozenset({"question"})),
    "tag.category.txt": ("tag_category", frozenset({"categories", "question"})),
    "tag.judge.txt": ("tag_judge", frozenset({"question"})),
}
STAGE_TEMPLATES = {"solutions": ("solutions_system", "solutions_user"), "style": ("style_user",),
                   "sft": ("sft_user",), "solutions_stdin": ("solutions_system", "solutions_stdin_user"),
                   "fewshot": ("questions_fewshot", "format_function", "format_stdin"),
                   "snippet": ("questions_snippet",), "docs": ("questions_docs",), "filter": ("filter_user",),
                   "tag.quality": ("tag_quality",), "tag.category": ("tag_category",), "tag.judge": ("tag_judge",)}


class PromptError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Prompts:
    solutions_system: str
    solutions_user: str
    style_user: str
    sft_user: str
    solutions_stdin_user: str
    questions_fewshot: str
    questions_snippet: str
    questions_docs: str
    format_function: str
    format_stdin: str
    filter_user: str
    tag_quality: str
    tag_category: str
    tag_judge: str
    prefill: dict  # family -> PrefillTemplate (prefill/<family>.toml)

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
                continue  # prefill/ and anything else that is not a template
            if name not in TEMPLATES:
                raise PromptError(f"--prompts {directory}: unknown template {name}; known: {', '.join(TEMPLATES)}")
            values[TEMPLATES[name][0]] = _read(os.path.join(directory, name))
    for name, (field, wanted) in TEMPLATES.items():
        used = _placeholders(values[field], name)
        if used != wanted:
            raise PromptError(f"{name} must use the placeholders {sorted(wanted) or 'none'}, and uses "
                              f"{sorted(used) or 'none'}")
    prefill = {path.stem: load_prefill_template(path) for path in sorted((HERE / "prefill").glob("*.toml"))}
    if directory and os.path.isdir(os.path.join(directory, "prefill")):
        for name in sorted(os.listdir(os.path.join(directory, "prefill"))):
            if name.endswith(".toml"):
                path = Path(directory, "prefill", name)
                prefill[path.stem] = load_prefill_template(path)
    return Prompts(**values, prefill=prefill)


@dataclass(frozen=True, slots=True)
class PrefillTemplate:
    """A chat model's template up to the start of the user turn, and where that turn ends."""

    name: str
    prompt: str
    stop: tuple[str, ...]

    def hash(self) -> str:
        return hashlib.sha256("\0".join((self.prompt, *self.stop)).encode()).hexdigest()[:16]


def load_prefill_template(path: Path | str) -> PrefillTemplate:
    """A prefill template from a TOML file with `prompt` (string) and `stop` (non-empty list of strings)."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise PromptError(f"prefill template not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise PromptError(f"{path}: not valid TOML: {e}") from None
    prompt, stop = data.get("prompt"), data.get("stop")
    if not isinstance(prompt, str) or not prompt:
        raise PromptError(f"{path}: needs prompt = \"<the chat template up to the start of the user turn>\"")
    if not isinstance(stop, list) or not stop or not all(isinstance(s, str) and s for s in stop):
        raise PromptError(f"{path}: needs stop = [\"<the end-of-turn token>\", ...] (a non-empty list of strings)")
    unknown = set(data) - {"prompt", "stop"}
    if unknown:
        raise PromptError(f"{path}: unknown keys {sorted(unknown)}; a prefill template has prompt and stop")
    return PrefillTemplate(Path(path).stem, prompt, tuple(stop))


DEFAULT = load_prompts()
__all__ = ["DEFAULT", "PrefillTemplate", "PromptError", "Prompts", "load_prefill_template", "load_prompts"]
