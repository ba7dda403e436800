"""Questions out of model answers: markers, headings, markdown, numbered prefixes, chatter.

`extract_question` returns the question text or raises `Reject` with a short reason (recorded
with the item, counted per reason). It takes, in order of preference: the text between our
`<|Question Begin|>` / `<|Question End|>` markers; the section under a "Question" heading; the
whole answer with its polite opening and closing lines removed (unless a section is required,
as for snippet answers, whose analysis must never be taken for the question).
"""

from __future__ import annotations

import re

BEGIN, END = "<|Question Begin|>", "<|Question End|>"
MIN_CHARS = 20
MIN_WORDS = 4
MAX_CHARS = 12000

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
# a heading line: markdown '#'s, or a bold/plain label alone on its line, e.g. "**Question:**"
_HEADING = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*(?P<h>[^\n]+?)|\*\*(?P<b>[^*\n]+?)\*\*[ \t]*:?|(?P<p>[A-Za-z][A-Za-z \t]{0,30}):)[ \t]*$",
                      re.M)
_QUESTION_TITLE = re.compile(r"^(?:the\s+|new\s+|generated\s+|coding\s+|programming\s+|final\s+)*(?:question|problem|"
                             r"task|exercise)(?:\s*(?:\d+|statement|description))?\s*(?:[:.\u2013\u2014-]\s*(?P<rest>.*))?$",
                             re.I)
_STOP_TITLE = re.compile(r"^(?:analysis|solution|answer|explanation|reference solution|notes?|test(?:s| cases)?|"
                         r"code|implementation|hints?)\b", re.I)
_PREFIX = re.compile(r"^\s*(?:\*\*)?\s*(?:new\s+|generated\s+)?(?:question|problem|task)\s*(?:\d+)?\s*[:.)-]\s*(?:\*\*)?\s*",
                     re.I)
_CHATTER_OPEN = re.compile(r"^\s*(?:sure|certainly|of course|okay|ok|absolutely|great|here(?:'s| is| are)|below is|"
                           r"i(?:'ve| have) (?:written|created)|the following)\b[^\n]*$", re.I)
_CHATTER_CLOSE = re.compile(r"^\s*(?:let me know|i hope|feel free|hope this|good luck|enjoy|this question (?:tests|"
                            r"assesses|checks|evaluates))\b[^\n]*$", re.I)
_FENCED = re.compile(r"^```[ \t]*(?:markdown|md|text|plaintext)?[ \t]*\n(.*)\n```[ \t]*$", re.S | re.I)


class Reject(ValueError):
    """The answer holds no usable question; `reason` is a short label (the stats count by it)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _between_markers(text: str) -> str | None:
    start = text.rfind(BEGIN)
    if start < 0:
        return None
    body = text[start + len(BEGIN):]
    end = body.find(END)
    return body[:end] if end >= 0 else body  # a missing end marker: the answer was cut; take what came


def _headings(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), (m.group("h") or m.group("b") or m.group("p")).strip().strip("*: ").strip())
            for m in _HEADING.finditer(text)]


def _question_section(text: str) -> str | None:
    """The text under the last heading that names a question, up to a heading that names something else
    (analysis, solution, tests); sub-headings such as 'Example' stay in the question."""
    heads = _headings(text)
    found = [i for i, (_, _, title) in enumerate(heads) if _QUESTION_TITLE.match(title)]
    if not found:
        return None
    i = found[-1]
    start = heads[i][1]
    rest = (_QUESTION_TITLE.match(heads[i][2]).group("rest") or "").strip()  # "## Problem: Two Sum" keeps its title
    end = next((s for s, _, title in heads[i + 1:] if _STOP_TITLE.match(title)), None)
    return rest + "\n\n" + text[start:end].lstrip("\n")  # _tidy strips what is left at either end


def _tidy(text: str) -> str:
    text = text.strip()
    m = _FENCED.match(text)
    if m:
        text = m.group(1).strip()
    lines = text.split("\n")
    while lines and (_CHATTER_OPEN.match(lines[0]) or not lines[0].strip()):
        lines.pop(0)
    while lines and (_CHATTER_CLOSE.match(lines[-1]) or not lines[-1].strip() or lines[-1].strip() in ("---", "***")):
        lines.pop()
    text = "\n".join(lines).strip()
    text = _PREFIX.sub("", text).strip()  # anchored at the start: one prefix at most
    # a solution the model added anyway is cut off, never kept as part of the question
    for s, _, title in _headings(text):
        if s > 0 and re.match(r"^(?:solution|answer|reference solution)\b", title.lower()):
            text = text[:s].rstrip()
            break
    return text


def extract_question(text: object, *, require_section: bool = False, abstain: str | None = None) -> str:
    """The question in a model answer. Raises Reject('empty' | 'abstained' | 'no_question_section' |
    'too_short' | 'too_long')."""
    if not isinstance(text, str) or not text.strip():
        raise Reject("empty", "the model returned nothing")
    body = _THINK.sub("", text).split("</think>")[-1].strip()
    if abstain and body.strip("`*_ \n.").upper() == abstain.upper():
        raise Reject("abstained", "the model said the seed is not enough for a question")
    found = _between_markers(body)
    if found is None:
        found = _question_section(body)
    if found is None:
        if require_section:
            raise Reject("no_question_section", "no question markers or 'Question' heading in the answer")
        found = body
    question = _tidy(found)
    if abstain and question.strip("`*_ .").upper() == abstain.upper():
        raise Reject("abstained", "the model said the seed is not enough for a question")
    if len(question) < MIN_CHARS or len(question.split()) < MIN_WORDS:
        raise Reject("too_short", repr(question[:80]))
    if len(question) > MAX_CHARS:
        raise Reject("too_long", f"{len(question)} characters")
    return question


def glue_prefill(prefix: str, continuation: object, stop: tuple[str, ...] = ()) -> str:
    """A prefill question: the prefix the model was given plus what it wrote, cut at a stop sequence
    (servers that ignore `stop` still give a clean question). Raises Reject('empty' | 'too_short')."""
    if not isinstance(continuation, str):
        raise Reject("empty", "the model returned nothing")
    cut = len(continuation)
    for s in stop:
        at = continuation.find(s)
        if at >= 0:
            cut = min(cut, at)
    rest = continuation[:cut].rstrip()
    if not rest.strip():
        raise Reject("empty", "the model wrote nothing after the prefix")
    joiner = "" if (not prefix or prefix[-1].isspace() or rest[0].isspace() or rest[0] in ".,;:!?)") else " "
    question = (prefix + joiner + rest).strip()
    if len(question) < MIN_CHARS or len(question.split()) < MIN_WORDS:
        raise Reject("too_short", repr(question[:80]))
    if len(question) > MAX_CHARS:
        raise Reject("too_long", f"{len(question)} characters")
    return question
