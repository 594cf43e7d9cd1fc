"""Rewards on datasets without a ``task`` column: each row is taken as the reward's own task."""

from __future__ import annotations

import pytest

import rewards
from rewards import RewardConfigError, eb_f1, existence, miou


def test_readme_example_on_columns_that_each_reward_reads():
    completions = [
        [{"role": "assistant", "content": "From 1.0 seconds to 2.0 seconds."}],
        [{"role": "assistant", "content": "From 4.0 seconds to 5.0 seconds."}],
    ]
    windows = [[[1.0, 2.0]], [[1.0, 2.0]]]
    assert miou(completions, windows=windows) == [1.0, 0.0]  # grounding, the first task that reads `windows`
    assert eb_f1(completions, windows=windows) == [1.0, 0.0]
    answers = [[{"role": "assistant", "content": "Yes."}], [{"role": "assistant", "content": "No."}]]
    assert existence(answers, exists=[True, True]) == [1.0, 0.0]


def test_events_column_selects_sed_and_a_chosen_task_wins():
    sed = ['{"a dog barking": [1.0, 2.0]}']
    events = [[{"onset": 1.0, "offset": 2.0, "label": "a dog barking"}]]
    assert eb_f1(sed, events=events) == [1.0]  # no `windows`: the first task whose column is there is sed
    only_sed = rewards.get("eb_f1", tasks=["sed"])
    assert only_sed(sed, events=events, windows=[[[5.0, 6.0]]]) == [1.0]


def test_a_reward_that_reads_no_column_scores_completions_alone():
    compaction = rewards.get("timestamp_compaction")
    out = compaction(["At [0.5s - 1.0s] a word, then [1.0s - 1.5s] another. Answer: (a)"])
    assert len(out) == 1 and out[0] is not None and 0.0 <= out[0] <= 1.0


def test_missing_columns_are_named_with_what_each_task_needs():
    with pytest.raises(RewardConfigError, match=r"no 'task' column.*'grounding': \['windows'\].*columns given: \[\]"):
        miou(["From 1 seconds to 2 seconds."])


def test_a_task_column_still_dispatches():
    out = miou(["From 1 seconds to 2 seconds.", "Yes."], task=["grounding", "existence"], windows=[[[1, 2]], []])
    assert out == [1.0, None]
