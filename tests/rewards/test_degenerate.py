"""Degenerate answers: predicted windows shorter than ``min_duration`` earn no credit.

With a 0.2 s collar, "From 1.3 seconds to 1.3 seconds." is within the collar of both boundaries of [1.2, 1.5], so
the paper-literal Eb-F1 is 1.0 while its IoU is 0. By default the temporal rewards give such windows no credit;
``min_duration=0.0`` restores the literal values exactly.
"""

import math
import pickle
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rewards
from rewards import RewardConfigError
from rewards.grounding import (
    MIN_DURATION,
    EventF1Reward,
    MIoUReward,
    is_too_short,
    scored_event_counts,
    scored_event_f1,
    scored_window_iou,
)
from rewards.parsing import answer_region, normalise_text, parse_event_answer, parse_grounding
from rewards.reasoning import TimestampCompaction, count_grounded_units
from rewards.temporal import event_f1, window_iou

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DEFAULT_EB, LITERAL_EB = rewards.get("eb_f1"), rewards.get("eb_f1", min_duration=0.0)
DEFAULT_IOU, LITERAL_IOU = rewards.get("miou"), rewards.get("miou", min_duration=0.0)


def one(reward, text, **columns):
    return reward([text], **{name: [value] for name, value in columns.items()})[0]


# --- the case of the issue, in every answer format ---------------------------------------------------------------
DEGENERATE = [
    ("grounding", "From 1.3 seconds to 1.3 seconds.", {"windows": [[1.2, 1.5]]}),
    ("grounding", '{"query": [1.3, 1.3]}', {"windows": [[1.2, 1.5]]}),
    ("grounding", "<1.32><1.32>", {"windows": [[1.2, 1.5]]}),
    ("sta", "The speech starts at 1.3 seconds and ends at 1.3 seconds.", {"windows": [[1.2, 1.5]]}),
    ("sed", '{"dog": [1.3, 1.3]}', {"events": [{"onset": 1.2, "offset": 1.5, "label": "dog"}]}),
    ("dac", "1.3-1.3, a dog barks", {"events": [{"onset": 1.2, "offset": 1.5, "label": "a dog barks"}]}),
]


@pytest.mark.parametrize("task, text, columns", DEGENERATE, ids=[f"{t}:{x}" for t, x, _ in DEGENERATE])
def test_degenerate_answer_earns_nothing_by_default(task, text, columns):
    assert one(DEFAULT_EB, text, task=task, **columns) == 0.0
    assert one(DEFAULT_IOU, text, task=task, **columns) == 0.0


@pytest.mark.parametrize("task, text, columns", DEGENERATE, ids=[f"{t}:{x}" for t, x, _ in DEGENERATE])
def test_paper_literal_setting_keeps_todays_values(task, text, columns):
    assert one(LITERAL_EB, text, task=task, **columns) == 1.0  # the exploit, one setting away
    assert one(LITERAL_IOU, text, task=task, **columns) == 0.0


def test_degenerate_answer_to_a_negative_is_not_a_statement_of_absence():
    # empty reference: stating absence scores 1.0; a zero-length window is a claim that hits nothing
    for reward in (DEFAULT_EB, LITERAL_EB, DEFAULT_IOU, LITERAL_IOU):
        assert one(reward, "The sound is not present in the audio.", task="grounding", windows=[]) == 1.0
        assert one(reward, "From 4 seconds to 4 seconds.", task="grounding", windows=[]) == 0.0
    assert one(DEFAULT_EB, "[]", task="sed", events=[]) == 1.0
    assert one(DEFAULT_EB, '{"dog": [4, 4]}', task="sed", events=[]) == 0.0
    assert one(DEFAULT_IOU, '{"dog": [4, 4]}', task="sed", events=[]) == 0.0


# --- a zero-length window next to a correct one -------------------------------------------------------------------
def test_zero_length_window_next_to_a_correct_window_is_a_false_positive():
    text = "From 1.0 seconds to 3.0 seconds. From 5.15 seconds to 5.15 seconds."
    windows = [[1.0, 3.0], [5.0, 5.3]]
    # literal: both windows hit (the zero-length one is within 0.2 s of 5.0 and 5.3): F = 1
    assert one(LITERAL_EB, text, task="grounding", windows=windows) == 1.0
    # default: TP 1, N_ref 2, N_est 2 (the short window stays, as a false positive): F = 2 / 4
    assert one(DEFAULT_EB, text, task="grounding", windows=windows) == pytest.approx(0.5)
    # IoU: a zero-length window adds nothing to the union either way
    expected = 2.0 / 2.3
    assert one(DEFAULT_IOU, text, task="grounding", windows=windows) == pytest.approx(expected)
    assert one(LITERAL_IOU, text, task="grounding", windows=windows) == pytest.approx(expected)


def test_zero_length_window_next_to_a_correct_window_costs_precision():
    # the short window falls near no reference: it costs precision in both settings (2 / 3)
    text = "From 1.0 seconds to 3.0 seconds. From 7 seconds to 7 seconds."
    for reward in (DEFAULT_EB, LITERAL_EB):
        assert one(reward, text, task="grounding", windows=[[1.0, 3.0]]) == pytest.approx(2 / 3)
    # SED: one correct dog, one zero-length cat next to a real cat
    events = [{"onset": 1.0, "offset": 3.0, "label": "dog"}, {"onset": 4.0, "offset": 4.3, "label": "cat"}]
    text = '{"dog": [1.0, 3.0]}\n{"cat": [4.15, 4.15]}'
    assert one(LITERAL_EB, text, task="sed", events=events) == 1.0
    assert one(DEFAULT_EB, text, task="sed", events=events) == pytest.approx(0.5)
    # per-label mIoU: dog 1.0, cat 0.0 with either setting
    assert one(DEFAULT_IOU, text, task="sed", events=events) == pytest.approx(0.5)
    assert one(LITERAL_IOU, text, task="sed", events=events) == pytest.approx(0.5)


def test_a_short_window_of_a_label_absent_from_the_reference_scores_zero_for_that_label():
    # the label "cat" is only in the answer, with a zero-length window: its IoU is 0, not "both empty" (1.0)
    events = [{"onset": 1.0, "offset": 3.0, "label": "dog"}]
    text = '{"dog": [1.0, 3.0]}\n{"cat": [6, 6]}'
    assert one(DEFAULT_IOU, text, task="sed", events=events) == pytest.approx(0.5)
    assert one(LITERAL_IOU, text, task="sed", events=events) == pytest.approx(0.5)


# --- the boundary ------------------------------------------------------------------------------------------------
def test_window_exactly_min_duration_long_counts():
    assert MIN_DURATION == 0.1
    for start, end in [(1.1, 1.2), (1.2, 1.3)]:  # 1.2 - 1.1 < 0.1 in floats: the slack the rule must allow
        text = f"From {start} seconds to {end} seconds."
        assert one(DEFAULT_EB, text, task="grounding", windows=[[start, end]]) == 1.0
        assert one(DEFAULT_IOU, text, task="grounding", windows=[[start, end]]) == pytest.approx(1.0)
    assert 1.2 - 1.1 < 0.1
    # just below: no credit
    text = "From 1.2 seconds to 1.29 seconds."
    assert one(DEFAULT_EB, text, task="grounding", windows=[[1.2, 1.3]]) == 0.0
    assert one(DEFAULT_IOU, text, task="grounding", windows=[[1.2, 1.3]]) == 0.0
    assert one(LITERAL_EB, text, task="grounding", windows=[[1.2, 1.3]]) == 1.0


@pytest.mark.parametrize("min_duration", [0.04, 0.5, 2.0])
def test_other_minimum_durations(min_duration):
    eb = rewards.get("eb_f1", min_duration=min_duration, t_collar=0.5)
    iou = rewards.get("miou", min_duration=min_duration)
    start, end = 2.0, 2.0 + min_duration
    text = f"From {start} seconds to {end} seconds."
    assert one(eb, text, task="grounding", windows=[[start, end]]) == 1.0
    assert one(iou, text, task="grounding", windows=[[start, end]]) == pytest.approx(1.0)
    shorter = f"From {start} seconds to {start + 0.9 * min_duration} seconds."
    assert one(eb, shorter, task="grounding", windows=[[start, end]]) == 0.0
    assert one(iou, shorter, task="grounding", windows=[[start, end]]) == 0.0


def test_is_too_short():
    assert is_too_short(1.3, 1.3, 0.1) and not is_too_short(1.2, 1.3, 0.1) and is_too_short(1.2, 1.2999, 0.1)
    assert not is_too_short(1.3, 1.3, 0.0)


# --- settings and the registry ------------------------------------------------------------------------------------
def test_registry_passes_min_duration():
    assert rewards.get("eb_f1", min_duration=0.0).min_duration == 0.0
    assert rewards.get("miou", min_duration=0.25).min_duration == 0.25
    assert rewards.get("timestamp_compaction", min_duration=0).min_duration == 0.0
    assert rewards.eb_f1.min_duration == rewards.miou.min_duration == MIN_DURATION
    assert rewards.timestamp_compaction.min_duration == MIN_DURATION
    assert rewards.get("eb_f1", min_duration=0.0).__name__ == "eb_f1"
    literal = pickle.loads(pickle.dumps(rewards.get("eb_f1", min_duration=0.0)))
    assert one(literal, "From 1.3 seconds to 1.3 seconds.", task="grounding", windows=[[1.2, 1.5]]) == 1.0


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, "abc", None])
@pytest.mark.parametrize("name", ["eb_f1", "miou", "timestamp_compaction"])
def test_invalid_min_duration_is_a_config_error(name, bad):
    with pytest.raises(RewardConfigError, match="min_duration"):
        rewards.get(name, min_duration=bad)


# --- timestamp compaction (TGSR eq. 2) ----------------------------------------------------------------------------
def test_compaction_gives_nothing_for_only_degenerate_units():
    literal = rewards.get("timestamp_compaction", min_duration=0.0)
    text = "[1.3s - 1.3s]: the speaker says hi.\n(b) a cat"
    assert one(rewards.timestamp_compaction, text, task="qa") == 0.0
    assert one(literal, text, task="qa") == 0.5
    # a real unit plus a degenerate one: k = 2 under both settings (the short unit costs, never pays)
    text = "[0.0s - 1.0s]: hi. [1.3s - 1.3s]: there.\n(b) a cat"
    assert one(rewards.timestamp_compaction, text, task="qa") == pytest.approx(0.4)
    assert one(literal, text, task="qa") == pytest.approx(0.4)
    assert count_grounded_units(text) == 2 and count_grounded_units(text, min_duration=0.1) == 1


# --- min_duration=0.0 is today's reward, exactly; the default never pays more for Eb-F1 -------------------------
def _literal_eb_f1(text, task, reference):
    """The reward as it was before min_duration: parse, relabel, event_f1 (grounding and sed rows)."""
    region = answer_region(text)
    if task == "grounding":
        windows = parse_grounding(region, 10.0)
        predicted = None if windows is None else [(s, e, "") for s, e in windows]
        ref = [(s, e, "") for s, e in reference]
    else:
        events = parse_event_answer(region, 10.0)
        predicted = None if events is None else [(e.onset, e.offset, normalise_text(e.label)) for e in events]
        ref = [(e["onset"], e["offset"], normalise_text(e["label"])) for e in reference]
    return 0.0 if predicted is None else event_f1(ref, predicted)


def _literal_iou(text, reference):
    windows = parse_grounding(answer_region(text), 10.0)
    return 0.0 if windows is None else window_iou(reference, windows)


TIME = st.sampled_from([0.0, 0.5, 1.0, 1.2, 1.25, 1.3, 1.35, 1.5, 2.0, 3.0, 5.0, 5.05])
WINDOW_TEXT = st.builds(lambda a, b: f"From {a} seconds to {b} seconds.", TIME, TIME)
SED_TEXT = st.builds(lambda lab, a, b: f'{{"{lab}": [{a}, {b}]}}', st.sampled_from(["dog", "cat"]), TIME, TIME)
REF_WINDOWS = st.lists(st.tuples(TIME, TIME).map(sorted).map(list), max_size=3)
REF_EVENTS = st.lists(
    st.builds(
        lambda lab, w: {"onset": w[0], "offset": w[1], "label": lab},
        st.sampled_from(["dog", "cat"]),
        st.tuples(TIME, TIME).map(sorted),
    ),
    max_size=3,
)


@SETTINGS
@given(parts=st.lists(WINDOW_TEXT, max_size=4), reference=REF_WINDOWS)
def test_literal_setting_equals_todays_grounding_values(parts, reference):
    text = " ".join(parts) or "no idea"
    kwargs = dict(task="grounding", windows=reference, duration=10.0)
    assert one(LITERAL_EB, text, **kwargs) == _literal_eb_f1(text, "grounding", reference)
    assert one(LITERAL_IOU, text, **kwargs) == _literal_iou(text, reference)
    assert one(DEFAULT_EB, text, **kwargs) <= one(LITERAL_EB, text, **kwargs)


@SETTINGS
@given(parts=st.lists(SED_TEXT, max_size=4), reference=REF_EVENTS)
def test_literal_setting_equals_todays_sed_values(parts, reference):
    text = "\n".join(parts) or "[]"
    kwargs = dict(task="sed", events=reference, duration=10.0)
    assert one(LITERAL_EB, text, **kwargs) == _literal_eb_f1(text, "sed", reference)
    assert one(DEFAULT_EB, text, **kwargs) <= one(LITERAL_EB, text, **kwargs)


EVENTS = st.lists(
    st.tuples(TIME, TIME, st.sampled_from(["a", "b"])).map(lambda e: (min(e[:2]), max(e[:2]), e[2])), max_size=5
)


@SETTINGS
@given(reference=EVENTS, estimate=EVENTS)
def test_scored_metrics_without_short_predictions_are_the_plain_metrics(reference, estimate):
    assert scored_event_f1(reference, estimate, min_duration=0.0) == event_f1(reference, estimate)
    windows_ref, windows_est = [e[:2] for e in reference], [e[:2] for e in estimate]
    assert scored_window_iou(windows_ref, windows_est, min_duration=0.0) == window_iou(windows_ref, windows_est)
    long_enough = [e for e in estimate if e[1] - e[0] >= 0.1]
    assert scored_event_f1(reference, long_enough) == event_f1(reference, long_enough)
    # short predictions stay false positives: N_est counts them, TP never grows
    tp, n_ref, n_est = scored_event_counts(reference, estimate)
    assert n_est == len(estimate) and n_ref == len(reference)
    assert tp <= scored_event_counts(reference, estimate, min_duration=0.0)[0]
    value = scored_event_f1(reference, estimate)
    assert math.isfinite(value) and 0.0 <= value <= event_f1(reference, estimate)


@pytest.mark.parametrize(
    "reward",
    [
        LITERAL_EB,
        LITERAL_IOU,
        EventF1Reward(min_duration=5.0),
        MIoUReward(min_duration=5.0),
        TimestampCompaction(min_duration=0.0),
    ],
    ids=repr,
)
@SETTINGS
@given(
    text=st.one_of(
        st.text(max_size=80), st.lists(st.one_of(WINDOW_TEXT, SED_TEXT, st.text(max_size=3)), max_size=6).map("".join)
    ),
    task=st.sampled_from(["grounding", "sta", "sed", "dac", "qa"]),
)
def test_other_settings_stay_total(reward, text, task):
    columns = {"windows": [[1.2, 1.5]], "events": [{"onset": 1.2, "offset": 1.5, "label": "dog"}], "duration": 10.0}
    value = one(reward, text, task=task, **columns)
    if task not in reward.tasks:
        assert value is None
    else:
        assert isinstance(value, float) and math.isfinite(value) and reward.low <= value <= reward.high
    assert reward._failures == 0


# --- evaluation grades with the same rule -------------------------------------------------------------------------
def test_evaluation_scoring_applies_the_rule():
    scoring = pytest.importorskip("rl_audio.evaluate.scoring")
    row = {"id": "g", "task": "grounding", "duration": 10.0, "windows": [[1.2, 1.5]], "exists": True}
    sed = {"id": "s", "task": "sed", "duration": 10.0, "events": [{"onset": 1.2, "offset": 1.5, "label": "dog"}]}
    default = SimpleNamespace(t_collar=0.2, sed_percentage_of_length=0.5)  # no min_duration: the rewards' default
    literal = SimpleNamespace(t_collar=0.2, sed_percentage_of_length=0.5, min_duration=0.0)
    assert scoring.score_row(row, "From 1.3 seconds to 1.3 seconds.", default)["iou"] == 0.0
    out = scoring.score_row(sed, '{"dog": [1.3, 1.3]}', default)
    assert (out["eb_f1"], out["tp"], out["n_ref"], out["n_est"]) == (0.0, 0, 1, 1)
    assert out["per_label"] == {"dog": (0, 1, 1)}
    out = scoring.score_row(sed, '{"dog": [1.3, 1.3]}', literal)
    assert (out["eb_f1"], out["tp"], out["n_ref"], out["n_est"]) == (1.0, 1, 1, 1)
    # the clip's F is the reward's value under the same settings
    text = '{"dog": [1.2, 1.5]}\n{"dog": [1.3, 1.3]}'
    reward = one(DEFAULT_EB, text, task="sed", events=sed["events"], duration=10.0)
    assert scoring.score_row(sed, text, default)["eb_f1"] == reward == pytest.approx(2 / 3)
