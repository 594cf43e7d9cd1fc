"""The seed applies before any random initialisation: two LoRA runs with one seed start from the same adapter and
train to the same tensors; another seed starts elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rl_audio.cli import parse_recipe
from rl_audio.configs import AudioSFTConfig
from rl_audio.models.training import load_for_training
from rl_audio.sft import build_trainer

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "recipes" / "cpu" / "spotsound.yaml")  # LoRA r 8 on q/k/v/o


def _cfg(tmp_path, default_data_args, seed, *extra):
    args = [RECIPE, "--output_dir", str(tmp_path / f"out{seed}"), "--seed", str(seed), *default_data_args, *extra]
    return parse_recipe(AudioSFTConfig, args)


def _lora(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_lora_starts_from_the_seed(tmp_path, default_data_args):
    torch.manual_seed(123)  # whatever the global generator held before must not matter
    a = _lora(load_for_training(_cfg(tmp_path, default_data_args, 0)).model)
    torch.rand(7)
    b = _lora(load_for_training(_cfg(tmp_path, default_data_args, 0)).model)
    c = _lora(load_for_training(_cfg(tmp_path, default_data_args, 1)).model)
    assert a and a.keys() == b.keys() == c.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert any(not torch.equal(a[n], c[n]) for n in a if "lora_A" in n)


@pytest.mark.slow
def test_two_lora_runs_with_one_seed_are_identical(tmp_path, default_data_args):
    runs = []
    for _ in range(2):
        torch.rand(3)
        cfg = _cfg(tmp_path, default_data_args, 0, "--max_steps", "3", "--logging_steps", "1", "--save_strategy", "no")
        trainer, lm = build_trainer(cfg)
        trainer.train()
        runs.append(([h["loss"] for h in trainer.state.log_history if "loss" in h], _lora(lm.model)))
    (loss_a, weights_a), (loss_b, weights_b) = runs
    assert len(loss_a) == 3 and loss_a == loss_b
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
