"""`RewardFusion`: the column wiring of TimePro-RL's fusion (eq. 2) as a recipe gives it, without a model."""

from __future__ import annotations

import pytest
import torch

from rl_audio.trainers.fusion import RewardFusion

REWARDS = ["eb_f1", "miou", "meteor", "format"]
PER_TASK = {"grounding": "miou", "sed": "miou", "dac": "meteor"}


def test_columns_and_weights():
    fusion = RewardFusion(REWARDS, "eb_f1", PER_TASK)
    assert fusion.columns == [*REWARDS, "fused_eb_f1_by_task"]
    assert fusion.reward_weights([2.0, 1.0, 1.0, 0.5]) == [0.0, 0.0, 0.0, 0.5, 2.0]  # main's weight moves over
    single = RewardFusion(REWARDS, "eb_f1", "miou")
    assert single.columns[-1] == "fused_eb_f1_miou" and single.slot().__name__ == "fused_eb_f1_miou"
    assert single.reward_weights([1.0] * 4) == [0.0, 0.0, 1.0, 1.0, 1.0]  # meteor keeps its weight
    assert single.slot()(["a", "b"]) == [None, None]
    assert (single["main"], single["aux"], single["eps"]) == ("eb_f1", "miou", 1e-6)


def test_apply_fills_the_last_column_and_reports_metrics():
    fusion = RewardFusion(REWARDS, "eb_f1", PER_TASK, eps=1e-6)
    main = torch.tensor([0.5, 0.5, 1.0, 0.0, 0.5, 0.5])
    miou = torch.tensor([0.2, 0.4, 0.9, 0.9, 0.0, 0.0])
    meteor = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.6, 0.8])
    rewards = torch.stack([main, miou, meteor, torch.zeros(6), torch.zeros(6)], dim=1)  # (N, F + 1), G = 2
    out = fusion.apply(rewards, 2, ["grounding"] * 4 + ["dac"] * 2)
    assert torch.allclose(out.rewards[:, -1], torch.tensor([0.1, 0.2, 1.0, 0.0, 0.3, 0.4]))
    assert out.metrics == {
        "rewards/fusion/fused_group_frac": pytest.approx(2 / 3),
        "rewards/fusion/fused_group_frac/grounding": 0.5,
        "rewards/fusion/fused_group_frac/dac": 1.0,
        "rewards/fusion/zero_std_frac": 0.0,
    }


def test_recipe_errors():
    with pytest.raises(ValueError, match="fusion_aux 'bleu' is not one of the configured rewards"):
        RewardFusion(REWARDS, "eb_f1", "bleu")
    with pytest.raises(ValueError, match="empty mapping"):
        RewardFusion(REWARDS, "eb_f1", {})
    with pytest.raises(ValueError, match=r"no auxiliary reward for the training task\(s\) \['qa'\]"):
        RewardFusion(REWARDS, "eb_f1", PER_TASK).check_tasks(["grounding", "qa"])
