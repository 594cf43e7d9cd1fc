"""One grader per task: every reward value is a value of its task's grade, computed from the grade's counts."""

from types import MappingProxyType

import pytest

import rewards
from rewards import RewardConfigError
from rewards._base import Row
from rewards.matching import Counts, Matching
from rewards.tasks import TASKS, AnswerGrade, EventGrade, grade, is_positive, presence
from rewards.tasks import get as get_task
from rewards.temporal import event_f1, f_measure
from rewards.text import caption_meteor


def one(reward, text, **columns):
    return reward([text], **{name: [value] for name, value in columns.items()})[0]


def graded(text, **row):
    return grade(Row.of(row), text)


# --- windows and events: eb_f1 is the F of the grade's counts, miou the grade's IoU ---------------------------------
EVENT_CASES = [
    ("grounding", {"windows": [[1.0, 3.0]]}, "From 1.1 seconds to 3.1 seconds."),
    ("grounding", {"windows": [[1.0, 3.0], [5.0, 6.0]]}, "From 1.1 seconds to 3.1 seconds. From 7 to 8 seconds."),
    ("grounding", {"windows": []}, "The sound is not present in the audio."),
    ("grounding", {"windows": []}, "From 1 seconds to 2 seconds."),
    ("grounding", {"windows": [[1.2, 1.5]]}, "From 1.3 seconds to 1.3 seconds."),  # too short: no credit
    ("grounding", {"windows": [[1.0, 3.0]]}, "I cannot tell."),
    ("sta", {"windows": [[1.0, 3.0]]}, "The segment starts at 1.00 seconds and ends at 2.00 seconds."),
    (
        "sed",
        {"events": [{"onset": 1, "offset": 3, "label": "Dog"}, {"onset": 5, "offset": 6, "label": "cat"}]},
        '{"dog!": [1.1, 3.2]}\n{"cat": [7, 8]}\n{"cat": [5.0, 5.05]}',
    ),
    ("sed", {"events": []}, "[]"),
    ("dac", {"events": [{"onset": 1, "offset": 2, "label": "a dog barks"}]}, "1.05-2.0, a cat meows\n4-5, rain"),
]


@pytest.mark.parametrize("task, columns, text", EVENT_CASES)
def test_event_rewards_are_values_of_the_grade(task, columns, text):
    g = graded(text, task=task, duration=10.0, **columns)
    assert isinstance(g, EventGrade)
    tp, n_ref, n_est = g.counts
    f1 = f_measure(tp, n_ref, n_est) if g.parsed else 0.0
    assert one(rewards.eb_f1, text, task=task, duration=10.0, **columns) == g.f1 == f1
    assert one(rewards.miou, text, task=task, duration=10.0, **columns) == g.iou
    # the per-label counts partition the clip's counts (labels never match across)
    assert Counts.total(g.per_label().values()) == g.counts


def test_grade_counts_follow_the_reward_settings():
    columns = {"task": "sed", "events": [{"onset": 1.0, "offset": 2.0, "label": "dog"}]}
    text = '{"dog": [1.3, 2.0]}\n{"dog": [1.5, 1.5]}'
    strict, loose = Matching(), Matching(t_collar=0.5, min_duration=0.0)
    g_strict = get_task("sed").grade(get_task("sed").reference(Row.of(columns)), text, Row.of(columns), strict)
    g_loose = get_task("sed").grade(g_strict.reference, text, Row.of(columns), loose)
    assert g_strict.counts == (0, 1, 2) and g_loose.counts == (1, 1, 2)
    assert one(rewards.get("eb_f1"), text, **columns) == g_strict.f1 == 0.0
    assert one(rewards.get("eb_f1", t_collar=0.5, min_duration=0.0), text, **columns) == g_loose.f1 == 2 / 3


def test_f_measure_is_event_f1_of_its_counts():
    reference = [(1.0, 3.0, "dog"), (5.0, 6.0, "speech")]
    estimate = [(1.1, 3.3, "dog"), (5.0, 6.0, "dog"), (8, 9, "dog")]
    assert (
        event_f1(reference, estimate)
        == f_measure(1, 2, 3)
        == Matching(min_duration=0.0).event_counts(reference, estimate).f1
    )


def test_labels_compare_as_the_task_says():
    sed = graded('{"DOG!": [1, 2]}', task="sed", events=[{"onset": 1, "offset": 2, "label": "dog"}])
    dac = graded("1-2, a cat", task="dac", events=[{"onset": 1, "offset": 2, "label": "a dog"}])
    assert sed.counts == dac.counts == (1, 1, 1)  # sed: normalised labels; dac: timing only
    assert dac.answer[0].label == "a cat" and dac.reference[0].label == "a dog"  # raw, for METEOR


def test_dac_meteor_is_a_value_of_the_grade():
    events = [{"onset": 1.0, "offset": 2.0, "label": "a dog barks"}]
    for text in ("1.0-2.0, a dog barks", "1-2, a cat", "[]", "no idea"):
        g = graded(text, task="dac", events=events)
        assert one(rewards.meteor, text, task="dac", events=events) == caption_meteor(g)


def test_sta_needs_a_window():
    # STA answers are windows: absence is unparseable (as evaluation and format_reward always read it)
    g = graded("The sound is not present in the audio.", task="sta", windows=[[1.0, 2.0]])
    assert g.answer is None and g.f1 == g.iou == 0.0
    assert one(rewards.eb_f1, "The sound is not present in the audio.", task="sta", windows=[]) == 0.0


# --- existence and qa: the reward is the grade's correctness -----------------------------------------------------
@pytest.mark.parametrize(
    "text, columns, correct",
    [
        ("Yes.", {"exists": True}, True),
        ("No.", {"exists": True}, False),
        ("Perhaps.", {"exists": False}, False),
        ("No.", {"exists": "false"}, True),
        ("Yes.", {"exists": None, "windows": [[1.0, 2.0]]}, True),  # no exists: present when windows are given
        ("Yes.", {"exists": None, "windows": []}, False),
    ],
)
def test_existence_reward_is_the_grade(text, columns, correct):
    g = graded(text, task="existence", **columns)
    assert isinstance(g, AnswerGrade) and g.correct is correct
    assert one(rewards.existence, text, task="existence", **columns) == float(correct)


def test_existence_without_a_reference_is_not_graded():
    assert graded("Yes.", task="existence", exists=None) is None
    assert one(rewards.existence, "Yes.", task="existence", exists=None) is None
    with pytest.raises(RewardConfigError, match="booleans"):
        graded("Yes.", task="existence", exists="maybe")


def test_presence_is_one_rule():
    assert presence(True, []) is True and presence(None, [[1, 2]]) is True and presence(None, None) is None
    assert is_positive({"exists": None, "windows": [[1, 2]]}) and not is_positive({"exists": False, "windows": []})


@pytest.mark.parametrize(
    "text, answer, choices, correct",
    [
        ("Reasoning...\n(b) a cat", "a cat", ["a dog", "a cat"], True),
        ("(a) a dog", "a cat", ["a dog", "a cat"], False),
        ("Reasoning...\n(c) A cat.", "a cat", None, True),  # no choices: the final line must say it
        ("b", "b", ["a dog", "a cat"], True),  # a letter answer
    ],
)
def test_answer_correctness_is_the_grade(text, answer, choices, correct):
    g = graded(text, task="qa", answer=answer, choices=choices)
    assert g.correct is correct
    assert one(rewards.answer_correctness, text, task="qa", answer=answer, choices=choices) == float(correct)


# --- format_reward: the task's parse -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "task, text, ok",
    [
        ("grounding", "The sound is not present in the audio.", True),
        ("sta", "The sound is not present in the audio.", False),
        ("existence", "maybe", False),
        ("sed", "[]", True),
        ("dac", "1.2-3.4", False),  # parsed (timing is graded) but without the description its format asks for
        ("qa", "(c)", False),
    ],
)
def test_format_reward_is_the_task_format(task, text, ok):
    row = Row.of({"task": task, "choices": ["a", "b"]})
    spec = get_task(task)
    assert spec.well_formed(spec.parse(text, row)) is ok
    assert one(rewards.format_reward, text, task=task, choices=["a", "b"]) == float(ok)


# --- one list of tasks; immutable reward classes ------------------------------------------------------------------
def test_tasks_are_defined_once():
    from rewards import _base

    assert _base.TASKS is TASKS and tuple(get_task(name).name for name in TASKS) == TASKS
    with pytest.raises(ValueError, match="valid tasks: grounding, existence"):
        get_task("asr")


def test_reward_class_attributes_are_immutable():
    for reward in (rewards.eb_f1, rewards.miou, rewards.existence, rewards.meteor, rewards.answer_correctness):
        assert isinstance(type(reward).required_columns, MappingProxyType)
        assert isinstance(type(reward).default_tasks, tuple)
        with pytest.raises(TypeError):
            type(reward).required_columns["qa"] = ("x",)
    assert rewards.eb_f1.required_columns == {
        "grounding": ("windows",),
        "sta": ("windows",),
        "sed": ("events",),
        "dac": ("events",),
    }
