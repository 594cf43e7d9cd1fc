"""Each family learns: the SFT loss on a tiny fixed set (4 rows) drops well below where it starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from rl_audio.cli import parse_recipe
from rl_audio.configs import AudioSFTConfig
from rl_audio.data import load_manifest, write_manifest
from rl_audio.sft import build_trainer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def four_rows(default_data, tmp_path_factory):
    # SpotSound's rows: grounding for present events, presence questions for present and absent ones
    rows = load_manifest(default_data["train"])
    grounding = [r for r in rows if r["task"] == "grounding"][:2]
    absent = [r for r in rows if r["task"] == "existence" and r["exists"] is False][:1]
    present = [r for r in rows if r["task"] == "existence" and r["exists"] is True][:1]
    rows = grounding + absent + present
    assert len(rows) == 4 and all(r["windows"] for r in grounding)
    return write_manifest(rows, tmp_path_factory.mktemp("overfit") / "four.jsonl", relative_audio=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3"])
def test_loss_drops_on_a_tiny_set(tmp_path, four_rows, name):
    cfg = parse_recipe(
        AudioSFTConfig,
        [
            str(ROOT / "recipes" / "cpu" / "spotsound.yaml"),
            "--model_name_or_path", name, "--train_manifests", str(four_rows), "--output_dir", str(tmp_path),
            "--use_peft", "false", "--freeze_audio_encoder", "true", "--learning_rate", "3e-3",
            "--lr_scheduler_type", "constant", "--warmup_steps", "0", "--weight_decay", "0",
            "--max_steps", "25", "--per_device_train_batch_size", "4", "--logging_steps", "1",
            "--save_strategy", "no", "--activation_checkpointing", "false",
        ],
    )  # fmt: skip
    trainer, _ = build_trainer(cfg)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 25
    initial = sum(h["loss"] for h in logs[:2]) / 2
    final = sum(h["loss"] for h in logs[-3:]) / 3
    assert final < 0.5 * initial, f"{name}: loss {initial:.3f} -> {final:.3f}"
    assert logs[-1]["mean_token_accuracy"] > logs[0]["mean_token_accuracy"]
