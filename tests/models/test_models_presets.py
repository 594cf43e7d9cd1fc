"""Tiny presets: built from configs, saved as ordinary checkpoints, reloaded through `from_pretrained`, and run on
real audio (a written wav, decoded by the data pipeline, through the family's feature extractor and PromptBuilder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rl_audio.data import load_audio
from rl_audio.models.families import ADAPTERS
from rl_audio.models.loading import load_model
from rl_audio.models.presets import PRESETS, build_preset, resolve_model_path
from rl_audio.models.prompting import PromptBuilder, pad_left
from rl_audio.models.timestamps import TimestampSpec

TINY = ["tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3"]
FAMILY = {"tiny-qwen2-audio": "qwen2_audio", "tiny-qwen2.5-omni": "qwen2_5_omni", "tiny-af3": "audio_flamingo3"}


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", TINY)
def test_preset_reloads_from_pretrained_and_runs_on_audio(name, tmp_path, write_wav):
    # build and save, then load through the same path as a real checkpoint directory
    built = build_preset(name, tmp_path / name, seed=3)
    assert (built / "config.json").exists() and (built / "model.safetensors").exists()
    assert json.loads((built / "rl_audio_preset.json").read_text())["seed"] == 3
    lm = load_model(str(built))
    assert lm.adapter.family == FAMILY[name]
    assert type(lm.adapter) is ADAPTERS[FAMILY[name]]
    n_params = sum(p.numel() for p in lm.model.parameters())
    assert n_params < 1_000_000, f"{name} is not tiny: {n_params} parameters"

    # weights survive the save/load round trip exactly (no re-initialisation of any tensor on load)
    reloaded = load_model(str(built))
    for key, value in _state(lm.model).items():
        assert torch.equal(value, reloaded.model.state_dict()[key]), key

    wavs = [load_audio(write_wav("a.wav", 2.3, seed=1)), load_audio(write_wav("b.wav", 1.1, seed=2))]
    builder = PromptBuilder(lm.adapter, TimestampSpec("text"))
    enc = builder.encode_prompts(wavs, ["What is heard?", "Is there a tone?"])
    ids, attention = pad_left(enc.prompt_ids, lm.adapter.tokenizer.pad_token_id)
    audio_kwargs = lm.adapter.model_audio_kwargs(enc.audio)
    lm.model.eval()
    with torch.no_grad():
        out = lm.model(input_ids=ids, attention_mask=attention, **audio_kwargs)
        assert out.logits.shape == (2, ids.shape[1], lm.model.config.get_text_config().vocab_size)
        assert torch.isfinite(out.logits).all()
        gen = lm.model.generate(
            input_ids=ids, attention_mask=attention, **audio_kwargs, max_new_tokens=4, do_sample=False
        )
    assert gen.shape[0] == 2 and 1 <= gen.shape[1] - ids.shape[1] <= 4
    assert torch.equal(gen[:, : ids.shape[1]], ids)

    # the audio reaches the model: other audio of the same lengths (same prompt ids) gives other logits
    other = [load_audio(write_wav("c.wav", 2.3, seed=3)), load_audio(write_wav("d.wav", 1.1, seed=4))]
    enc2 = builder.encode_prompts(other, ["What is heard?", "Is there a tone?"])
    assert enc2.prompt_ids == enc.prompt_ids
    with torch.no_grad():
        out2 = lm.model(input_ids=ids, attention_mask=attention, **lm.adapter.model_audio_kwargs(enc2.audio))
    assert not torch.allclose(out2.logits[:, -1], out.logits[:, -1])


@pytest.mark.parametrize("name", TINY)
def test_presets_are_deterministic_by_seed(name, tmp_path):
    a = load_model(str(build_preset(name, tmp_path / "a", seed=5))).model.state_dict()
    b = load_model(str(build_preset(name, tmp_path / "b", seed=5))).model.state_dict()
    c = load_model(str(build_preset(name, tmp_path / "c", seed=6))).model.state_dict()
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    random_init = [k for k in a if a[k].is_floating_point() and a[k].std() > 0]
    assert random_init, "no randomly initialised tensor"
    assert all(not torch.equal(a[k], c[k]) for k in random_init if "embed_positions" not in k)


def test_resolve_model_path_caches_presets_by_seed(rl_audio_cache):
    p0 = resolve_model_path("tiny-af3", seed=0)
    assert p0.startswith(str(rl_audio_cache))
    assert resolve_model_path("tiny-af3", seed=0) == p0
    assert resolve_model_path("tiny-af3", seed=1) != p0
    assert resolve_model_path("/some/checkpoint") == "/some/checkpoint"
    with pytest.raises(ValueError, match="unknown preset 'tiny-nope'.*tiny-af3"):
        build_preset("tiny-nope", rl_audio_cache / "x")
    assert set(TINY) <= set(PRESETS)


def test_a_preset_built_on_a_non_zero_rank_holds_its_model(rl_audio_cache, monkeypatch, caplog):
    # Under `accelerate launch` every rank may build the preset, and whichever finishes first is renamed into place;
    # transformers' save_pretrained writes the model from global rank 0 only.
    import sys

    from transformers import PreTrainedModel

    saving = sys.modules[PreTrainedModel.should_save_on_this_rank.__module__]  # transformers.distributed.mixin
    monkeypatch.setattr(saving, "_is_torch_distributed_initialized", lambda: True)
    monkeypatch.setattr(saving, "_get_torch_distributed_rank", lambda: 1)
    assert not PreTrainedModel.should_save_on_this_rank(None, True)  # the patch reaches transformers' own check
    out = Path(resolve_model_path("tiny-qwen2-audio", seed=5))
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()

    # a directory left by an older build under accelerate launch (marker, no model) is rebuilt, not used
    (out / "config.json").unlink()
    (out / "model.safetensors").unlink()
    with caplog.at_level("WARNING", logger="rl_audio.models.presets"):
        assert resolve_model_path("tiny-qwen2-audio", seed=5) == str(out)
    assert "incomplete" in caplog.text
    assert load_model(str(out)).adapter.family == "qwen2_audio"


def test_a_preset_built_inside_a_zero3_run_has_whole_tensors(tmp_path):
    # Inside a ZeRO-3 run (its TrainingArguments made), transformers builds models partitioned to empty placeholders.
    from transformers.integrations.deepspeed import HfDeepSpeedConfig, is_deepspeed_zero3_enabled

    ds = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    try:
        assert is_deepspeed_zero3_enabled()
        built = build_preset("tiny-qwen2.5-omni", tmp_path / "p", seed=0)
        assert is_deepspeed_zero3_enabled()  # the run's config is back
    finally:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    del ds
    lm = load_model(str(built))
    assert all(p.numel() > 0 for p in lm.model.parameters())


MINI = {"mini-qwen2-audio": "qwen2_audio", "mini-af3": "audio_flamingo3", "mini-qwen2.5-omni": "qwen2_5_omni"}


def _encoder_spread(lm, family, wavs) -> float:
    """Mean distance of each clip's encoder output from the clips' mean output, relative to the output's norm,
    over the frames all clips share: how much the encoder's output depends on the audio."""
    audio, _ = lm.adapter.encode_audio(wavs)
    feats, mask = audio.flat()
    encoder = lm.adapter.audio_encoder(lm.model).eval()
    with torch.no_grad():
        if family == "qwen2_5_omni":  # packed input: windows concatenated in time
            lens = mask.sum(-1)
            packed = torch.cat([feats[i][:, : int(lens[i])] for i in range(len(wavs))], dim=1)
            _, after_cnn = encoder._get_feat_extract_output_lengths(lens)
            h = encoder(packed, feature_lens=lens, aftercnn_lens=after_cnn).last_hidden_state
            h = h.reshape(len(wavs), -1, h.shape[-1])
        elif family == "qwen2_audio":
            h = encoder(feats).last_hidden_state
        else:
            h = encoder(feats, input_features_mask=mask).last_hidden_state
    h = h[:, :100]  # (N, T, D): the first 4 s (Qwen2-Audio pools to 25 frames/s; others 50)
    return float((h - h.mean(0, keepdim=True)).norm(dim=-1).mean() / h.norm(dim=-1).mean())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MINI))
def test_mini_preset_has_whisper_weights_and_hears(name, tmp_path):
    from rl_audio.models.ct2 import default_whisper_dir, whisper_encoder_state_dict
    from rl_audio.models.presets import _BUILDERS

    built = build_preset(name, tmp_path / name, seed=0)
    record = json.loads((built / "rl_audio_preset.json").read_text())
    assert record["encoder"] == "whisper-tiny.en"
    lm = load_model(str(built))  # through from_pretrained, as a real checkpoint
    assert lm.adapter.family == MINI[name]
    encoder = lm.adapter.audio_encoder(lm.model)
    whisper = whisper_encoder_state_dict(default_whisper_dir())
    mine = encoder.state_dict()
    torch.testing.assert_close(mine["layers.3.fc2.weight"], whisper["layers.3.fc2.weight"])
    torch.testing.assert_close(mine["conv1.weight"], whisper["conv1.weight"])
    if MINI[name] != "qwen2_5_omni":
        assert lm.adapter.window_seconds == 10.0  # the preset's extractor sets the window
        n = mine["embed_positions.weight"].shape[0]
        assert n == 500
        torch.testing.assert_close(mine["embed_positions.weight"], whisper["embed_positions.weight"][:n])

    # hears: different clips give different encoder outputs, far more than the same architecture with
    # transformers' own random initialisation (Qwen2.5-Omni's collapses to positions) -- or, for the families whose
    # default init already spreads, at least as much
    t = torch.arange(int(4.5 * 16000)) / 16000
    rng = torch.Generator().manual_seed(0)
    wavs = [  # a tone, a chirp, noise, a tone burst in noise
        (0.3 * torch.sin(2 * torch.pi * 440 * t)).numpy(),
        (0.3 * torch.sin(2 * torch.pi * (300 + 400 * t) * t)).numpy(),
        (0.1 * torch.randn(t.shape, generator=rng)).numpy(),
        (0.02 * torch.randn(t.shape, generator=rng) + 0.3 * torch.sin(2 * torch.pi * 1200 * t) * (t > 2)).numpy(),
    ]
    torch.manual_seed(0)
    random_model, _ = _BUILDERS[MINI[name]](PRESETS[name])
    random_lm = type(lm)(random_model, lm.adapter, lm.path, [], None)
    pretrained, random_init = _encoder_spread(lm, MINI[name], wavs), _encoder_spread(random_lm, MINI[name], wavs)
    assert pretrained > 0.2, pretrained
    if MINI[name] == "qwen2_5_omni":
        assert pretrained > 5 * random_init, (pretrained, random_init)
