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


def test_each_label_is_normalised_with_exact_messages() -> None:
    assert validate("quality", {"quality": " Excellent ", "explanation": None}) == {"quality": "excellent",
                                                                                 "explanation": ""}
    assert validate("quality", {"quality": "very poor", "explanation": 3}) == {"quality": "very poor",
                                                                             "explanation": "3"}
    assert validate("category", {"primary": "math"}) == {"primary": "math", "others": []}
    assert validate("judge", {"online_judge": False}) == {"online_judge": False, "reason": ""}
    assert validate("judge", {"online_judge": True, "reason": "reads stdin"}) == {"online_judge": True,
                                                                                "reason": "reads stdin"}
    assert validate("filter", {"category": "Math", "reason": "sums"}) == {"category": "math", "reason": "sums"}
    for tag, value, message in [
        ("quality", {"quality": 4}, "quality 4 is not one of very poor, poor, average, good, excellent"),
        ("quality", {}, "quality None is not one of very poor, poor, average, good, excellent"),
        ("category", {"primary": "math", "others": ["cooking"]}, "category 'cooking' is not one of the listed "
                                                                 "categories"),
        ("category", {"primary": 7}, "category 7 is not one of the listed categories"),
        ("judge", {"online_judge": 1}, "online_judge must be true or false, got 1"),
    ]:
        with pytest.raises(TagError) as e:
            validate(tag, value)
        assert str(e.value) == message
    with pytest.raises(ValueError, match="unknown tag colour"):
        validate("colour", {})


def test_the_last_object_that_parses_is_taken_from_prose_with_braces() -> None:
    assert parse_json_object('use {x} and {"a": 1} then {"b": 2} done {') == {"b": 2}
    assert parse_json_object('{"a": {"b": 1}, "c": 2}') == {"a": {"b": 1}, "c": 2}  # nested: the whole object
    assert parse_json_object('note {"a": 1} {oops}') == {"a": 1}  # a later brace pair that does not parse
    assert parse_json_object('x {"a": "}"} y') == {"a": "}"}  # a brace inside a string
    assert parse_json_object("reasoning {\"q\": 1}</think>\n{\"q\": 2}") == {"q": 2}
    for answer, message in [(None, "empty answer"), ("  \n", "empty answer"),
                            ("{1, 2}", "the answer's JSON does not parse"),
                            ("{a} and {b}", "the answer's JSON does not parse")]:
        with pytest.raises(TagError) as e:
            parse_json_object(answer)
        assert str(e.value) == message, answer
    assert parse_json_object('{"a": 1} and [1]') == {"a": 1}


def test_more_exact_messages_and_brace_scanning() -> None:
    for answer, message in [("no braces", "no JSON object in the answer"), ("[1]", "no JSON object in the answer")]:
        with pytest.raises(TagError) as e:
            parse_json_object(answer)
        assert str(e.value) == message
    with pytest.raises(TagError) as e:
        validate("category", {"primary": "math", "others": "math"})
    assert str(e.value) == "others must be a list"
    assert validate("filter", {"category": "math", "reason": None}) == {"category": "math", "reason": ""}
    assert validate("filter", {"category": "math"}) == {"category": "math", "reason": ""}
    # the fallback scan: an object at the very start, one that needs a later closing brace, and
    # reasoning whose own braces are ignored
    assert parse_json_object('{"a": "x}y"} {bad') == {"a": "x}y"}
    assert parse_json_object('{"k": {"n": 1}} then {') == {"k": {"n": 1}}
    assert parse_json_object('{"a": 1} {} {') == {}
    assert parse_json_object('<think>{"x": 1}</think> answer: {"y": 2} {') == {"y": 2}
