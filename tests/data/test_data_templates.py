import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rl_audio.data.manifest import validate_row
from rl_audio.data.templates import STYLES, TGSR_REASONING_INSTRUCTION, render_question, render_target


def row(task, **kw):
    base = {"id": "x", "audio": "a.wav", "duration": 30.0, "task": task, "query": kw.pop("query", "a rising whistle")}
    return validate_row({**base, **kw})


GROUNDING = row("grounding", windows=[[2.5, 4.0]], exists=True)
TWO = row("grounding", windows=[[10.0, 12.345], [2.5, 4.0]])
NEGATIVE = row("grounding", windows=[], exists=False)
EVENTS = [{"onset": 1.2, "offset": 3.4, "label": "dog bark"}, {"onset": 5.0, "offset": 7.25, "label": "car horn"}]


@pytest.mark.parametrize(
    ("example", "style", "target"),
    [
        (GROUNDING, "spotsound", "From 2.50 seconds to 4.00 seconds."),
        (TWO, "spotsound", "From 2.50 seconds to 4.00 seconds. From 10.00 seconds to 12.35 seconds."),
        (GROUNDING, "timepro", '{"query": [2.5, 4.0]}'),
        (TWO, "timepro", '{"query": [2.5, 4.0]}\n{"query": [10.0, 12.35]}'),
        (row("existence", exists=True, windows=[[1.0, 2.0]]), "spotsound", "Yes."),
        (row("existence", exists=False), "timepro", "No."),
        (row("existence", exists=False), "spotsound", "No."),
        (row("sed", query="", events=EVENTS), "timepro", '{"dog bark": [1.2, 3.4]}\n{"car horn": [5.0, 7.25]}'),
        (row("sed", query="", events=[]), "timepro", "No sound events are present in the audio."),
        (row("dac", query="", events=EVENTS), "timepro", "1.20-3.40, dog bark\n5.00-7.25, car horn"),
        (
            row("sta", query="I hope the scientist", windows=[[12.02, 14.34]]),
            "spotsound",
            "The segment I hope the scientist starts at 12.02 seconds and ends at 14.34 seconds.",
        ),
        (row("qa", query="Q?", choices=["cat", "dog", "cow"], answer="dog"), "timepro", "(b) dog"),
    ],
)
def test_exact_targets(example, style, target):
    assert render_target(example, style) == target


def test_styles_differ_only_for_grounding():
    for task in ("existence", "sed", "dac", "sta", "qa"):
        assert STYLES["spotsound"][task] == STYLES["timepro"][task]
    assert render_question(GROUNDING, "spotsound") != render_question(GROUNDING, "timepro")


def test_questions():
    assert render_question(GROUNDING, "spotsound") == (
        'Find the start and end time of the sound described by "a rising whistle". '
        'Answer in the form "From s seconds to e seconds."'
    )
    assert render_question(GROUNDING, "timepro").endswith('{"query": [onset, offset]} with times in seconds.')
    for style in STYLES:  # grounding is asked only about present events: no escape for absence in the prompt
        assert "not present" not in render_question(GROUNDING, style)
        assert "not present" not in render_question(NEGATIVE, style)
    assert render_question(row("existence", exists=True, windows=[[1, 2]])) == (
        'Is the sound "a rising whistle" present in the audio? Answer yes or no.'
    )
    assert render_question(row("sta", query="hello there you", windows=[[1, 2]])) == (
        "What is the timestamp of the following segment? hello there you"
    )
    qa = row("qa", query="Which animal?", choices=["cat", "dog"], answer="cat")
    assert render_question(qa) == "Which animal?\n(a) cat\n(b) dog"
    assert '{"<label>": [onset, offset]}' in render_question(row("sed", query=""))
    assert '"onset-offset, description"' in render_question(row("dac", query=""))
    assert render_question(row("sed", query="List the dog barks.")) == "List the dog barks."


@pytest.mark.parametrize("style", ["spotsound", "timepro"])
@pytest.mark.parametrize("absent", [NEGATIVE, row("grounding", windows=[])])
def test_grounding_row_without_windows_has_no_target(style, absent):
    # SpotSound §2.1: an absent event is a presence question answered "No.", never a grounding target
    with pytest.raises(ValueError, match="grounding row without windows .* existence rows"):
        render_target(absent, style)


def test_unknown_style_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown template style 'x' .*spotsound, timepro"):
        render_target(GROUNDING, "x")


def _parse_spotsound(text):
    return [[float(s), float(e)] for s, e in re.findall(r"From (\d+\.\d+) seconds to (\d+\.\d+) seconds\.", text)]


def _parse_timepro(text):
    return [json.loads(line)["query"] for line in text.splitlines()]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 100, allow_nan=False), st.floats(0.01, 20, allow_nan=False)), min_size=1, max_size=4
    )
)
def test_round_trip_to_a_hundredth(pairs):
    windows = sorted([s, s + d] for s, d in pairs)
    example = row("grounding", duration=200.0, windows=windows)
    for style, parse in (("spotsound", _parse_spotsound), ("timepro", _parse_timepro)):
        parsed = parse(render_target(example, style))
        assert len(parsed) == len(windows)
        for (s, e), (ps, pe) in zip(example["windows"], parsed):
            assert abs(ps - s) <= 0.005 + 1e-9 and abs(pe - e) <= 0.005 + 1e-9
    sta = row("sta", duration=200.0, query="p", windows=[windows[0]])
    s, e = map(float, re.findall(r"at (\d+\.\d+) seconds", render_target(sta)))
    assert abs(s - windows[0][0]) <= 0.005 + 1e-9 and abs(e - windows[0][1]) <= 0.005 + 1e-9


STA = row("sta", query="I hope the scientist who confirms stream theory,", windows=[[12.05, 14.29]])


def test_sta_templates_per_family_as_tgsr_prints_them():
    # TGSR App. B.1.1 (Qwen2.5-Omni): the tgsr style, and the default of the others
    assert STYLES["tgsr"] == STYLES["spotsound"]
    for style in ("tgsr", "spotsound", "timepro"):
        assert render_question(STA, style) == (
            "What is the timestamp of the following segment? I hope the scientist who confirms stream theory,"
        )
        assert render_target(STA, style) == (
            "The segment I hope the scientist who confirms stream theory, starts at 12.05 seconds and ends at "
            "14.29 seconds."
        )
    # App. B.1.2 (Audio Flamingo 3): a format instruction after the sentence, an answer without it
    assert render_question(STA, "tgsr_af3") == (
        "What is the timestamp of the following segment? I hope the scientist who confirms stream theory, Provide "
        "both the start and end timestamps of this segment in seconds with 2 decimal places. Format: The segment "
        "starts at X.XX seconds and ends at Y.YY seconds."
    )
    assert render_target(STA, "tgsr_af3") == "The segment starts at 12.05 seconds and ends at 14.29 seconds."
    # the rest of tgsr_af3 is the spotsound style
    for task, renderers in STYLES["tgsr_af3"].items():
        assert (renderers == STYLES["spotsound"][task]) is (task != "sta"), task


def test_every_sta_target_parses_back_to_its_window():
    from rewards.parsing import parse_windows

    for style in STYLES:
        assert parse_windows(render_target(STA, style)) == [(12.05, 14.29)], style


def test_tgsr_stage_2_instruction_as_the_paper_prints_it():
    # TGSR App. B.1.3, including the sentence the response must open with
    assert TGSR_REASONING_INSTRUCTION == (
        "When answering, you must first provide reasoning grounded in the audio content using explicit timestamps. "
        "Start your response exactly with: \"To determine the best description, let's analyze the audio content and "
        'the given timestamps:" Then, after the reasoning, provide the final answer.'
    )
