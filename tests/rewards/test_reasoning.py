"""TGSR rewards: answer correctness (eq. 1) and timestamp compaction (eq. 2) with distinct grounded units."""

import pytest

from rewards import RewardConfigError, answer_correctness, timestamp_compaction
from rewards.reasoning import TimestampCompaction, count_grounded_units

CHOICES = ["a dog barking", "a cat meowing", "birds singing", "rain"]


def correctness(text, answer="a cat meowing", choices=CHOICES):
    return answer_correctness([text], task=["qa"], answer=[answer], choices=[choices])[0]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("To determine the best description...\n(b) a cat meowing", 1.0),  # letter + text
        ("Reasoning.\n(b)", 1.0),  # letter only
        ("Reasoning.\nThe answer is a cat meowing.", 1.0),  # text only
        ("Reasoning.\n(a) a dog barking", 0.0),
        ("(b) a cat meowing\nActually, (a)", 0.0),  # only the final line counts
        ("(b) a cat meowing\n\n\n", 1.0),  # ... the final non-empty one
        ("", 0.0),
        ("(e) something", 0.0),  # no fifth option
    ],
)
def test_answer_correctness_tgsr_eq1(text, expected):
    # TGSR eq. 1: R_answer = 1 if the prediction matches the ground truth else 0
    assert correctness(text) == expected


def test_answer_correctness_conversational_and_think_tags():
    completion = [{"role": "assistant", "content": "<think>(a)?</think>\n(b) a cat meowing"}]
    assert answer_correctness([completion], task=["qa"], answer=["a cat meowing"], choices=[CHOICES]) == [1.0]


def test_answer_correctness_letter_answers_and_no_choices():
    assert correctness("(b)", answer="b") == 1.0
    assert answer_correctness(["(b) A cat, meowing!"], task=["qa"], answer=["a cat meowing"]) == [1.0]
    assert answer_correctness(["(b) a dog"], task=["qa"], answer=["a cat meowing"]) == [0.0]


def test_answer_correctness_other_tasks_and_missing_answer_get_none():
    out = answer_correctness(["(a)", "(a)"], task=["grounding", "qa"], answer=["x", None], choices=[None, CHOICES])
    assert out == [None, None]


def test_units_are_distinct_intervals_not_regex_hits():
    # TGSR's released code counts regex hits, so this counted 2; it is one interval (App. C.4 Regions Explored)
    assert count_grounded_units("from 1.2 to 3.4 seconds") == 1
    assert count_grounded_units("[1.2s - 3.4s] a man says hi. Again [1.2s-3.4s]. From 1.2s to 3.4s.") == 1
    assert count_grounded_units("[0-1] hi, [1-2] there, [2-3] you") == 3
    assert count_grounded_units("no timestamps, only 3 numbers 4 5") == 0


@pytest.mark.parametrize("k, expected", [(0, 0.0), (1, 0.5), (2, 0.4), (3, 0.3), (4, 0.2), (5, 0.1), (9, 0.1)])
def test_compaction_tgsr_eq2(k, expected):
    # R_tg = 0 if k = 0; C_max if k <= k_ref; C_min if k >= k_max; else C_max - (k - k_ref)(C_max - C_min)/(k_max - k_ref)
    text = " ".join(f"[{i}.0s - {i}.5s] step {i}." for i in range(k))
    assert timestamp_compaction([text], task=["qa"]) == [pytest.approx(expected)]


def test_compaction_repeated_interval_counts_once():
    text = "From 1.2 to 3.4 seconds the man talks; from 1.2 to 3.4 seconds he laughs.\n(b)"
    assert timestamp_compaction([text], task=["qa"]) == [0.5]


def test_compaction_custom_parameters():
    reward = TimestampCompaction(k_ref=2, c_max=1.0, c_min=0.0, k_max=4)
    texts = ["[0-1]", "[0-1] [1-2]", "[0-1] [1-2] [2-3]", "[0-1] [1-2] [2-3] [3-4]"]
    assert reward(texts, task=["qa"] * 4) == [1.0, 1.0, 0.5, 0.0]


@pytest.mark.parametrize("kwargs", [{"k_ref": 5, "k_max": 5}, {"c_min": 0.6, "c_max": 0.5}, {"k_ref": -1}])
def test_compaction_bad_config(kwargs):
    with pytest.raises(RewardConfigError):
        TimestampCompaction(**kwargs)
