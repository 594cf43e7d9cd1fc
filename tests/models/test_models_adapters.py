"""Family adapters name the right parts of each model: audio encoder, aligner and language model are disjoint, and
freezing, `trainable_modules` and LoRA act on the part they name (TGSR Table 5 trains the aligner alone)."""

from __future__ import annotations

import pytest
import torch

from rl_audio.cli import parse_recipe
from rl_audio.configs import AudioSFTConfig
from rl_audio.models.loading import load_model
from rl_audio.models.training import load_for_training

TINY = ["tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3"]


def _ids(module: torch.nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


@pytest.mark.parametrize("name", TINY)
def test_parts_are_disjoint_and_cover_the_model(name):
    lm = load_model(name)
    a, model = lm.adapter, lm.model
    encoder, aligner, language = a.audio_encoder(model), a.aligner(model), a.language_model(model)
    assert not _ids(encoder) & _ids(language)
    assert not _ids(aligner) & _ids(language)
    assert model.get_input_embeddings().weight in list(language.parameters())
    # the aligner maps to the LM width
    out_features = [m.out_features for m in aligner.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert out_features == model.config.get_text_config().hidden_size
    # everything that is neither audio nor LM is small: lm_head, and Omni's unused vision tower
    rest = set(_ids(model)) - _ids(encoder) - _ids(aligner) - _ids(language)
    assert model.get_output_embeddings().weight is not None and id(model.get_output_embeddings().weight) in rest


def _cfg(tmp_path, name, *extra):
    return parse_recipe(AudioSFTConfig, ["--model_name_or_path", name, "--output_dir", str(tmp_path), *extra])


@pytest.mark.parametrize("name", TINY)
def test_trainable_aligner_only(tmp_path, name):
    lm = load_for_training(_cfg(tmp_path, name, "--trainable_modules", "[aligner]"))
    trainable = {id(p) for p in lm.model.parameters() if p.requires_grad}
    assert trainable == _ids(lm.adapter.aligner(lm.model))


@pytest.mark.parametrize("name", TINY)
def test_freeze_audio_encoder(tmp_path, name):
    lm = load_for_training(_cfg(tmp_path, name, "--freeze_audio_encoder", "true"))
    encoder = lm.adapter.audio_encoder(lm.model)
    assert not any(p.requires_grad for p in encoder.parameters())
    assert all(p.requires_grad for p in lm.adapter.language_model(lm.model).parameters())


@pytest.mark.parametrize("name", TINY)
def test_lora_wraps_the_language_model_only(tmp_path, name):
    lm = load_for_training(_cfg(tmp_path, name, "--use_peft", "true", "--lora_target_modules", "[q_proj, v_proj]"))
    language = lm.adapter.language_model(lm.model)
    lora_in_lm = {n for n, _ in language.named_parameters() if "lora_" in n}
    lora_all = {n for n, p in lm.model.named_parameters() if "lora_" in n}
    assert lora_in_lm and len(lora_in_lm) == len(lora_all)
    assert all(p.requires_grad == ("lora_" in n) for n, p in lm.model.named_parameters())
    # one A and one B per wrapped projection per layer
    n_layers = lm.model.config.get_text_config().num_hidden_layers
    assert len(lora_all) == 2 * 2 * n_layers


def test_unknown_trainable_module_lists_the_parts(tmp_path):
    with pytest.raises(ValueError, match=r"'projektor' matches no parameter; use \['aligner', 'audio_encoder'"):
        load_for_training(_cfg(tmp_path, "tiny-af3", "--trainable_modules", "[projektor]"))
