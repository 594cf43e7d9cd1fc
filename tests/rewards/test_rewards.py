"""The reward functions with TRL's calling convention, hand-written completions, the registry and the package."""

import pickle
import subprocess
import sys

import numpy as np
import pytest

import rewards
from rewards import (
    RewardConfigError,
    answer_correctness,
    eb_f1,
    existence,
    format_reward,
    meteor,
    miou,
    timestamp_compaction,
    variance_gated,
)
from rewards.temporal import event_f1

TRL_EXTRAS = {"prompts": ["p"], "completion_ids": [[1, 2]], "trainer_state": object(), "log_extra": print}


def call(reward, completion, **columns):
    """Call ``reward`` on one completion the way TRL 1.16 does, with its extra keyword arguments."""
    extras = dict(TRL_EXTRAS, log_metric=lambda *a: None)
    return reward(completions=[completion], **extras, **{k: [v] for k, v in columns.items()})[0]


# --- eb_f1 ------------------------------------------------------------------------------------------------------
def test_eb_f1_grounding_uses_windows_with_one_label():
    # collar 0.2 s: onset 1.1 vs 1.0 hits, offset 3.1 vs 3.0 hits; F = 1
    assert call(eb_f1, "From 1.10 seconds to 3.10 seconds.", task="grounding", windows=[[1.0, 3.0]]) == 1.0
    # onset off by 0.3 s > 0.2 s: F = 0
    assert call(eb_f1, "From 1.30 seconds to 3.00 seconds.", task="grounding", windows=[[1.0, 3.0]]) == 0.0


def test_eb_f1_grounding_two_windows_one_hit():
    # P = 1/2 (two predicted, one hit), R = 1 (one reference): F = 2/3
    text = "From 1.0 seconds to 3.0 seconds. From 7.0 seconds to 8.0 seconds."
    assert call(eb_f1, text, task="grounding", windows=[[1.0, 3.0]]) == pytest.approx(2 / 3)


def test_eb_f1_sed_compares_labels():
    events = [{"onset": 1.2, "offset": 3.4, "label": "Dog"}, {"onset": 5.0, "offset": 6.0, "label": "Speech"}]
    completion = '{"dog": [1.2, 3.4]}\n{"speech": [5.0, 6.0]}'
    assert call(eb_f1, completion, task="sed", events=events) == 1.0
    swapped = '{"speech": [1.2, 3.4]}\n{"dog": [5.0, 6.0]}'
    assert call(eb_f1, swapped, task="sed", events=events) == 0.0


def test_eb_f1_sed_equals_the_metric():
    events = [{"onset": 0.0, "offset": 2.0, "label": "dog"}, {"onset": 4.0, "offset": 4.5, "label": "cat"}]
    completion = '{"dog": [0.1, 2.3]}\n{"cat": [4.0, 5.0]}\n{"cat": [8, 9]}'
    expected = event_f1([(0.0, 2.0, "dog"), (4.0, 4.5, "cat")], [(0.1, 2.3, "dog"), (4.0, 5.0, "cat"), (8, 9, "cat")])
    assert call(eb_f1, completion, task="sed", events=events) == expected


def test_eb_f1_dac_compares_timing_only():
    events = [{"onset": 1.2, "offset": 3.4, "label": "a dog barks loudly"}]
    assert call(eb_f1, "1.20-3.40, some other words", task="dac", events=events) == 1.0


def test_eb_f1_negative_localisation_rows():
    assert call(eb_f1, "The sound is not present in the audio.", task="grounding", windows=[]) == 1.0
    assert call(eb_f1, "From 1 seconds to 2 seconds.", task="grounding", windows=[]) == 0.0
    assert call(eb_f1, "gibberish", task="grounding", windows=[]) == 0.0


def test_eb_f1_configurable_collar_and_name():
    wide = rewards.get("eb_f1", t_collar=0.5, name="eb_f1_wide")
    assert wide.__name__ == "eb_f1_wide"
    assert call(wide, "From 1.4 seconds to 3.0 seconds.", task="grounding", windows=[[1.0, 3.0]]) == 1.0
    assert call(eb_f1, "From 1.4 seconds to 3.0 seconds.", task="grounding", windows=[[1.0, 3.0]]) == 0.0


def test_eb_f1_clips_to_duration():
    # the prediction 9-12 clipped to the 10 s clip is 9-10, which hits the reference 9-10
    assert call(eb_f1, "9-12", task="grounding", windows=[[9.0, 10.0]], duration=10.0) == 1.0


# --- miou -------------------------------------------------------------------------------------------------------
def test_miou_grounding_is_union_iou():
    # |[2,4] ∩ [1,3]| / |[1,4]| = 1/3
    assert call(miou, '{"query": [2.0, 4.0]}', task="grounding", windows=[[1.0, 3.0]]) == pytest.approx(1 / 3)
    assert call(miou, "no answer", task="grounding", windows=[[1.0, 3.0]]) == 0.0


def test_miou_sed_averages_over_labels():
    events = [{"onset": 0, "offset": 2, "label": "dog"}, {"onset": 4, "offset": 6, "label": "cat"}]
    completion = '{"dog": [0, 2]}\n{"cat": [5, 6]}\n{"bird": [7, 8]}'
    # dog 1.0, cat 0.5, bird 0.0 (only predicted): mean 0.5
    assert call(miou, completion, task="sed", events=events) == pytest.approx(0.5)


def test_miou_sta():
    text = "The segment hello starts at 1.00 seconds and ends at 2.00 seconds."
    assert call(miou, text, task="sta", windows=[[1.0, 3.0]]) == pytest.approx(0.5)


# --- existence and format ---------------------------------------------------------------------------------------
def test_existence():
    assert call(existence, "Yes.", task="existence", exists=True) == 1.0
    assert call(existence, "No.", task="existence", exists=True) == 0.0
    assert call(existence, "No.", task="existence", exists=False) == 1.0
    assert call(existence, "Perhaps.", task="existence", exists=False) == 0.0
    assert call(existence, "Yes.", task="existence", exists=None) is None
    assert call(existence, "Yes.", task="grounding", exists=True) is None
    assert call(existence, "Yes.", task="existence", exists=np.bool_(True)) == 1.0
    assert call(existence, "No.", task="existence", exists="false") == 1.0
    with pytest.raises(RewardConfigError, match="booleans"):
        call(existence, "No.", task="existence", exists="maybe")


@pytest.mark.parametrize(
    "task, good, bad",
    [
        ("grounding", "From 1.00 seconds to 2.00 seconds.", "somewhere in the middle"),
        ("grounding", "The sound is not present in the audio.", ""),
        ("existence", "No.", "I think so"),
        ("sed", '{"dog barking": [1.2, 3.4]}', "a dog barks"),
        ("dac", "1.20-3.40, a dog barks loudly", "1.20-3.40"),
        ("sta", "The segment x starts at 1.20 seconds and ends at 3.40 seconds.", "The segment x starts early."),
        ("qa", "(b) a cat", "none of them"),
    ],
)
def test_format_reward(task, good, bad):
    columns = {"task": task, "choices": ["a dog", "a cat"]}
    assert call(format_reward, good, **columns) == 1.0
    assert call(format_reward, bad, **columns) == 0.0


# --- completions and columns ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "completion",
    [
        "Yes.",
        [{"role": "assistant", "content": "Yes."}],
        [{"role": "assistant", "content": [{"type": "text", "text": "Yes."}]}],
        [{"role": "assistant", "content": [{"type": "text", "text": "Ye"}, {"type": "text", "text": "s."}]}],
    ],
)
def test_plain_and_conversational_completions(completion):
    assert call(existence, completion, task="existence", exists=True) == 1.0


def test_rows_of_other_tasks_get_none():
    out = eb_f1(
        ["Yes.", "From 1 seconds to 2 seconds.", "(a)"],
        task=["existence", "grounding", "qa"],
        windows=[None, [[1.0, 2.0]], None],
    )
    assert out == [None, 1.0, None]


def test_missing_column_names_reward_and_column():
    with pytest.raises(RewardConfigError, match=r"'eb_f1'.*'windows'"):
        eb_f1(["From 1 seconds to 2 seconds."], task=["grounding"])
    with pytest.raises(RewardConfigError, match=r"'existence'.*no 'task' column.*'exists'"):
        existence(["Yes."], answer=["(a)"])  # no task column (the reward's own task then) and no `exists`
    with pytest.raises(RewardConfigError, match=r"'answer_correctness'.*'answer'"):
        answer_correctness(["(a)"], task=["qa"])


def test_missing_column_is_fine_when_no_row_needs_it():
    assert eb_f1(["Yes."], task=["existence"]) == [None]


def test_malformed_reference_is_a_config_error():
    with pytest.raises(RewardConfigError, match="windows"):
        eb_f1(["1-2"], task=["grounding"], windows=[["oops"]])


@pytest.mark.parametrize("reward", [eb_f1, miou, meteor, existence, format_reward, answer_correctness])
def test_rewards_pickle_and_keep_their_name(reward):
    clone = pickle.loads(pickle.dumps(reward))
    assert clone.__name__ == reward.__name__
    assert type(clone) is type(reward)


def test_default_names_are_the_metric_keys():
    names = [r.__name__ for r in (eb_f1, miou, meteor, existence, format_reward)]
    names += [answer_correctness.__name__, timestamp_compaction.__name__]
    assert names == [
        "eb_f1",
        "miou",
        "meteor",
        "existence",
        "format_reward",
        "answer_correctness",
        "timestamp_compaction",
    ]
    assert callable(variance_gated)


# --- registry ---------------------------------------------------------------------------------------------------
def test_registry_builds_every_name():
    for name in rewards.REGISTRY:
        kwargs = {"transcriber": lambda crops, rate: [""] * len(crops)} if name == "audiology_verify" else {}
        assert rewards.get(name, **kwargs).__name__ == name


def test_registry_unknown_name_lists_valid_names():
    with pytest.raises(RewardConfigError, match=r"unknown reward 'ebf1'.*eb_f1.*miou"):
        rewards.get("ebf1")


def test_registry_dotted_paths():
    assert rewards.get("rewards.grounding.MIoUReward", tasks=("grounding",)).tasks == ("grounding",)
    assert rewards.get("rewards.miou") is rewards.miou
    with pytest.raises(RewardConfigError, match="cannot import"):
        rewards.get("rewards.nothing_here.fn")
    with pytest.raises(RewardConfigError, match="takes no arguments"):
        rewards.get("rewards.miou", name="x")


def test_unknown_task_in_config_is_an_error():
    with pytest.raises(RewardConfigError, match="unknown tasks"):
        rewards.get("eb_f1", tasks=("grounding", "asr"))


def test_importing_rewards_loads_no_heavy_backend():
    code = (
        "import sys, rewards, rewards.audiology, rewards.text; "
        "heavy = {'torch', 'transformers', 'nltk', 'jiwer', 'soundfile', 'scipy', 'librosa'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


class _Broken(rewards.RewardFunction):
    __name__ = "broken"
    default_tasks = ("qa",)

    def reference(self, row):
        return row.task

    def score(self, text, reference, row):
        if text == "config":
            raise RewardConfigError("a configuration error must not be swallowed")
        return {"nan": float("nan"), "big": 7.0}.get(text) if text in ("nan", "big") else 1 / 0


def test_guard_scores_low_and_logs_but_lets_config_errors_through(caplog):
    reward = _Broken()
    with caplog.at_level("ERROR", logger="rewards._base"):
        assert reward(["boom", "nan", "big"], task=["qa"] * 3) == [0.0, 0.0, 1.0]
    assert reward._failures == 1 and "failed on a completion" in caplog.text and "produced nan" in caplog.text
    with pytest.raises(RewardConfigError, match="must not be swallowed"):
        reward(["config"], task=["qa"])


def test_column_that_is_not_a_list_is_a_config_error():
    with pytest.raises(RewardConfigError, match="one value per completion"):
        eb_f1(["1-2"], task=["grounding"], windows=5)
