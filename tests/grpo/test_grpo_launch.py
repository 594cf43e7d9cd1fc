"""The GRPO entry point through `accelerate launch`: the CPU recipes, and two processes under ZeRO-2 and ZeRO-3
with groups that span both processes (per-device batch 2, 4 generations per prompt)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def launch(args: list[str], tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def logged_steps(out: Path) -> list[dict]:
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    return [h for h in state["log_history"] if "loss" in h]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["recipes/cpu/grpo_timepro.yaml", "recipes/cpu/grpo_tgsr.yaml"])
def test_cpu_recipe_runs_through_accelerate(tmp_path, recipe):
    out = tmp_path / "out"
    launch(
        ["--num_processes", "1", "--mixed_precision", "no", "-m", "rl_audio.grpo", recipe, "--output_dir", str(out),
         "--data_dir", str(tmp_path / "data"), "--max_steps", "2", "--save_steps", "2"],
        tmp_path,
    )  # fmt: skip
    info = json.loads((out / "final" / "rl_audio.json").read_text())
    assert info["stage"] == "grpo"
    card = (out / "final" / "README.md").read_text()
    assert "GRPO checkpoint of" in card and "[None]" not in card and f"`{recipe}`" in card
    assert "| rewards |" in card and all(f"`{name}`" in card for name in info["rewards"])
    steps = logged_steps(out)
    assert [h["step"] for h in steps] == [1, 2]
    assert all(any(k.startswith("rewards/") and k.endswith("/mean") for k in h) for h in steps)
    from rl_audio.models.loading import load_model

    assert load_model(str(out / "final")).model is not None


@pytest.mark.slow
# ZeRO-3 on the Qwen2.5-Omni thinker: its encoder cache calls the tower's `proj` (the aligner) outside the tower's
# own forward, which must still gather the partitioned weights.
@pytest.mark.parametrize("zero,preset", [("zero2", "tiny-qwen2-audio"), ("zero3", "tiny-qwen2.5-omni")])
def test_two_processes_under_deepspeed(tmp_path, zero, preset):
    out = tmp_path / "out"
    launch(
        ["--config_file", f"accelerate_configs/{zero}.yaml", "--num_processes", "2", "--mixed_precision", "no",
         "-m", "rl_audio.grpo", "recipes/cpu/grpo_timepro.yaml", "--output_dir", str(out),
         "--data_dir", str(tmp_path / "data"), "--max_steps", "2", "--save_steps", "2",
         "--per_device_train_batch_size", "2", "--model_name_or_path", preset, "--freeze_audio_encoder", "true"],
        tmp_path,
    )  # fmt: skip
    steps = logged_steps(out)
    assert [h["step"] for h in steps] == [1, 2]
    # the fusion rate is logged beside the rewards, computed on the gathered (cross-process) groups
    assert all(0.0 <= h["rewards/fusion/fused_group_frac"] <= 1.0 for h in steps)
    assert (out / "final" / "model.safetensors").exists()
