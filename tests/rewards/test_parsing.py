"""The shared parser: every answer format of the seed papers, the project's target texts, bad input, speed."""

import math
import time

import pytest

from rewards.parsing import (
    MAX_ITEMS,
    Event,
    answer_region,
    final_line,
    parse_absence,
    parse_choice,
    parse_events,
    parse_grounding,
    parse_steps,
    parse_windows,
    parse_yes_no,
)


# --- the project's training targets round-trip exactly ----------------------------------------------------------
def spotsound_target(windows):
    return " ".join(f"From {s:.2f} seconds to {e:.2f} seconds." for s, e in windows)


@pytest.mark.parametrize("windows", [[(2.5, 4.0)], [(0.0, 1.25), (3.5, 7.75), (9.0, 10.0)], [(12.34, 56.78)]])
def test_grounding_target_spotsound_round_trips(windows):
    assert parse_windows(spotsound_target(windows)) == windows
    assert parse_grounding(spotsound_target(windows)) == windows


def test_absent_event_target_parses_as_absence():
    target = "The sound is not present in the audio."
    assert parse_grounding(target) == []
    assert parse_absence(target) is True
    assert parse_yes_no(target) is False


@pytest.mark.parametrize("windows", [[(2.5, 4.0)], [(0.0, 0.5)]])
def test_grounding_target_timepro_json_round_trips(windows):
    ((s, e),) = windows
    assert parse_windows(f'{{"query": [{s}, {e}]}}') == windows


@pytest.mark.parametrize("answer, expected", [("Yes.", True), ("No.", False)])
def test_existence_target_round_trips(answer, expected):
    assert parse_yes_no(answer) is expected


def test_sed_target_round_trips():
    events = [("dog barking", 1.2, 3.4), ("speech", 0.0, 10.0), ("Alarm_bell_ringing", 5.5, 6.25)]
    target = "\n".join(f'{{"{label}": [{on}, {off}]}}' for label, on, off in events)
    assert parse_events(target) == [Event(on, off, label) for label, on, off in events]


def test_dac_target_round_trips():
    events = [(1.2, 3.4, "a dog barks loudly"), (4.0, 9.5, "rain falls, then thunder")]
    target = "\n".join(f"{on:.2f}-{off:.2f}, {text}" for on, off, text in events)
    assert parse_events(target) == [Event(*event) for event in events]


def test_sta_target_round_trips():
    target = "The segment I hope the scientist starts at 1.20 seconds and ends at 3.40 seconds."
    assert parse_windows(target) == [(1.2, 3.4)]
    assert parse_steps(target) == [Event(1.2, 3.4, "The segment I hope the scientist")]


def test_qa_target_round_trips():
    choices = ["a dog barking", "a cat meowing", "birds", "rain"]
    for index, choice in enumerate(choices):
        assert parse_choice(f"({'abcd'[index]}) {choice}", choices) == index


# --- formats of the papers ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("From 2.5 seconds to 4 seconds", [(2.5, 4.0)]),  # SpotSound
        ("From 10.74s to 14.74s", [(10.74, 14.74)]),
        ("It starts at 3 seconds and ends at 5.5 seconds.", [(3.0, 5.5)]),  # TGSR STA
        ('{"query": [2.5, 4.0]}', [(2.5, 4.0)]),  # TimePro AG
        ('{"event": [0.1, 0.9]}', [(0.1, 0.9)]),  # TimePro SED
        ("1.20-3.40, a dog barks", [(1.2, 3.4)]),  # TimePro DAC
        ("3.2-5.6", [(3.2, 5.6)]),  # FTAR
        ("<1.24><3.00>", [(1.24, 3.0)]),  # timestamp tokens
        ("<1.24> - <3.00>", [(1.24, 3.0)]),
        ("between 1 and 2 seconds", [(1.0, 2.0)]),
        ("[1.2s - 3.4s]: hello", [(1.2, 3.4)]),
        ("(12.05 – 14.29 s)", [(12.05, 14.29)]),  # TGSR App. A.2
        ("from 1.2 to 3.4 seconds", [(1.2, 3.4)]),
        ("00:03-00:07.5", [(3.0, 7.5)]),
        ("1:02:03 - 1:02:04", [(3723.0, 3724.0)]),
    ],
)
def test_window_formats(text, expected):
    assert parse_windows(text) == expected


def test_several_windows_in_one_answer_in_order():
    text = 'From 1 seconds to 2 seconds. {"query": [3, 4]} then 5-6 and <7><8>'
    assert parse_windows(text) == [(1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0)]


def test_json_list_of_pairs_and_python_dicts():
    assert parse_events("{'dog': [[1, 2], [3, 4]], 'cat': [5, 6]}") == [
        Event(1.0, 2.0, "dog"),
        Event(3.0, 4.0, "dog"),
        Event(5.0, 6.0, "cat"),
    ]


def test_pretty_printed_json_spanning_lines():
    assert parse_events('{\n  "dog": [\n    1.5,\n    2.5\n  ]\n}') == [Event(1.5, 2.5, "dog")]


def test_description_before_window_is_used_when_nothing_follows():
    assert parse_events("a dog barks: 1.2-3.4\n- 4-5 s: speech") == [
        Event(1.2, 3.4, "a dog barks"),
        Event(4.0, 5.0, "speech"),
    ]


def test_quoted_speech_survives_in_step_explanations():
    steps = parse_steps("[0.0s - 1.5s]: The speaker says \"hello there\".\n[2-3]: 'bye'")
    assert steps == [Event(0.0, 1.5, 'The speaker says "hello there".'), Event(2.0, 3.0, "'bye'")]


# --- normalisation (module docstring) -------------------------------------------------------------------------
def test_reversed_pair_is_swapped():
    assert parse_windows("From 5 seconds to 3 seconds") == [(3.0, 5.0)]


def test_negative_is_clipped_to_zero():
    assert parse_windows("From -1.5 seconds to 2 seconds") == [(0.0, 2.0)]


def test_non_finite_windows_are_dropped():
    assert parse_windows("1e999-3, 1-2") == [(1.0, 2.0)]
    assert parse_windows("From nan seconds to inf seconds") == []


def test_beyond_duration_is_clipped_to_duration():
    assert parse_windows("From 8 seconds to 12 seconds. 11-13", duration=10.0) == [(8.0, 10.0), (10.0, 10.0)]


@pytest.mark.parametrize("duration", [None, float("nan"), float("inf"), -1.0, 0.0, "junk"])
def test_unusable_duration_is_ignored(duration):
    assert parse_windows("8-12", duration=duration) == [(8.0, 12.0)]


def test_huge_finite_numbers_stay_finite():
    ((start, end),) = parse_windows("1e308-1.7e308")
    assert math.isfinite(start) and math.isfinite(end)


# --- yes/no, absence, choices, answer region --------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes", True),
        ("**No**, it is absent.", False),
        ("yes, the dog barks", True),
        ("The dog barking is present in the audio.", True),
        ("The sound does not occur.", False),
        ("The answer is no.", False),
        ("Not sure.", None),
        ("", None),
        ("Hmm, yes or no is hard to say", None),
    ],
)
def test_yes_no(text, expected):
    assert parse_yes_no(text) is expected


def test_choice_letter_beats_text_and_respects_choice_count():
    choices = ["a dog", "a cat"]
    assert parse_choice("(a) a cat", choices) == 0  # the letter wins, as TGSR's released reward
    assert parse_choice("(c) a cat", choices) == 1  # (c) is no option here, so the text decides
    assert parse_choice("B.", choices) == 1
    assert parse_choice("Answer: A", choices) == 0


def test_choice_reads_only_the_final_non_empty_line():
    assert parse_choice("(a) a dog seems likely\nbut no:\n\n(b) a cat\n\n", ["a dog", "a cat"]) == 1
    assert final_line("x\n\n  y  \n \n") == "y"


def test_choice_text_longest_match_and_ties():
    assert parse_choice("hot dog", ["dog", "hot dog"]) == 1
    assert parse_choice("a dog or a cat", ["a dog", "a cat"]) is None


def test_answer_region_strips_thinking_and_answer_tags():
    text = "<think>From 1 seconds to 2 seconds?</think>\n<answer>From 3 seconds to 4 seconds.</answer>"
    assert parse_windows(answer_region(text)) == [(3.0, 4.0)]


def test_unparsable_grounding_is_none_not_empty():
    assert parse_grounding("I cannot tell") is None
    assert parse_grounding("[]") == []
    assert parse_grounding("") is None


# --- bad input: never raises, linear time -----------------------------------------------------------------------
ADVERSARIAL = {
    "digit run": "1" * 100_000,
    "number then spaces": "1" + " " * 100_000,
    "from repeated": "from " * 20_000,
    "open brackets": "[" * 100_000,
    "token starts": "<1" * 50_000,
    "dash chain": "1-" * 50_000,
    "quotes": '"a' * 50_000,
    "keys": '"a": [' * 16_000,
    "answer then spaces": "answer" + " " * 100_000 + "!!",  # cubic under "answer\s*(?:is)?\s*[:]?\s*"
    "answer is then spaces": "the answer is" + " " * 100_000 + ":!",
    "no events then spaces": "no events" + " " * 100_000 + "!",
    "empty answer then spaces": "[" + " " * 100_000 + "!]",
    "starts then spaces": "starts at 1" + " " * 100_000 + "!",
    "between then spaces": "between 1" + " " * 100_000 + "!",
    "token then spaces": "<1>" + " " * 100_000 + "!",
    "clock chain": "1:" * 50_000,
    "exponent chain": "1e" * 50_000,
    "dot chain": "1." * 50_000,
    "starts": "starts at 1 " * 8_000,
    "many windows": "From 1 to 2 seconds. " * 4_800,
    "nested json": "[" * 50_000 + "1, 2" + "]" * 50_000,
    "paren then spaces": "(1" + " " * 100_000,
    "unicode": "٣٫٥–٤ 🐶 ⁵-⁶ " * 8_000,
}


PARSERS = {
    "windows": parse_windows,
    "events": parse_events,
    "steps": parse_steps,
    "yes_no": parse_yes_no,
    "absence": parse_absence,
    "choice": lambda text: parse_choice(text, ["a", "b"]),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_adversarial_100k_inputs_parse_in_linear_time(name, parser):
    # CPU time of this process, so other jobs on the machine do not count; catastrophic backtracking on 100k
    # characters would take minutes, linear scanning takes milliseconds
    start = time.process_time()
    PARSERS[parser](ADVERSARIAL[name])
    assert time.process_time() - start < 2.0


def test_thousands_of_windows_give_the_first_max_items_in_order():
    text = "\n".join(f"{i}-{i + 0.5}, event {i}" for i in range(5000))
    events = parse_events(text)
    assert len(events) == MAX_ITEMS and events[-1] == Event(MAX_ITEMS - 1.0, MAX_ITEMS - 0.5, f"event {MAX_ITEMS - 1}")
