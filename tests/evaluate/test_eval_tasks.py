"""Evaluation reports what the rewards train on: per-row values are the rewards' values, corpus counts the sums of
the rows' grades (rewards.tasks)."""

from __future__ import annotations

import math

import pytest
from eval_helpers import config_factory, make_row

import rewards
from rewards._base import Row
from rewards.matching import Counts
from rewards.tasks import grade
from rl_audio.evaluate.metrics import compute_metrics
from rl_audio.evaluate.scoring import grade_row, matching, score_row

COLUMNS = ("task", "windows", "events", "exists", "answer", "choices", "duration")


@pytest.fixture
def cfg(tmp_path):
    return config_factory(tmp_path)


def reward_values(reward, rows, answers):
    """The reward on manifest rows, called as GRPO calls it (one column per manifest field)."""
    return reward(answers, **{column: [row[column] for row in rows] for column in COLUMNS})


def mean(values):
    return math.fsum(values) / len(values)


def metrics(rows, answers, cfg):
    return compute_metrics(rows, {row["id"]: text for row, text in zip(rows, answers)}, cfg)


SED_ROWS = [
    ("s1", [("dog", 1.0, 3.0), ("cat", 5.0, 6.0)], '{"Dog": [1.1, 3.2]}\n{"cat": [5.3, 6.0]}\n{"cat": [8, 8.02]}'),
    ("s2", [("speech", 0.0, 4.0)], '{"speech": [0.1, 3.0]}\n{"speech": [0.0, 4.1]}'),
    ("s3", [], "[]"),
    ("s4", [("dog", 2.0, 2.5)], "no idea"),
]


@pytest.mark.parametrize("settings", [{}, {"min_duration": 0.0, "sed_percentage_of_length": 0.0, "t_collar": 0.3}])
def test_sed_corpus_counts_are_sums_of_the_rows_grades(cfg, settings):
    config = cfg(**settings)
    rows = [
        make_row(i, "sed", events=[{"onset": on, "offset": off, "label": label} for label, on, off in events])
        for i, events, _ in SED_ROWS
    ]
    answers = [text for *_, text in SED_ROWS]
    grades = [grade(Row.of(row), text, matching(config)) for row, text in zip(rows, answers)]
    total = Counts.total(g.counts for g in grades)
    sed = metrics(rows, answers, config)["sed"]
    assert (sed["tp"], sed["n_ref"], sed["n_est"]) == total
    assert sed["eb_f1"] == total.f1
    # the reward configured as evaluation is: its values are the rows' F, and their mean is the clip-mean F
    eb_f1 = rewards.get(
        "eb_f1",
        t_collar=config.t_collar,
        percentage_of_length=config.sed_percentage_of_length,
        min_duration=config.min_duration,
    )
    values = reward_values(eb_f1, rows, answers)
    assert values == [g.f1 for g in grades] == [score_row(r, t, config)["eb_f1"] for r, t in zip(rows, answers)]
    assert sed["eb_f1_clip_mean"] == pytest.approx(mean(values))
    per_class = {}
    for g in grades:
        for label, counts in g.per_label().items():
            per_class.setdefault(label, []).append(counts)
    expected = {label: Counts.total(c).f1 for label, c in per_class.items() if Counts.total(c).n_ref}
    assert sed["per_class"] == expected


def test_dac_meteor_and_timing_f1_are_the_rewards(cfg):
    events = [{"onset": 1.0, "offset": 2.0, "label": "a dog barks"}, {"onset": 5.0, "offset": 7.0, "label": "rain"}]
    rows = [make_row("d1", "dac", events=events), make_row("d2", "dac", events=events), make_row("d3", "dac")]
    answers = ["1.0-2.0, a dog barks\n5.1-7.0, rain falls", "1.0-2.0, a cat", "[]"]
    dac = metrics(rows, answers, cfg())["dac"]
    assert dac["meteor"] == pytest.approx(mean(reward_values(rewards.meteor, rows, answers)))
    assert dac["eb_f1_clip_mean"] == pytest.approx(mean(reward_values(rewards.eb_f1, rows, answers)))
    assert (dac["tp"], dac["n_ref"], dac["n_est"]) == Counts.total(
        grade_row(r, t, cfg()).counts for r, t in zip(rows, answers)
    )


def test_grounding_and_sta_miou_are_the_miou_reward(cfg):
    rows = [
        make_row("p1", "grounding", windows=[[2, 4]]),
        make_row("p2", "grounding", windows=[[0, 2], [4, 6]]),
        make_row("p3", "grounding", windows=[[1.2, 1.5]]),
        make_row("p4", "grounding", windows=[[5, 6]]),
        make_row("t1", "sta", windows=[[1.0, 3.0]]),
        make_row("t2", "sta", windows=[[4.0, 8.0]]),
    ]
    answers = [
        "From 2.5 seconds to 4 seconds.",
        "From 1 seconds to 2 seconds. From 4 seconds to 5 seconds.",
        "From 1.3 seconds to 1.3 seconds.",  # too short: no credit
        "I cannot tell.",
        "The segment starts at 1.50 seconds and ends at 3.00 seconds.",
        "The sound is not present in the audio.",  # no window: an STA miss
    ]
    m = metrics(rows, answers, cfg())
    values = reward_values(rewards.miou, rows, answers)
    assert m["grounding"]["mIoU"] == pytest.approx(mean(values[:4]))
    assert m["sta"]["mIoU"] == pytest.approx(mean(values[4:]))
    assert m["grounding"]["R1@0.5"] == sum(v >= 0.5 for v in values[:4]) / 4


def test_existence_accuracy_is_the_mean_existence_reward(cfg):
    rows = [make_row(f"e{i}", "existence", exists=exists) for i, exists in enumerate([True, True, True, False, False])]
    answers = ["Yes.", "No.", "hmm", "No.", "Yes, it is."]
    existence = metrics(rows, answers, cfg())["existence"]
    values = reward_values(rewards.existence, rows, answers)
    assert existence["accuracy"] == mean(values) == 2 / 5
    assert [score_row(r, t, cfg())["correct"] for r, t in zip(rows, answers)] == [v == 1.0 for v in values]


def test_qa_accuracy_is_the_mean_answer_correctness(cfg):
    choices = ["a dog", "a cat", "rain"]
    rows = [
        make_row(f"q{i}", "qa", choices=choices, answer=answer) for i, answer in enumerate(["a cat", "rain", "a dog"])
    ]
    answers = ["Thinking...\n(b) a cat", "(a)", "It is a dog"]
    qa = metrics(rows, answers, cfg())["qa"]
    assert qa["accuracy"] == mean(reward_values(rewards.answer_correctness, rows, answers)) == pytest.approx(2 / 3)


def test_unparseable_is_the_task_parse(cfg):
    rows = [make_row("g", "grounding", windows=[[1, 2]]), make_row("s", "sta", windows=[[1, 2]])]
    answers = ["The sound is not present in the audio.", "The sound is not present in the audio."]
    assert metrics(rows, answers, cfg())["unparseable"] == {"grounding": 0, "sta": 1}
    assert reward_values(rewards.format_reward, rows, answers) == [1.0, 0.0]
