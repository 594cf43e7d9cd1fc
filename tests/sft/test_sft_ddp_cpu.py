"""DDP on CPU processes: `accelerate_configs/ddp.yaml` (a MULTI_GPU config) with two CPU processes trains one
synchronised run, and several processes that accelerate would not group are refused before anything loads.

Without `rl_audio.distributed.use_cpu_processes`, accelerate settled on `DistributedType.NO` on a CPU: two
independent trainings, with the SFT loss doubled (12.08 vs 6.04)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType
from safetensors.torch import load_file

from rl_audio.distributed import ProcessCountError, check_processes, use_cpu_processes

ROOT = Path(__file__).resolve().parents[2]


NO_GPU = pytest.mark.skipif(
    torch.cuda.is_available() or torch.accelerator.current_accelerator() is not None, reason="a CPU-only machine"
)


@NO_GPU
def test_several_processes_on_the_cpu_are_told_to_use_it(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "False")  # what `accelerate launch` sets for a MULTI_GPU config
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    use_cpu_processes()
    assert os.environ["ACCELERATE_USE_CPU"] == "true"


@NO_GPU
def test_one_process_and_deepspeed_launches_are_left_alone(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_CPU", "False")
    monkeypatch.setenv("WORLD_SIZE", "1")
    use_cpu_processes()
    assert os.environ["ACCELERATE_USE_CPU"] == "False"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # ACCELERATE_USE_CPU would turn DeepSpeed off
    use_cpu_processes()
    assert os.environ["ACCELERATE_USE_CPU"] == "False"


def test_processes_that_would_train_alone_are_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    alone = SimpleNamespace(distributed_state=SimpleNamespace(distributed_type=DistributedType.NO), world_size=2)
    with pytest.raises(ProcessCountError, match=r"2 processes were launched .* each would train alone.*ddp\.yaml"):
        check_processes(alone)
    check_processes(SimpleNamespace(distributed_state=SimpleNamespace(distributed_type="MULTI_CPU"), world_size=2))
    monkeypatch.setenv("WORLD_SIZE", "1")
    check_processes(alone)  # one process: nothing to synchronise


def _run(tmp_path: Path, name: str, launcher: list[str], batch: int, default_data_args, env) -> Path:
    out = tmp_path / name
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--mixed_precision", "no", *launcher]
    cmd += ["-m", "rl_audio.sft", "recipes/cpu/spotsound.yaml", "--output_dir", str(out), *default_data_args]
    # SGD and no dropout: the update is a plain function of the gradient, so any difference in it shows in step 2
    cmd += ["--max_steps", "2", "--save_steps", "2", "--logging_steps", "1", "--lora_dropout", "0"]
    cmd += ["--warmup_steps", "0", "--optim", "sgd", "--learning_rate", "0.5", "--max_grad_norm", "1.0"]
    cmd += ["--per_device_train_batch_size", str(batch)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-8000:]
    return out


def _log(out: Path) -> list[tuple[float, float]]:
    history = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    return [(h["loss"], h["grad_norm"]) for h in history if "loss" in h]


@pytest.mark.slow
def test_two_cpu_processes_with_ddp_yaml_train_as_one_run(tmp_path, default_data_args, subprocess_env):
    """Two processes with batch 1 each == one process with batch 2: the same rows per step (accelerate shards the
    batches in order), so with synchronised gradients the losses, gradient norms and trained adapter agree."""
    ddp = ["--config_file", "accelerate_configs/ddp.yaml", "--num_processes", "2"]
    two = _run(tmp_path, "two", ddp, 1, default_data_args, subprocess_env)
    one = _run(tmp_path, "one", ["--num_processes", "1"], 2, default_data_args, subprocess_env)

    assert (two / "checkpoint-2" / "rng_state_1.pth").exists()  # two ranks took part
    (loss1, _), (loss2, _) = _log(two)
    assert 4 < loss1 < 8, loss1  # not doubled: ln(400 rows) is 6.0
    for (a, ga), (b, gb) in zip(_log(two), _log(one), strict=True):
        assert a == pytest.approx(b, rel=1e-5) and ga == pytest.approx(gb, rel=1e-4)
    trained = load_file(two / "final" / "adapter" / "adapter_model.safetensors")
    alone = load_file(one / "final" / "adapter" / "adapter_model.safetensors")
    assert trained.keys() == alone.keys()
    assert all(torch.allclose(trained[k], alone[k], atol=1e-6) for k in trained)
