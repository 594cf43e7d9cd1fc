"""One loader for every model of a run: the GRPO policy and its reference model go through `load_model_for` with the
recipe's settings, and SFT and GRPO check sequence lengths against the same position limit."""

from __future__ import annotations

import pytest

import rl_audio.models.loading as loading
from rl_audio.cli import parse_recipe
from rl_audio.configs import AudioGRPOConfig, AudioSFTConfig
from rl_audio.data import build_default_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("loading_data")
    build_default_dataset(out, num_train=2, num_test=2, min_len=3.0, max_len=4.0, progress=False)
    return out


def common(tmp_path, data_dir, *overrides):
    return [
        "--output_dir", str(tmp_path / "out"), "--data_dir", str(data_dir), "--default_data_clips", "2",
        "--tasks", "[grounding]", "--report_to", "none", "--save_strategy", "no", "--seed", "0", *overrides,
    ]  # fmt: skip


def test_policy_and_reference_load_through_one_function_alike(tmp_path, data_dir, monkeypatch):
    from rl_audio.grpo import build_trainer

    calls = []
    real = loading.load_model

    def recording(name_or_path, **kwargs):
        calls.append((name_or_path, kwargs))
        return real(name_or_path, **kwargs)

    monkeypatch.setattr(loading, "load_model", recording)
    args = common(
        tmp_path, data_dir, "--model_name_or_path", "tiny-qwen2-audio", "--attn_implementation", "eager",
        "--model_dtype", "float32", "--beta", "0.04", "--rewards", "[miou]", "--num_generations", "2",
        "--per_device_train_batch_size", "2", "--max_completion_length", "4", "--max_steps", "1",
        "--freeze_audio_encoder", "true",
    )  # fmt: skip
    trainer, lm = build_trainer(parse_recipe(AudioGRPOConfig, args))
    assert trainer.ref_model is not None
    assert len(calls) == 2  # the policy, then the reference model
    (policy_path, policy), (ref_path, ref) = calls
    assert ref_path == lm.path
    assert policy["attn_implementation"] == ref["attn_implementation"] == "eager"
    assert trainer.ref_model.config._attn_implementation == lm.model.config._attn_implementation == "eager"
    # everything but the encoder freeze (the reference is never trained) is the recipe's, for both
    assert policy.pop("freeze_audio_encoder") and not ref.pop("freeze_audio_encoder")
    assert policy == ref


def test_sft_max_length_is_checked_against_the_model_positions(tmp_path, data_dir):
    from rl_audio.sft import build_trainer

    limit = 32768  # the tiny presets' max_position_embeddings
    args = common(tmp_path, data_dir, "--model_name_or_path", "tiny-qwen2-audio", "--max_steps", "1")
    with pytest.raises(ValueError, match=rf"max_length {limit + 1} exceeds the model's {limit} positions"):
        build_trainer(parse_recipe(AudioSFTConfig, [*args, "--max_length", str(limit + 1)]))
    trainer, lm = build_trainer(parse_recipe(AudioSFTConfig, [*args, "--max_length", str(limit)]))
    assert loading.max_positions(lm.model) == limit
