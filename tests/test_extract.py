"""Questions out of model answers: every shape the extraction takes, and every reject reason."""

import pytest

from kodcode_async.extract import BEGIN, END, Reject, extract_question, glue_prefill

Q = "Implement `lower_bound(a, x)` that returns the first index i with a[i] >= x."


def reason(text: str, **kw: object) -> str:
    with pytest.raises(Reject) as e:
        extract_question(text, **kw)
    return e.value.reason


@pytest.mark.parametrize("answer", [
    f"{BEGIN}\n{Q}\n{END}",
    f"Some thoughts first.\n{BEGIN}\n{Q}\n{END}\nI hope this helps!",
    f"{BEGIN}\n{Q}\n",  # the answer was cut before the end marker
    f"## Question\n{Q}\n",
    f"### New Question\n\n{Q}\n\n## Solution\n```python\ndef lower_bound(a, x): ...\n```",
    f"**Question:**\n{Q}",
    f"Question 3: {Q}",
    f"Sure! Here is a new question:\n\n{Q}\n\nLet me know if you want another one.",
    f"```markdown\n{Q}\n```",
    f"<think>the user wants a question. Question: no.</think>\n{BEGIN}{Q}{END}",
])
def test_every_answer_shape_gives_the_bare_question(answer: str) -> None:
    assert extract_question(answer) == Q


def test_a_titled_question_heading_keeps_its_title_and_sub_headings() -> None:
    got = extract_question(f"## Problem: Lower Bound\n{Q}\n\n### Example\nlower_bound([1, 2], 2) == 1\n\n"
                           "## Analysis\nbinary search")
    assert got == f"Lower Bound\n\n{Q}\n\n### Example\nlower_bound([1, 2], 2) == 1"


def test_a_solution_the_model_added_is_cut_off() -> None:
    got = extract_question(f"{BEGIN}\n{Q}\n\n## Solution\n```python\nprint(1)\n```\n{END}")
    assert got == Q and "print" not in got


def test_snippet_answers_need_a_question_section_so_the_analysis_is_never_kept() -> None:
    assert reason("## Analysis\nBinary search, O(log n), off-by-one errors are common.", require_section=True) \
        == "no_question_section"
    assert extract_question(f"## Analysis\nO(log n).\n\n## Question\n{Q}", require_section=True) == Q


@pytest.mark.parametrize("answer", ["NO_QUESTION", "`NO_QUESTION`", "**NO_QUESTION**\n", f"{BEGIN}NO_QUESTION{END}"])
def test_an_abstention_is_its_own_reason(answer: str) -> None:
    assert reason(answer, abstain="NO_QUESTION") == "abstained"


@pytest.mark.parametrize(("answer", "why"), [("", "empty"), ("   \n", "empty"), (None, "empty"),
                                            (f"{BEGIN}Sort it.{END}", "too_short"), ("word " * 3000, "too_long")],
                         ids=["empty", "blank", "none", "short", "long"])
def test_unusable_answers_are_rejected_with_a_reason(answer: object, why: str) -> None:
    assert reason(answer) == why  # type: ignore[arg-type]


def test_prefill_glues_the_prefix_back_and_cuts_at_the_stop_sequence() -> None:
    assert glue_prefill("Write a python function to", " sort a list of words by length.<|im_end|>\n<|im_start|>",
                        ("<|im_end|>", "<|im_start|>")) == "Write a python function to sort a list of words by length."
    # no leading space in the continuation: one is added; punctuation is glued as is
    assert glue_prefill("Write a python function to", "count vowels in a string.") == \
        "Write a python function to count vowels in a string."
    assert glue_prefill("Write a python function", ", given a list, that returns its median.") == \
        "Write a python function, given a list, that returns its median."


@pytest.mark.parametrize(("prefix", "continuation", "why"), [
    ("Write a python function to", "", "empty"), ("Write a python function to", "<|eot_id|>more", "empty"),
    ("Sort", " it.", "too_short"), ("Write a python function to", None, "empty")])
def test_prefill_rejects(prefix: str, continuation: object, why: str) -> None:
    with pytest.raises(Reject) as e:
        glue_prefill(prefix, continuation, ("<|eot_id|>",))
    assert e.value.reason == why
