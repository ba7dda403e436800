"""Difficulty labels and the chosen trial: the rules that decide what a verified row says."""

import pytest

from kodcode_async.stages.solutions import SolveOptions, difficulty, kodcode_row


@pytest.mark.parametrize("passes,attempts,label", [
    (0, 1, "fail"), (0, 10, "fail"),
    (1, 1, "easy"), (3, 3, "easy"), (7, 10, "easy"),  # more than 2/3
    (2, 3, "easy"), (4, 6, "easy"), (6, 9, "easy"),  # exactly 2/3 is easy: the reference's code, not its prose
    (1, 2, "medium"), (5, 10, "medium"), (6, 10, "medium"), (3, 5, "medium"),  # just under 2/3
    (1, 3, "medium"), (2, 6, "medium"), (3, 9, "medium"),  # exactly 1/3 is medium, not hard
    (3, 10, "hard"), (1, 4, "hard"), (1, 10, "hard"), (2, 7, "hard"),  # less than 1/3
])
def test_difficulty_labels_at_and_around_the_boundaries(passes, attempts, label):
    assert difficulty(passes, attempts) == label


def _trial(passed: bool, coverage: float | None, tag: str) -> dict:
    return {"solution_code": f"def f():\n    return '{tag}'\n", "test_code": "from solution import f\ndef test_f():\n    f()\n",
            "test_result": "Pass" if passed else "Fail", "status": "pass" if passed else "fail", "reason": "",
            "test_coverage": coverage}


def _row(trials: list[dict]) -> dict:
    return kodcode_row({"question_id": "q", "question": "Write f.", "subset": "s"}, trials, "m")


def test_chosen_trial_is_the_passing_one_with_the_highest_coverage():
    row = _row([_trial(False, 100.0, "a"), _trial(True, 60.0, "b"), _trial(True, 95.5, "c"), _trial(True, 80.0, "d")])
    assert row["chosen_trial"] == "trial_2" and "'c'" in row["solution"]
    assert row["gpt_pass_sequence"] == [0, 1, 1, 1] and row["gpt_pass_trial_num"] == 3
    assert row["gpt_difficulty"] == "easy" and row["gpt_pass_percentage"] == 0.75


def test_chosen_trial_ties_go_to_the_first_and_missing_coverage_counts_as_zero():
    row = _row([_trial(True, None, "a"), _trial(True, 70.0, "b"), _trial(True, 70.0, "c")])
    assert row["chosen_trial"] == "trial_1"
    row = _row([_trial(True, None, "a"), _trial(True, None, "b")])
    assert row["chosen_trial"] == "trial_0"


def test_a_question_without_a_passing_trial_has_no_solution():
    row = _row([_trial(False, 100.0, "a"), _trial(False, None, "b"), _trial(False, 10.0, "c")])
    assert row["chosen_trial"] is None and row["solution"] is None and row["test"] is None
    assert row["gpt_difficulty"] == "fail" and row["gpt_pass_percentage"] == 0.0 and row["test_info"] == []
    assert list(row["trials"]) == ["trial_0", "trial_1", "trial_2"]


def test_the_whole_row_for_one_question():
    trials = [_trial(False, None, "a"), _trial(True, None, "b"), _trial(True, 40.0, "c")]
    question = {"question_id": "q7", "question": "Write f.", "subset": "leetcode", "source": "seed-3"}
    row = kodcode_row(question, trials, "model-x")
    assert row == {
        "version": "v1", "style": "instruct", "subset": "leetcode", "question_id": "q7", "question": "Write f.",
        "solution": "def f():\n    return 'c'\n", "test": "from solution import f\ndef test_f():\n    f()\n",
        "test_info": [{"function_name": "f", "function_declaration": "def f():", "parameter_list": [],
                       "docstring": None}],
        "gpt_pass_sequence": [0, 1, 1], "gpt_pass_trial_num": 2, "gpt_difficulty": "easy",
        "gpt_pass_percentage": 0.667,
        "trials": {"trial_0": trials[0], "trial_1": trials[1], "trial_2": trials[2]},
        "chosen_trial": "trial_2",
        "metadata": {"model": "model-x", "attempts": 3, "source": "seed-3"},
    }


def test_pass_percentage_keeps_three_decimals_as_v1_and_an_empty_question_is_a_fail():
    assert _row([_trial(True, 1.0, "a"), _trial(False, 1.0, "b"), _trial(False, 1.0, "c")])["gpt_pass_percentage"] == 0.333
    assert _row([_trial(True, 1.0, str(i)) for i in range(6)] + [_trial(False, 1.0, "x")])["gpt_pass_percentage"] == 0.857
    empty = _row([])
    assert empty["gpt_pass_percentage"] == 0.0 and empty["gpt_difficulty"] == "fail" and empty["chosen_trial"] is None


def test_a_trial_without_coverage_loses_to_any_measured_coverage():
    row = _row([_trial(True, None, "a"), _trial(True, 0.5, "b")])
    assert row["chosen_trial"] == "trial_1"


@pytest.mark.parametrize("attempts,max_attempts", [(0, 10), (4, 3), (-1, 5)])
def test_attempt_options_are_validated(attempts, max_attempts):
    with pytest.raises(ValueError) as e:
        SolveOptions(attempts=attempts, max_attempts=max_attempts)
    assert str(e.value) == "need 1 <= --attempts <= --max-attempts"
    SolveOptions(attempts=3, max_attempts=3)
    SolveOptions(attempts=1, max_attempts=1)


def test_a_synthesised_question_keeps_its_metadata_and_a_stdin_one_has_no_test_info():
    trials = [_trial(True, 10.0, "a")]
    question = {"question_id": "q", "question": "Write f.", "subset": "prefill", "format": "stdin",
                "metadata": {"seed_ids": "s1", "model": "question-model"}, "note": 3}
    row = kodcode_row(question, trials, "solver", prompt_hash="h123")
    assert row["metadata"] == {"seed_ids": "s1", "model": "solver", "attempts": 1, "prompt_hash": "h123", "note": 3}
    assert row["format"] == "stdin" and row["test_info"] == []  # a program, not functions to describe
    assert "metadata" not in row["metadata"]
    # Without a prompt hash there is no such key; metadata that is not a dict is not carried as one.
    row = kodcode_row({**question, "format": "pytest", "metadata": "junk"}, trials, "solver")
    assert row["metadata"] == {"model": "solver", "attempts": 1, "note": 3} and row["test_info"]
