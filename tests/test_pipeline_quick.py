"""`python -m rl_audio.pipeline --quick`: every stage runs through the real entry points and the summary table of
the untrained, SFT and GRPO checkpoints is produced. Quick mode trains for a few steps, so its numbers mean nothing;
the learning targets are in docs/results.md."""

from __future__ import annotations

import json

import pytest

from rl_audio import pipeline


@pytest.mark.slow
def test_quick_pipeline_writes_the_three_column_table(tmp_path, capsys):
    out = tmp_path / "pipeline"
    pipeline.main(["--quick", "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["metrics"]) == ["untrained", "sft", "grpo"]
    for name in ("untrained", "sft", "grpo"):
        assert "mIoU" in summary["metrics"][name]["grounding"]
    assert summary["grpo_reward"]["steps"] == pipeline.QUICK["grpo_steps"]
    table = (out / "summary.md").read_text()
    assert "| metric | untrained | sft | grpo |" in table
    assert "grounding/mIoU" in table and "GRPO training reward" in table and "eb_f1" in table
    assert set(summary["grpo_reward_columns"]) == {"eb_f1", "miou"}
    assert "| metric | untrained | sft | grpo |" in capsys.readouterr().out


def test_reward_trends_report_each_column_before_fusion():
    """An all-correct group's fused reward is event F1 x mIoU < 1, so the final reward can fall while the main
    reward rises: the summary reports both."""
    log = [
        {"reward": 0.30, "rewards/eb_f1/mean": 0.25, "rewards/miou/mean": 0.40, "rewards/fused_eb_f1_miou/mean": 0.3},
        {"reward": 0.28, "rewards/eb_f1/mean": 0.50, "rewards/miou/mean": 0.50, "rewards/fusion/fused_group_frac": 1},
        {"reward": 0.26, "rewards/eb_f1/mean": 0.75, "rewards/miou/mean": 0.60},
        {"reward": 0.24, "rewards/eb_f1/mean": 1.00, "rewards/miou/mean": 0.70},
        {"train_runtime": 3.0},
    ]
    assert pipeline.reward_trend(log) == {"first": 0.30, "last": 0.24, "steps": 4}
    columns = pipeline.column_trends(log)
    assert list(columns) == ["eb_f1", "miou"]
    assert columns["eb_f1"] == {"first": 0.25, "last": 1.00, "steps": 4}
    assert columns["miou"]["first"] == pytest.approx(0.40) and columns["miou"]["last"] == pytest.approx(0.70)
    assert pipeline.column_trends([]) == {} and pipeline.reward_trend([]) is None
