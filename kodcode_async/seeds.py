"""Seed files for question synthesis: JSON or JSONL, with a field mapping from config.

A seed file is JSONL (one object per line) or JSON (a list of objects, or an object holding one
such list, e.g. `{"data": [...]}`), optionally gzip-compressed (`.gz`). Question and page text
stored as HTML (LeetCode dumps, scraped docs) is turned into plain text; snippets are left as written. Which field holds the seed's text, id and package is the
source's mapping (`text=`, `id=`, `package=`; dotted names reach into nested objects, e.g.
`meta.slug`); left empty, the first present of the subset method's usual names is taken, so
LeetCode/APPS/TACO/CodeContests dumps and the KodCode snippet files load without a mapping.

Rows that cannot be seeds (not an object, no text) are returned with a reason, never dropped
silently; a file with no usable seed at all is an error.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser

import orjson

# method -> field names tried in order for the seed's text when the mapping names none
TEXT_FIELDS = {
    "fewshot": ("question", "content", "problem", "description", "statement", "problem_statement", "instruction",
                "prompt", "text"),
    "snippet": ("codes", "code", "content", "source", "text"),
    "docs": ("content", "text", "page", "body", "markdown", "doc"),
}
ID_FIELDS = ("id", "question_id", "problem_id", "task_id", "slug", "name")
PACKAGE_FIELDS = ("package", "library", "module", "project")


class SeedError(ValueError):
    """A seed file that cannot be used at all (missing, unreadable, no usable row)."""


@dataclass(frozen=True, slots=True)
class SeedSource:
    """Where one subset's seeds come from, and which fields to read."""

    subset: str
    path: str
    text: str = ""
    id: str = ""
    package: str = ""


@dataclass(frozen=True, slots=True)
class Seed:
    id: str
    text: str
    package: str = ""
    title: str = ""  # snippet files name the algorithm (file_name); shown to the model as a hint only


# Closing tags are the evidence that a text is HTML: "a <b and c> d" in plain text is not.
_HTML = re.compile(r"</(?:p|pre|code|strong|em|li|ul|ol|div|span|sup|sub)>", re.I)


class _Text(HTMLParser):
    """HTML to plain text, as problem dumps (LeetCode's `content`) and doc pages store it."""

    BLOCK = {"p", "div", "pre", "ul", "ol", "li", "br", "h1", "h2", "h3", "h4", "tr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.BLOCK:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")
        elif tag == "sup":
            self.out.append("^")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        self.out.append(data)


def html_to_text(text: str) -> str:
    """Plain text of an HTML fragment; text without HTML tags is returned unchanged."""
    if not _HTML.search(text):
        return text
    parser = _Text()
    parser.feed(text)
    parser.close()
    return re.sub(r"\n{3,}", "\n\n", "".join(parser.out).replace("\xa0", " ")).strip()


def _get(row: dict, dotted: str) -> object:
    value: object = row
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _first(row: dict, wanted: str, candidates: tuple[str, ...]) -> object:
    if wanted:
        return _get(row, wanted)
    for name in candidates:
        if row.get(name) not in (None, ""):
            return row[name]
    return None


def _read(path: str) -> bytes:
    try:
        if path.endswith(".gz"):
            with gzip.open(path) as f:  # binary by default
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise SeedError(f"seed file not found: {path}") from None
    except IsADirectoryError:
        raise SeedError(f"seed file {path} is a directory; give a JSON or JSONL file") from None
    except (OSError, EOFError) as e:
        raise SeedError(f"cannot read seed file {path}: {e}") from None


def _rows(path: str, is_row: Callable[[dict], bool]) -> list[tuple[str, object]]:
    """(where, row) for every row of a JSON or JSONL file (optionally gzip-compressed). A file that
    is one JSON object is a container of rows (its one list) unless it is a row itself (`is_row`)."""
    data = _read(path)
    head = data.lstrip()[:1]
    if not head:
        return []
    if head not in (b"[", b"{"):
        raise SeedError(f"{path}: neither JSON nor JSONL (it starts with {data.lstrip()[:20]!r})")
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        whole = None
    if isinstance(whole, list):
        return [(f"item {i}", row) for i, row in enumerate(whole)]
    if isinstance(whole, dict):
        lists = [v for v in whole.values() if isinstance(v, list)]
        if not is_row(whole) and len(lists) == 1 and all(isinstance(r, dict) for r in lists[0]):
            return [(f"item {i}", row) for i, row in enumerate(lists[0])]
        return [("line 1", whole)]  # a one-line JSONL file
    if head == b"[":
        raise SeedError(f"{path}: invalid JSON (a file that starts with '[' must be one JSON list)")
    out: list[tuple[str, object]] = []
    for n, line in enumerate(data.split(b"\n"), 1):
        if line.strip():
            out.append((f"line {n}", _loads(line)))
    return out


def _loads(line: bytes) -> object:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as e:
        return _Invalid(f"invalid JSON: {e}")


@dataclass(frozen=True, slots=True)
class _Invalid:
    reason: str


def load_seeds(source: SeedSource, method: str) -> tuple[list[Seed], list[dict]]:
    """The seeds of `source` in file order, and the rows rejected with a reason.

    Raises SeedError when the file is missing, unreadable, or has no usable seed."""
    seeds: list[Seed] = []
    rejected: list[dict] = []
    seen: set[str] = set()
    def is_row(row: dict) -> bool:
        return _first(row, source.text, TEXT_FIELDS[method]) is not None

    for n, (where, row) in enumerate(_rows(source.path, is_row)):
        def reject(reason: str, where: str = where) -> None:
            rejected.append({"file": source.path, "where": where, "subset": source.subset, "reason": reason})

        if isinstance(row, _Invalid):
            reject(row.reason)
            continue
        if not isinstance(row, dict):
            reject(f"not a JSON object ({type(row).__name__})")
            continue
        text = _first(row, source.text, TEXT_FIELDS[method])
        if isinstance(text, list) and text and all(isinstance(t, str) for t in text):
            text = "\n\n".join(text)  # snippet files may hold several code blocks
        if isinstance(text, str) and method != "snippet":  # code keeps its "<" as written
            text = html_to_text(text)
        if not isinstance(text, str) or not text.strip():
            named = source.text or " / ".join(TEXT_FIELDS[method])
            reject(f"no text: field {named} is missing or empty (name the field that holds it with "
                   f"--seed-fields {source.subset}.text=FIELD)")
            continue
        raw_id = _first(row, source.id, ID_FIELDS)
        sid = str(raw_id) if raw_id not in (None, "") else str(n)
        if sid in seen:
            sid = f"{sid}#{n}"
        seen.add(sid)
        package = _first(row, source.package, PACKAGE_FIELDS)
        title = row.get("file_name") or row.get("title") or ""
        seeds.append(Seed(sid, text.strip("\n"), str(package or ""), str(title)))
    if not seeds:
        detail = f"; first problem: {rejected[0]['where']}: {rejected[0]['reason']}" if rejected else ""
        raise SeedError(f"{source.path}: no usable seed for subset {source.subset}{detail}")
    return seeds, rejected
