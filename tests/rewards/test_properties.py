"""Totality: every reward returns a finite number in its range, or None where it does not apply, for any text."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rewards
from rewards.audiology import AudiologyVerify
from rewards.examples import EXAMPLE_COLUMNS
from rewards.parsing import parse_choice, parse_events, parse_grounding, parse_steps, parse_windows, parse_yes_no

COLUMNS = EXAMPLE_COLUMNS
ALL_COLUMNS = ("windows", "query", "duration", "exists", "events", "answer", "choices", "audio")
AUDIO = {"array": np.zeros(16_000 * 4, dtype=np.float32), "sampling_rate": 16_000}

# modest budgets keep the rewards suite fast on two cores
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def every_reward():
    built = [rewards.get(name) for name in rewards.REGISTRY if name != "audiology_verify"]
    built.append(AudiologyVerify(transcriber=lambda crops, rate: ["a dog barks"] * len(crops)))
    return built


REWARDS = every_reward()

FRAGMENTS = st.sampled_from(
    [
        "From ",
        " seconds to ",
        " seconds.",
        "{",
        "}",
        '"query": ',
        '"dog": ',
        "[",
        "]",
        ", ",
        "-",
        "–",
        "<",
        ">",
        "\n",
        "starts at ",
        " and ends at ",
        "between ",
        " and ",
        "s",
        "Yes",
        "No.",
        "(b) ",
        "a cat",
        "nan",
        "inf",
        "1e308",
        "1e309",
        "-3",
        "The sound is not present in the audio.",
        "'",
        '"',
        ":",
        "</think>",
        "<answer>",
        "</answer>",
        "ü",
        "🐶",
        "\u0000",
        "[[",
        "]]",
        "0:03",
        "The speaker says 'a dog barks'",
    ]
)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(-100, 100, allow_nan=False).map(lambda x: f"{x:.2f}"),
)
WINDOWS = st.builds(
    "{}{}{}{}{}{}".format,
    st.sampled_from(["", "[", "From ", "<", "(", "starts at "]),
    NUMBERS,
    st.sampled_from(["", "s", " seconds"]),
    st.sampled_from(["-", " to ", ", ", "><", " and ends at "]),
    NUMBERS,
    st.sampled_from(["", "]", ">", " seconds.", ")", "]: a dog barks\n", ", the speaker says 'hi'\n"]),
)
ANSWERS = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(FRAGMENTS, NUMBERS, WINDOWS, st.text(max_size=4)), max_size=40).map("".join),
)


def check(reward, completions, task):
    columns = {name: [COLUMNS[task].get(name)] * len(completions) for name in ALL_COLUMNS}
    columns["audio"] = [AUDIO] * len(completions)
    out = reward(completions, task=[task] * len(completions), prompts=["p"] * len(completions), **columns)
    assert len(out) == len(completions)
    for value in out:
        if task not in reward.tasks:
            assert value is None
            continue
        assert value is not None and isinstance(value, float) and math.isfinite(value), (reward, value)
        assert reward.low <= value <= reward.high, (reward, value)
    assert reward._failures == 0, f"{reward.__name__} hit its guard"


@pytest.mark.parametrize("reward", REWARDS, ids=lambda r: r.__name__)
@SETTINGS
@given(text=ANSWERS, task=st.sampled_from(sorted(COLUMNS)))
def test_every_reward_is_total_on_any_text(reward, text, task):
    check(reward, [text], task)


@pytest.mark.parametrize("reward", REWARDS, ids=lambda r: r.__name__)
@pytest.mark.parametrize(
    "text",
    [
        "",
        "x" * 100_000,
        "From 1 seconds to 2 seconds. " * 3_500,
        "\n".join(f"{i / 10:.1f}-{i / 10 + 0.5:.1f}, event" for i in range(3_000)),
        '{"dog": [1.2, 3.4]}\n' * 3_000,
        "[" * 30_000 + "]" * 30_000,
        '{"a": {"b": [1, {"c": [2, 3]}]' * 1_000,
        "nan-nan, inf-inf, 1e308-1e308, -5--3, 9-2, [0 - 1e308] a dog barks, [1e308-1.7e308] x",
        "٣٫٥–٤ 🐶 ⁵-⁶ ∞ ½-¾",
    ],
    ids=[
        "empty",
        "100k",
        "many sentences",
        "3000 windows",
        "3000 json",
        "nested",
        "broken json",
        "odd numbers",
        "unicode",
    ],
)
@pytest.mark.parametrize("task", sorted(COLUMNS))
def test_every_reward_is_total_on_big_and_odd_inputs(reward, text, task):
    check(reward, [text], task)


@SETTINGS
@given(
    completion=st.one_of(
        st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["assistant", "user", "tool"])},
                optional={
                    "content": st.one_of(
                        st.none(),
                        st.text(max_size=30),
                        st.lists(
                            st.dictionaries(
                                st.sampled_from(["type", "text", "image"]),
                                st.one_of(st.text(max_size=10), st.integers()),
                            ),
                            max_size=3,
                        ),
                    )
                },
            ),
            max_size=3,
        ),
        st.none(),
        st.integers(),
    )
)
def test_odd_conversational_completions(completion):
    for reward in REWARDS:
        check(reward, [completion], "grounding")
        check(reward, [completion], "qa")


@SETTINGS
@given(text=ANSWERS, duration=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
def test_parsed_windows_are_normalised(text, duration):
    for start, end in parse_windows(text, duration):
        assert math.isfinite(start) and math.isfinite(end) and 0.0 <= start <= end
        if duration is not None and math.isfinite(duration) and duration > 0:
            assert end <= duration
    for event in parse_events(text, duration) + parse_steps(text, duration):
        assert 0.0 <= event.onset <= event.offset and isinstance(event.label, str)
    assert parse_yes_no(text) in (True, False, None)
    grounding = parse_grounding(text, duration)
    assert grounding is None or isinstance(grounding, list)
    choice = parse_choice(text, ["a", "b", "c"])
    assert choice is None or 0 <= choice < 3
