"""Labels from model answers: the JSON asked for, found in prose or fences, validated and normalised."""

import pytest

from kodcode_async.stages.tagging import MAX_ANSWER_CHARS, TagError, parse_json_object, validate


@pytest.mark.parametrize("answer", [
    '{"quality": "good", "explanation": "clear"}',
    'Sure.\n```json\n{"quality": "good", "explanation": "clear"}\n```\nHope it helps {',
    '<think>{"quality": "poor"}</think>{"quality": "good", "explanation": "clear"}',
    'My answer {is} this: {"quality": "good", "explanation": "clear"}',
])
def test_the_json_object_is_found_in_any_wrapping(answer: str) -> None:
    assert validate("quality", parse_json_object(answer)) == {"quality": "good", "explanation": "clear"}


@pytest.mark.parametrize(("tag", "value", "message"), [
    ("quality", {"quality": "superb"}, "not one of"),
    ("category", {"primary": "cooking"}, "not one of the listed categories"),
    ("category", {"primary": "math", "others": "math"}, "others must be a list"),
    ("judge", {"online_judge": "yes"}, "true or false"),
    ("filter", {"category": None}, "not one of the listed categories"),
])
def test_labels_outside_the_allowed_values_are_errors(tag: str, value: dict, message: str) -> None:
    with pytest.raises(TagError, match=message):
        validate(tag, value)


def test_categories_are_normalised_and_the_primary_is_not_repeated_in_others() -> None:
    got = validate("category", {"primary": " Math ", "others": ["math", "String Processing", "string processing"]})
    assert got == {"primary": "math", "others": ["string processing"]}


@pytest.mark.parametrize(("answer", "message"), [("", "empty"), ("no braces here", "no JSON object"),
                                                 ("[1, 2]", "no JSON object"), ('{"a": }', "does not parse")])
def test_answers_without_a_usable_object_are_errors(answer: str, message: str) -> None:
    with pytest.raises(TagError, match=message):
        parse_json_object(answer)


def test_only_the_head_of_a_huge_answer_is_searched() -> None:
    # the fallback scan tries brace pairs; bounding the text it sees keeps a hostile answer cheap
    with pytest.raises(TagError):
        parse_json_object('{"a": "' + "x}" * 200_000)
    with pytest.raises(TagError, match="no JSON object"):
        parse_json_object("x" * MAX_ANSWER_CHARS + '{"quality": "good"}')
    assert parse_json_object("x" * 100 + '{"quality": "good"}') == {"quality": "good"}
