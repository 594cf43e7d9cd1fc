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
    assert "grounding/mIoU" in table and "GRPO training reward" in table
    assert "| metric | untrained | sft | grpo |" in capsys.readouterr().out
