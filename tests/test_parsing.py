"""Response parsing: the shapes real model output comes in."""

import pytest

from kodcode_async.parsing import ParseError, build_test_info, extract_final_code, parse_solution_and_test
from kodcode_async.stages.style import check_stub, names_tests_import


def test_tagged_sections_with_fences():
    p = parse_solution_and_test("Intro.\n<|Solution Begin|>\n```python\ndef f():\n    return 1\n```\n<|Solution End|>\n"
                                "<|Test Begin|>\n```python\ndef test_f():\n    assert f() == 1\n```\n<|Test End|>\nBye.")
    assert p.solution == "def f():\n    return 1\n"
    assert p.test.startswith("from solution import *\n") and "def test_f" in p.test


def test_explicit_import_is_kept_without_a_star_import():
    p = parse_solution_and_test("<|Solution Begin|>\ndef f(): pass\n<|Solution End|>\n<|Test Begin|>\n"
                                "from solution import f\ndef test_f():\n    f()\n<|Test End|>")
    assert p.test.startswith("from solution import f")


def test_missing_closing_fence_and_missing_end_tag():
    p = parse_solution_and_test("<|Solution Begin|>\n```python\ndef f():\n    return 2\n<|Test Begin|>\n```python\n"
                                "def test_f():\n    assert f() == 2\n")
    assert "return 2" in p.solution and "```" not in p.solution
    assert "def test_f" in p.test and "```" not in p.test


def test_broken_single_backtick_fence():
    p = parse_solution_and_test("<|Solution Begin|>`python\ndef f():\n    return 3\n```\n<|Solution End|>\n"
                                "<|Test Begin|>`python\ndef test_f():\n    assert f() == 3\n```\n<|Test End|>")
    assert p.solution.startswith("def f") and "`" not in p.test


def test_plain_fenced_blocks_with_prose():
    text = ("Here is the code:\n```python\ndef g(x):\n    return x\n```\nAnd the tests:\n```python\n"
            "from solution import g\n\ndef test_g():\n    assert g(1) == 1\n```\nDone.")
    p = parse_solution_and_test(text)
    assert p.solution.startswith("def g") and p.test.startswith("from solution import g")


@pytest.mark.parametrize("text", ["", "no code at all", "```python\ndef f(): pass\n```"])
def test_unparsable_responses_raise_parse_error(text):
    with pytest.raises(ParseError):
        parse_solution_and_test(text)


def test_final_code_of_a_reasoning_answer():
    text = "<think>```python\nwrong()\n```</think>Answer:\n```python\nfirst()\n```\nbetter:\n```python\nright()\n```"
    assert extract_final_code(text) == "right()\n"
    assert extract_final_code("<think>only thoughts</think>") is None


def test_build_test_info_describes_the_functions_the_tests_use():
    sol = 'def add(a: int, b: int = 0) -> int:\n    """Add."""\n    return a + b\n\ndef unused():\n    pass\n'
    info = build_test_info(sol, "from solution import add\ndef test_a():\n    assert add(1) == 1\n")
    assert info == [{"function_name": "add", "function_declaration": "def add(a: int, b: int=0) -> int:",
                     "parameter_list": ["a", "b"], "docstring": "Add."}]


def test_style_stub_checks():
    names = names_tests_import("from solution import add\n")
    assert check_stub('def add(a, b):\n    """Add two numbers."""\n', names) == ""
    assert "signature mismatch" in check_stub('def plus(a, b):\n    """Add."""\n', names)
    assert "no docstring" in check_stub("def add(a, b):\n    pass\n", names)
    assert "does not parse" in check_stub("def add(:\n", names)
