"""The SFT entry point end to end through `accelerate launch`: each CPU recipe with one process, and two CPU
processes under DeepSpeed ZeRO-2 and ZeRO-3 with the project's accelerate configs (NOTES.md: ZeRO runs on the CPU
with the gloo backend, which rl_audio selects itself when no GPU is found)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rl_audio.models.loading import load_model
from rl_audio.models.timestamps import TimestampSpec

ROOT = Path(__file__).resolve().parents[2]


def launch(launcher_args: list[str], recipe: str, out: Path, extra: list[str], env: dict) -> None:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--mixed_precision", "no", *launcher_args]
    cmd += ["-m", "rl_audio.sft", recipe, "--output_dir", str(out), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-8000:]


def state_dict(path) -> dict[str, torch.Tensor]:
    return load_model(str(path)).model.state_dict()


def differs(a: dict, b: dict, part: str) -> bool:
    keys = [k for k in a if part in k and a[k].is_floating_point()]
    assert keys, part
    return any(not torch.equal(a[k], b[k]) for k in keys)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spotsound", "timepro_sft", "sta"])
def test_cpu_recipe_through_accelerate(tmp_path, name, default_data_args, sta_manifest, subprocess_env):
    out = tmp_path / "out"
    extra = [*default_data_args, "--max_steps", "2", "--save_steps", "2", "--logging_steps", "1"]
    if name == "sta":  # real STA rows (the recipe's default is grounding rows; see its header)
        extra += ["--train_manifests", str(sta_manifest), "--tasks", "sta", "--per_device_train_batch_size", "2"]
    launch(["--num_processes", "1"], f"recipes/cpu/{name}.yaml", out, extra, subprocess_env)

    final = out / "final"
    info = json.loads((final / "rl_audio.json").read_text())
    assert info["stage"] == "sft" and info["answer_style"] == {"timepro_sft": "timepro", "sta": "tgsr"}.get(
        name, "spotsound"
    )
    spec = TimestampSpec(**info["timestamps"])
    for card in (final / "README.md", out / "README.md"):  # rl_audio's card, not TRL's "fine-tuned version of [None]"
        text = card.read_text()
        assert "[None]" not in text and "SFT checkpoint of" in text and f"`recipes/cpu/{name}.yaml`" in text
        assert "| timestamps |" in text and "| steps | 2 |" in text
    assert ("TimePro-RL (arXiv:2604.13715)" in text) == (name == "timepro_sft")
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2]
    lm = load_model(str(final), timestamps=spec)  # a plain checkpoint: grpo and evaluate load it the same way
    trained = lm.model.state_dict()
    base = load_model(info["base_model"], timestamps=spec).model.state_dict()
    assert trained.keys() == base.keys()
    if name == "sta":
        # TGSR Table 5: the aligner trained, the LLM and the audio encoder did not
        assert info["lora_adapter"] is None and not (final / "adapter").exists()
        aligner = lm.adapter.aligner(lm.model)
        prefix = next(n for n, m in lm.model.named_modules() if m is aligner) + "."
        keys = [k for k in trained if k.startswith(prefix)]
        assert keys and all(not torch.equal(trained[k], base[k]) for k in keys)
        others = [k for k in trained if k not in keys and trained[k].is_floating_point()]
        assert all(torch.equal(trained[k], base[k]) for k in others)
    else:
        # LoRA: the adapter next to the merged weights, which differ from the base model's in the LM only
        assert info["lora_adapter"] == "adapter"
        assert (final / "adapter" / "adapter_config.json").exists()
        assert (final / "adapter" / "adapter_model.safetensors").exists()
        assert differs(trained, base, "q_proj")
        assert not differs(trained, base, "audio_tower")
    if spec.mode == "tokens":
        assert len(lm.timestamp_ids) == 750


@pytest.mark.slow
@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_two_cpu_processes_under_deepspeed(tmp_path, zero, default_data_args, subprocess_env):
    """ZeRO-2 with LoRA and text timestamps; ZeRO-3 with full fine-tuning and timestamp tokens, whose frozen rows
    must survive sharding, weight decay and the gathered save."""
    out = tmp_path / "out"
    extra = [*default_data_args, "--max_steps", "2", "--save_steps", "2", "--logging_steps", "1"]
    extra += ["--per_device_train_batch_size", "2"]
    if zero == "zero2":
        recipe = "recipes/cpu/spotsound.yaml"
    else:
        recipe = "recipes/cpu/timepro_sft.yaml"
        extra += ["--use_peft", "false", "--weight_decay", "0.1", "--learning_rate", "1e-2"]
    launch(
        ["--config_file", f"accelerate_configs/{zero}.yaml", "--num_processes", "2"],
        recipe,
        out,
        extra,
        subprocess_env,
    )

    checkpoint = out / "checkpoint-2"
    assert (checkpoint / "rng_state_0.pth").exists() and (checkpoint / "rng_state_1.pth").exists()  # two ranks
    assert any(p.name.startswith("global_step") for p in checkpoint.iterdir())  # DeepSpeed's own checkpoint
    losses = [
        h["loss"] for h in json.loads((checkpoint / "trainer_state.json").read_text())["log_history"] if "loss" in h
    ]
    assert len(losses) == 2 and all(0 < x < 20 for x in losses)
    info = json.loads((out / "final" / "rl_audio.json").read_text())
    spec = TimestampSpec(**info["timestamps"])
    final = load_model(str(out / "final"), timestamps=spec)
    base = load_model(info["base_model"], timestamps=spec)
    if zero == "zero3":
        ids = base.timestamp_ids
        assert final.timestamp_ids == ids
        for get in ("get_input_embeddings", "get_output_embeddings"):
            trained, initial = getattr(final.model, get)().weight, getattr(base.model, get)().weight
            assert torch.equal(trained[ids], initial[ids]), get
            assert not torch.equal(trained[: ids[0]], initial[: ids[0]]), get
    else:
        assert differs(final.model.state_dict(), base.model.state_dict(), "q_proj")


# Resume is exact with two processes: DDP (LoRA), ZeRO-2 (LoRA) and ZeRO-3 (full fine-tune, timestamp tokens). Each
# setup trains 4 steps uninterrupted; a copy of its checkpoint-2 in a fresh output_dir is relaunched with the same
# command (auto-resume), and steps 3-4 must log the same losses and end in the same weights. The one-process setups
# are tests/sft/test_sft_errors.py (full fine-tunes, all families), tests/models/test_stock_loading.py (token-mode
# LoRA) and tests/grpo/test_grpo_trainer.py.
SETUPS = {
    "ddp": ("recipes/cpu/spotsound.yaml", ["--learning_rate", "5e-3"]),
    "zero2": ("recipes/cpu/spotsound.yaml", ["--learning_rate", "5e-3"]),
    "zero3": ("recipes/cpu/timepro_sft.yaml", ["--use_peft", "false", "--learning_rate", "1e-2"]),
}


def _losses(out) -> dict[int, float]:
    history = json.loads((out / "final" / "log_history.json").read_text())
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def _weights(out) -> dict[str, torch.Tensor]:
    spec = TimestampSpec(**json.loads((out / "final" / "rl_audio.json").read_text())["timestamps"])
    return load_model(str(out / "final"), timestamps=spec).model.state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("setup", list(SETUPS))
def test_two_process_resume_matches_an_uninterrupted_run(tmp_path, setup, default_data_args, subprocess_env):
    recipe, extra = SETUPS[setup]
    extra = [*default_data_args, *extra, "--max_steps", "4", "--save_steps", "2", "--logging_steps", "1"]
    extra += ["--per_device_train_batch_size", "2", "--save_total_limit", "3"]
    launcher = ["--config_file", f"accelerate_configs/{setup}.yaml", "--num_processes", "2"]

    whole = tmp_path / "whole"
    launch(launcher, recipe, whole, extra, subprocess_env)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(whole / "checkpoint-2", resumed / "checkpoint-2")
    launch(launcher, recipe, resumed, extra, subprocess_env)

    a, b = _losses(whole), _losses(resumed)
    assert sorted(a) == [1, 2, 3, 4] and sorted(b) == [1, 2, 3, 4], (a, b)  # steps 1-2 from the copied state
    assert a[1] != a[4]  # the weights moved
    for step in (3, 4):
        assert b[step] == pytest.approx(a[step], rel=1e-5), (setup, step, a, b)
    wa, wb = _weights(whole), _weights(resumed)
    assert wa.keys() == wb.keys()
    worst = max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa if wa[k].is_floating_point())
    assert worst <= 1e-6, (setup, worst)
