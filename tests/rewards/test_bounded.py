"""Bounded cost: the rewards read at most MAX_TEXT_CHARS of a completion (head and tail) and MAX_ITEMS windows."""

import rewards
from rewards import completion_text
from rewards.parsing import MAX_ITEMS, MAX_TEXT_CHARS, cap_text, parse_events, parse_steps, parse_windows


def test_cap_text_keeps_head_and_tail():
    assert cap_text("short") == "short"
    text = "a" * MAX_TEXT_CHARS
    assert cap_text(text) is text
    long = "H" * 10 + "x" * 100_000 + "T" * 10
    capped = cap_text(long)
    assert len(capped) == MAX_TEXT_CHARS + 1 and capped.startswith("H" * 10) and capped.endswith("T" * 10)
    assert completion_text(long) == capped
    assert completion_text([{"role": "assistant", "content": long}]) == capped


def test_parsers_return_at_most_max_items():
    text = "1-2\n" * 25_000
    assert len(parse_windows(text)) == MAX_ITEMS
    assert len(parse_events(text)) == MAX_ITEMS
    assert len(parse_events('{"dog": [1, 2]} ' * 1000)) == MAX_ITEMS
    assert len(parse_steps("".join(f"[{k}s - {k + 1}s] step {k}\n" for k in range(1000)))) == MAX_ITEMS


def test_the_final_answer_of_a_long_completion_is_still_read():
    reasoning = "Let me listen to the audio again. " * 3000  # ~100k characters
    correct = rewards.get("answer_correctness")
    columns = {"task": ["qa"], "answer": ["a cat"], "choices": [["a dog", "a cat", "birds", "rain"]]}
    assert correct([reasoning + "<answer>(b) a cat</answer>"], **columns) == [1.0]
    assert correct([reasoning + "<answer>(a) a dog</answer>"], **columns) == [0.0]


def test_spamming_windows_still_costs_precision():
    eb_f1 = rewards.get("eb_f1", t_collar=0.2, percentage_of_length=0.0)
    columns = {"task": ["grounding"], "windows": [[[1.0, 2.0]]], "duration": [10.0]}
    (one,) = eb_f1(["From 1 seconds to 2 seconds."], **columns)
    (spam,) = eb_f1(["From 1 seconds to 2 seconds. " * 4000], **columns)
    assert one == 1.0 and 0.0 < spam < 0.01  # 1 match among MAX_ITEMS predictions: F1 = 2 / (1 + 256)
