"""Response parsing: the shapes real model output comes in."""

import pytest

from kodcode_async.parsing import ParseError, build_test_info, extract_final_code, parse_solution_and_test
from kodcode_async.stages.style import check_stub


def test_tagged_sections_with_fences():
    p = parse_solution_and_test("Intro.\n<|Solution Begin|>\n```python\ndef f():\n    return 1\n```\n<|Solution End|>\n"
                                "<|Test Begin|>\n```python\ndef test_f():\n    assert f() == 1\n```\n<|Test End|>\nBye.")
    assert p.solution == "def f():\n    return 1\n"
    assert p.test.startswith("from solution import *\n") and "def test_f" in p.test


def test_an_explicit_import_is_kept_after_the_star_import():
    p = parse_solution_and_test("<|Solution Begin|>\ndef f(): pass\n<|Solution End|>\n<|Test Begin|>\n"
                                "from solution import f\ndef test_f():\n    f()\n<|Test End|>")
    assert p.test == "from solution import *\n\nfrom solution import f\ndef test_f():\n    f()\n"


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
    assert p.solution.startswith("def g") and p.test.startswith("from solution import *\n\nfrom solution import g")


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
    # The declaration as the solution wrote it (PEP 8 spacing kept), not a re-spelling of the AST.
    assert info == [{"function_name": "add", "function_declaration": "def add(a: int, b: int = 0) -> int:",
                     "parameter_list": ["a", "b"], "docstring": "Add."}]
    multi = "async def fetch(\n    url,\n    retries=3,\n):  # comment\n    return url\n"
    (info,) = build_test_info(multi, "from solution import fetch\n")
    assert info["function_declaration"] == "async def fetch(url, retries=3,):"
    (info,) = build_test_info("def f(x): return x\n", "from solution import f\n")
    assert info["function_declaration"] == "def f(x):"


def test_style_stub_static_checks_name_the_check_that_failed():
    sol, test = "def add(a, b):\n    return a + b\n", "from solution import add\n\ndef test_a():\n    add(1, 2)\n"
    assert check_stub('def add(a, b):\n    """Add.\n\n    >>> add(1, 2)\n    3\n    """\n', sol, test)[0] is None
    assert check_stub('def plus(a, b):\n    """Add."""\n', sol, test)[0][0] == "signature"
    assert check_stub('def add(a, b=1):\n    """Add."""\n', sol, test)[0][0] == "signature"
    assert check_stub("def add(a, b):\n    pass\n", sol, test)[0][0] == "examples"
    assert check_stub("def add(:\n", sol, test)[0] == ("parse", "stub does not parse: invalid syntax (line 1)")
    assert check_stub("x = 1\n", sol, test)[0] == ("parse", "stub declares no function or class")


# ---- exact outputs, one behaviour each ---------------------------------------------------

SOL_BLOCK = "```python\n    indented_first = 1\nx = 2\n   \n```"


def test_section_code_keeps_indentation_and_inner_whitespace_exactly():
    text = f"<|Solution Begin|>\n\n{SOL_BLOCK}\n\n<|Solution End|>\n<|Test Begin|>\ndef test_a():\n    pass\n<|Test End|>"
    p = parse_solution_and_test(text)
    assert p.solution == "    indented_first = 1\nx = 2\n   \n"
    assert p.test == "from solution import *\n\ndef test_a():\n    pass\n"


def test_unfenced_section_is_taken_as_code_with_its_indentation():
    p = parse_solution_and_test("<|Solution Begin|>\n\n  y = 1  \n\n<|Solution End|>\n<|Test Begin|>\n"
                                "from solution import y\n\n\n  \n<|Test End|>")
    assert p.solution == "  y = 1  \n" and p.test == "from solution import *\n\nfrom solution import y\n\n\n  \n"


def test_several_blocks_in_one_section_are_joined_with_a_blank_line_and_prose_dropped():
    section = "Some prose.\n```python\na = 1\n```\nMore prose.\n```python\nb = 2\n```\nTrailing."
    p = parse_solution_and_test(f"<|Solution Begin|>{section}<|Solution End|><|Test Begin|>def test_b():\n"
                                "    pass\n<|Test End|>")
    assert p.solution == "a = 1\n\nb = 2\n"


def test_code_then_a_lone_closing_fence():
    p = parse_solution_and_test("<|Solution Begin|>\ndef f():\n    return 4\n```\n<|Solution End|>\n"
                                "<|Test Begin|>\ndef test_f():\n    assert f() == 4\n```\n<|Test End|>")
    assert p.solution == "def f():\n    return 4\n"
    assert p.test == "from solution import *\n\ndef test_f():\n    assert f() == 4\n"


def test_a_section_ends_at_its_end_tag_or_at_the_next_begin_tag_or_at_the_end():
    both = parse_solution_and_test("<|Solution Begin|>\na = 1\n<|Solution End|>\nnoise\n<|Test Begin|>\n"
                                   "def test_a():\n    pass\n<|Test End|>\nafter")
    assert both.solution == "a = 1\n" and "after" not in both.test and "noise" not in both.solution
    no_end = parse_solution_and_test("<|Solution Begin|>\na = 1\n<|Test Begin|>\ndef test_a():\n    pass\n")
    assert no_end.solution == "a = 1\n" and no_end.test == "from solution import *\n\ndef test_a():\n    pass\n"
    end_only = parse_solution_and_test("<|Test Begin|>\ndef test_a():\n    pass\n<|Test End|>\n"
                                       "<|Solution Begin|>\nb = 2\n<|Solution End|>\nprose after")
    assert end_only.solution == "b = 2\n" and end_only.test.endswith("def test_a():\n    pass\n")


@pytest.mark.parametrize("tag", ["", "python", "py", "python3", "Python", "PY", "python3 title"])
def test_python_fence_tags_are_accepted(tag):
    p = parse_solution_and_test(f"```{tag}\ndef g():\n    return 1\n```\n```{tag}\nfrom solution import g\n"
                                "def test_g():\n    assert g() == 1\n```")
    assert p.solution == "def g():\n    return 1\n" and p.test.startswith("from solution import *\n\nfrom solution import g\n")


@pytest.mark.parametrize("tag", ["bash", "text", "json"])
def test_other_fence_tags_are_not_code(tag):
    with pytest.raises(ParseError, match="^no solution section or code block found$"):
        parse_solution_and_test(f"```{tag}\ndef g():\n    return 1\n```\n```{tag}\ndef test_g():\n    pass\n```")


def test_fenced_blocks_solution_is_the_first_non_test_block_and_test_the_first_with_a_test():
    text = ("```python\n\n```\n```python\nfrom solution import h\nprint(h())\n```\n```python\ndef h():\n    return 1\n```\n"
            "```python\ndef helper():\n    pass\n```\n```python\nimport pytest\ndef test_h():\n    assert h() == 1\n```")
    p = parse_solution_and_test(text)
    assert p.solution == "def h():\n    return 1\n"
    assert p.test == "from solution import *\n\nimport pytest\ndef test_h():\n    assert h() == 1\n"
    only_import = "```python\ndef h():\n    return 1\n```\n```python\nimport solution\nsolution.h()\n```"
    with pytest.raises(ParseError, match="^no test section or test code block found$"):
        parse_solution_and_test(only_import)


def test_a_tagged_section_wins_over_blocks_elsewhere_and_a_missing_one_falls_back_to_blocks():
    text = ("<|Solution Begin|>\ntagged = 1\n<|Solution End|>\n```python\nuntagged = 2\n```\n"
            "```python\ndef test_t():\n    assert tagged == 1\n```")
    p = parse_solution_and_test(text)
    assert p.solution == "tagged = 1\n" and p.test == "from solution import *\n\ndef test_t():\n    assert tagged == 1\n"
    text = ("```python\nfrom_block = 1\n```\n<|Test Begin|>\ndef test_u():\n    pass\n<|Test End|>")
    p = parse_solution_and_test(text)
    assert p.solution == "from_block = 1\n" and p.test == "from solution import *\n\ndef test_u():\n    pass\n"


@pytest.mark.parametrize("text,message", [
    ("", "empty response"), ("  \n\t", "empty response"), (None, "empty response"),
    ("no code at all", "no solution section or code block found"),
    ("<|Solution Begin|>\n   \n<|Solution End|>\n<|Test Begin|>def test_a(): pass<|Test End|>",
     "no solution section or code block found"),
    ("<|Solution Begin|>\nx = 1\n<|Solution End|>", "no test section or test code block found"),
    ("<|Solution Begin|>\nx = 1\n<|Solution End|><|Test Begin|>\n\n<|Test End|>",
     "no test section or test code block found"),
])
def test_parse_errors_name_the_missing_part(text, message):
    with pytest.raises(ParseError) as e:
        parse_solution_and_test(text)
    assert str(e.value) == message


def test_final_code_edge_cases():
    two_thinks = "<think>a</think>```python\nfirst()\n```</think>\n```python\nsecond()\n```"
    assert extract_final_code(two_thinks) == "second()\n"
    three = "```python\none()\n```\n```python\ntwo()\n```\n```py\nthree()\n```"
    assert extract_final_code(three) == "three()\n"
    assert extract_final_code("<think>```python\nthought()\n```</think>The answer has no code.") is None
    assert extract_final_code("```python\nreal()\n```\n```bash\nls -l\n```") == "real()\n"
    assert extract_final_code("```python\n\n  indented()\n\n```\n```python\n   \n```") == "  indented()\n"
    assert extract_final_code("```PYTHON3\nz()\n```") == "z()\n" and extract_final_code(None) is None
    assert extract_final_code("</THINK>```python\nupper()\n```") == "upper()\n"


def test_test_info_with_star_imports_classes_and_unparsable_tests():
    sol = ("import os\n\nclass Stack:\n    def push(self, x):\n        pass\n\ndef helper(a, /, b, *, c=1):\n"
           "    '''Help.'''\n    return a\n\ndef unused():\n    pass\n")
    star = build_test_info(sol, "from solution import *\n\ndef test_h():\n    assert helper(1, 2) == 1\n    Stack()\n")
    assert [i["function_name"] for i in star] == ["Stack", "helper"]
    assert star[0] == {"function_name": "Stack", "function_declaration": "class Stack", "parameter_list": [],
                       "docstring": None}
    assert star[1]["function_declaration"] == "def helper(a, /, b, *, c=1):"
    assert star[1]["parameter_list"] == ["a", "b", "c"] and star[1]["docstring"] == "Help."
    explicit = build_test_info(sol, "from solution import unused\n")
    assert [i["function_name"] for i in explicit] == ["unused"]
    # Tests that do not parse: every top-level function and class is described.
    broken = build_test_info(sol, "def test_(:\n")
    assert [i["function_name"] for i in broken] == ["Stack", "helper", "unused"]
    assert build_test_info("def (:", "from solution import f\n") == []


def test_declarations_as_written_in_awkward_layouts():
    src = ("x = 1\n\n@decorator\ndef late(a): return a\n\ndef spread(a,\n           b): return b\n\n"
           "def noted(a):  # a comment: with a colon\n    return a\n\ndef café(é='ü'): return é\n")
    names = "from solution import late, spread, noted, café\n"
    got = {i["function_name"]: i["function_declaration"] for i in build_test_info(src, names)}
    assert got == {"late": "def late(a):", "spread": "def spread(a, b):", "noted": "def noted(a):",
                   "café": "def café(é='ü'):"}


def test_code_ending_or_starting_with_x_is_not_trimmed():
    # (strip() calls must strip newlines only: a solution may end in any character.)
    p = parse_solution_and_test("<|Solution Begin|>\nX = 1\nY = X<|Solution End|>\n<|Test Begin|>\n"
                                "def test_x():\n    assert Y == X\n<|Test End|>")
    assert p.solution == "X = 1\nY = X\n" and p.test.endswith("assert Y == X\n")
    fenced = parse_solution_and_test("```python\nMAX = 1\nv = MAX\n```\n```python\ndef test_v():\n    v == MAX\n```")
    assert fenced.solution == "MAX = 1\nv = MAX\n" and fenced.test.endswith("    v == MAX\n")
    assert extract_final_code("```\n    v = MAX\n```") == "    v = MAX\n"


def test_fenced_blocks_keep_their_first_line_indentation():
    p = parse_solution_and_test("```python\n    @staticmethod\ndef g():\n    return 1\n```\n"
                                "```python\ndef test_g():\n    pass\n```")
    assert p.solution == "    @staticmethod\ndef g():\n    return 1\n"


def test_a_test_block_before_the_solution_block_is_still_the_test():
    p = parse_solution_and_test("```python\ndef test_first():\n    assert f() == 1\n```\n"
                                "```python\ndef f():\n    return 1\n```")
    assert p.solution == "def f():\n    return 1\n"
    assert p.test == "from solution import *\n\ndef test_first():\n    assert f() == 1\n"


def test_a_lone_closing_fence_followed_by_blank_lines():
    p = parse_solution_and_test("<|Solution Begin|>\ndef f():\n    return 4\n```\n  \n  \n<|Solution End|>\n"
                                "<|Test Begin|>\ndef test_f():\n    pass\n<|Test End|>")
    assert p.solution.startswith("def f():\n    return 4\n")


def test_tagged_fenced_code_ending_in_x_and_a_test_block_that_does_not_start_with_its_test():
    p = parse_solution_and_test("<|Solution Begin|>\n```python\nv = MAX\n```\n<|Solution End|>\n"
                                "<|Test Begin|>\n```python\ndef test_v():\n    v == MAX\n```\n<|Test End|>")
    assert p.solution == "v = MAX\n" and p.test.endswith("    v == MAX\n")
    p = parse_solution_and_test("```python\nimport pytest\n\ndef test_first():\n    assert f() == 1\n```\n"
                                "```python\ndef f():\n    return 1\n```")
    assert p.solution == "def f():\n    return 1\n"


def test_tests_always_start_with_the_star_import_as_kodcode_writes_them():
    """A test that uses a module the solution imported (math) only works with the star import."""
    from kodcode_async.parsing import with_solution_import

    named = "from solution import area\n\ndef test_area():\n    assert area(1) == math.pi\n"
    assert with_solution_import(named) == "from solution import *\n\n" + named
    already = "from solution import *\n\ndef test_a():\n    pass\n"
    assert with_solution_import(already) == already
    future = "from __future__ import annotations\nimport pytest\n\ndef test_a():\n    pass\n"
    assert with_solution_import(future) == ("from __future__ import annotations\nfrom solution import *\n"
                                            "import pytest\n\ndef test_a():\n    pass\n")


def test_the_star_import_goes_first_or_after_future_imports():
    from kodcode_async.parsing import with_solution_import

    star = "from solution import *\n"
    assert with_solution_import("\n\n" + star + "def test_a(): pass\n") == "\n\n" + star + "def test_a(): pass\n"
    assert with_solution_import("\t\n" + star + "x = 1\n") == star + "\n\t\n" + star + "x = 1\n"
    assert with_solution_import("import math\n") == star + "\nimport math\n"
    src = '"""doc"""\nfrom __future__ import annotations\nimport math\n'
    assert with_solution_import(src) == '"""doc"""\nfrom __future__ import annotations\n' + star + "import math\n"


def test_a_stdin_answer_gives_the_program_and_its_cases_or_says_what_is_wrong():
    import pytest

    from kodcode_async.parsing import ParseError, parse_program_and_cases

    def answer(program, cases):
        return (f"<|Solution Begin|>\n{program}\n<|Solution End|>\n<|Test Begin|>\n{cases}\n<|Test End|>")

    got = parse_program_and_cases(answer("\nprint(int(input()) * 2)\n", '[{"input": "2\\n", "output": "4", "x": 1}]'))
    assert got.program == "print(int(input()) * 2)\n" and got.cases == [{"input": "2\n", "output": "4"}]
    for text, why in [
        (None, "empty response"), ("  \n", "empty response"),
        (answer("  ", '[{"input": "", "output": ""}]'), "no solution section"),
        ("<|Test Begin|>[]<|Test End|>", "no solution section"),
        (answer("print(1)", "  "), "no test section with input/output cases"),
        ("<|Solution Begin|>print(1)<|Solution End|>", "no test section with input/output cases"),
        (answer("print(1)", "[]"), "the test section is not a non-empty JSON list of cases"),
        (answer("print(1)", '{"input": "", "output": ""}'), "the test section is not a non-empty JSON list of cases"),
        (answer("print(1)", '[{"input": "", "output": ""}, 3]'), 'case 1 is not {"input": string, "output": string}'),
        (answer("print(1)", '[{"input": 1, "output": ""}]'), 'case 0 is not {"input": string, "output": string}'),
        (answer("print(1)", '[{"input": "", "output": 2}]'), 'case 0 is not {"input": string, "output": string}'),
    ]:
        with pytest.raises(ParseError) as e:
            parse_program_and_cases(text)
        assert str(e.value) == why, text
    with pytest.raises(ParseError, match=r"^the test section is not JSON: "):
        parse_program_and_cases(answer("print(1)", "[{"))
