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


def _reject(text, **kw):
    with pytest.raises(Reject) as e:
        extract_question(text, **kw)
    return e.value.reason, str(e.value)


def test_each_rejection_says_why_in_its_own_words() -> None:
    assert _reject("  \n") == ("empty", "empty: the model returned nothing")
    assert _reject(None) == ("empty", "empty: the model returned nothing")
    said = ("abstained", "abstained: the model said the seed is not enough for a question")
    assert _reject("**NO_QUESTION**.", abstain="no_question") == said
    assert _reject("`NO_QUESTION`", abstain="NO_QUESTION") == said
    assert _reject(f"{BEGIN}\nNO_QUESTION.\n{END}", abstain="no_question") == said  # the question itself
    assert _reject("A long analysis of the snippet and what it does.", require_section=True) == (
        "no_question_section", "no_question_section: no question markers or 'Question' heading in the answer")
    word = "a" * 90
    assert _reject(f"{word} b") == ("too_short", f"too_short: {(word + ' b')[:80]!r}")
    long = "word " * 2401
    assert _reject(long) == ("too_long", f"too_long: {len(long.strip())} characters")
    assert str(Reject("plain")) == "plain" and Reject("plain").reason == "plain"


def test_the_length_limits_are_inclusive() -> None:
    from kodcode_async.extract import MAX_CHARS

    assert extract_question("abcd efgh ijkl mnopq") == "abcd efgh ijkl mnopq"  # 20 characters, 4 words
    assert _reject("abcd efgh ijkl mnop")[0] == "too_short"  # 19 characters
    assert _reject("abcdefghij klmnopqrst uvw")[0] == "too_short"  # 3 words
    exact = ("x" * 9 + " ") * (MAX_CHARS // 10 - 1) + "x" * 10
    assert len(exact) == MAX_CHARS and extract_question(exact) == exact
    assert _reject(exact + "y")[0] == "too_long"


def test_markers_take_the_last_question_up_to_its_first_end() -> None:
    assert extract_question(f"{BEGIN}draft that was dropped{END}\n{BEGIN}\n{Q}\n{END} trailing {END}") == Q
    assert _reject(f"{BEGIN}{END} and then a long line of text that is not the question")[0] == "too_short"


def test_reasoning_is_removed_before_anything_is_read() -> None:
    assert extract_question(f"<think>Let me think of a question.</think>{Q}") == Q
    assert extract_question(f"the template opened the thinking... </think>\n{Q}") == Q


def test_headings_of_every_form_open_the_question_and_others_close_it() -> None:
    for heading in ("Problem:", "**Question:**", "### Task", "## Question 2 -"):
        assert extract_question(f"Intro text here.\n{heading}\n{Q}\n## Analysis\nIt tests binary search.") == Q
    # A heading that is not a question's stops it; a solution the model added is cut from the question.
    assert extract_question(f"## Question\n{Q}\n## Tests\nassert f()") == Q
    assert extract_question(f"{BEGIN}\n{Q}\n## Solution\ndef f(): pass\n{END}") == Q
    design = "## Solution Design\nDesign a rate limiter class that allows n calls per minute for each user."
    assert extract_question(f"{BEGIN}\n{design}\n{END}") == design  # a heading that opens the question stays


def test_tidying_drops_chatter_rules_and_one_numbered_prefix() -> None:
    assert extract_question(f"Sure! Here is a question.\n\n{Q}\n\n---\n***\nLet me know if you want more.") == Q
    assert extract_question(f"Question 1: Task: {Q}") == f"Task: {Q}"


def test_a_prefill_continuation_joins_its_prefix_cleanly() -> None:
    assert glue_prefill("Write ", "a function that sums a list.") == "Write a function that sums a list."
    assert glue_prefill("Write a", " function that sums a list.") == "Write a function that sums a list."
    assert glue_prefill("Find", "X in a sorted list of numbers.") == "Find X in a sorted list of numbers."
    assert glue_prefill("Given a list of numbers", ", return the sum of them.") == (
        "Given a list of numbers, return the sum of them.")
    assert glue_prefill("", "Write a function that sums a list.") == "Write a function that sums a list."
    stop = ("<|im_end|>",)
    assert glue_prefill("Write", " a function that sums a list.<|im_end|>more<|im_end|>", stop) == (
        "Write a function that sums a list.")
    assert glue_prefill("Write", " a function that sums a list.\n\nEND more END", ("\n\nEND", "END")) == (
        "Write a function that sums a list.")
    for bad, detail in ((None, "the model returned nothing"), ("  <|im_end|>", "the model wrote nothing after the prefix")):
        with pytest.raises(Reject) as e:
            glue_prefill("Write", bad, stop)
        assert str(e.value) == f"empty: {detail}"
    with pytest.raises(Reject) as e:
        glue_prefill("Write", " f.")
    assert str(e.value) == "too_short: 'Write f.'"
    with pytest.raises(Reject) as e:
        glue_prefill("Write", " x" * 6000)
    assert str(e.value) == "too_long: 12005 characters"


def test_abstaining_is_read_before_a_section_is_required_and_only_when_said() -> None:
    said = ("abstained", "abstained: the model said the seed is not enough for a question")
    assert _reject("`NO_QUESTION`.", abstain="no_question", require_section=True) == said
    assert _reject("no_question", abstain="NO_QUESTION", require_section=True) == said
    assert extract_question(Q, abstain="NO_QUESTION") == Q
    assert extract_question(f"### **Task**\n{Q}") == Q  # emphasis inside a heading
    indented = extract_question(f"## Problem: Lower Bound\n  {Q}\n## Analysis\nx")
    assert indented == f"Lower Bound\n\n  {Q}"  # the section's own indentation is kept


def test_prefill_length_limits_are_inclusive() -> None:
    from kodcode_async.extract import MAX_CHARS

    assert glue_prefill("abcd efgh", " ijkl mnopq") == "abcd efgh ijkl mnopq"  # 20 characters, 4 words
    for short in (" ijkl mnop", " ijklmnopqrstu"):  # 19 characters; 3 words
        with pytest.raises(Reject, match="too_short"):
            glue_prefill("abcd efgh", short)
    with pytest.raises(Reject) as e:
        glue_prefill("a" * 85, " b")
    assert str(e.value) == f"too_short: {('a' * 85)[:80]!r}"
    exact = "x" * (MAX_CHARS - 12)
    assert len(glue_prefill("Write a b c", " " + exact)) == MAX_CHARS
    with pytest.raises(Reject, match="too_long"):
        glue_prefill("Write a b c", " " + exact + "y")
    assert glue_prefill("Write a", "\nfunction that sums a list.") == "Write a\nfunction that sums a list."
