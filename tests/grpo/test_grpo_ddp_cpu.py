"""GRPO with `accelerate_configs/ddp.yaml` on two CPU processes: one data-parallel run. Before
`rl_audio.distributed.use_cpu_processes`, the two processes trained alone and the fusion's gathered rewards did not
line up with the groups (it raised in `variance_gated`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_cpu_processes_with_ddp_yaml(tmp_path, default_data_args, subprocess_env):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--mixed_precision", "no",
           "--config_file", "accelerate_configs/ddp.yaml", "--num_processes", "2",
           "-m", "rl_audio.grpo", "recipes/cpu/grpo_timepro.yaml", "--output_dir", str(out), *default_data_args,
           "--max_steps", "2", "--save_steps", "2", "--per_device_train_batch_size", "2"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-8000:]
    checkpoint = out / "checkpoint-2"
    assert (checkpoint / "rng_state_0.pth").exists() and (checkpoint / "rng_state_1.pth").exists()  # two ranks
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2]
    assert (out / "final" / "model.safetensors").is_file()
