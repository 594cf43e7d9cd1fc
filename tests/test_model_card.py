"""The model card names what TRL's generic one does not: base model, recipe, timestamps, rewards, papers."""

from rl_audio.cli import parse_recipe
from rl_audio.configs import AudioGRPOConfig, AudioSFTConfig
from rl_audio.runs import model_card


def test_grpo_card_names_recipe_overrides_rewards_and_paper():
    cfg = parse_recipe(AudioGRPOConfig, ["recipes/timepro.yaml", "--learning_rate", "2e-6"])
    info = {"stage": "grpo", "base_model": cfg.model_name_or_path, "family": "qwen2_audio",
            "answer_style": cfg.answer_style, "rewards": cfg.rewards, "lora_adapter": "adapter"}  # fmt: skip
    card = model_card(cfg, info)
    assert "GRPO checkpoint of `outputs/timepro_sft/final`" in card
    assert "base_model:" not in card  # a local path is not a hub id
    assert "| recipe | `recipes/timepro.yaml` |" in card and "`learning_rate=2e-06`" in card
    assert "`eb_f1` x 1, `miou` x 1" in card and "TimePro-RL eq. 2" in card
    assert "every 0.04 s" in card and "TimePro-RL (arXiv:2604.13715)" in card and "SpotSound" not in card


def test_sft_card_with_a_hub_base_model():
    cfg = parse_recipe(
        AudioSFTConfig, ["recipes/spotsound.yaml", "--model_name_or_path", "Qwen/Qwen2-Audio-7B-Instruct"]
    )
    card = model_card(cfg, {"stage": "sft", "base_model": cfg.model_name_or_path, "answer_style": cfg.answer_style})
    assert "base_model: Qwen/Qwen2-Audio-7B-Instruct" in card and "SFT checkpoint of" in card
    assert "SpotSound (arXiv:2604.13023)" in card and "| rewards |" not in card


def test_help_names_the_entry_point_and_sets_training_keys_apart(capsys):
    import pytest

    from rl_audio.evaluate.config import AudioEvalConfig

    for cls, entry in (
        (AudioEvalConfig, "rl_audio.evaluate"),
        (AudioSFTConfig, "rl_audio.sft"),
        (AudioGRPOConfig, "rl_audio.grpo"),
    ):
        with pytest.raises(SystemExit):
            parse_recipe(cls, ["--help"])
        text = capsys.readouterr().out
        assert text.startswith(f"usage: python -m {entry} [RECIPE.yaml]") and "<entry>" not in text
        assert ("  --use_peft:" in text) == (cls is not AudioEvalConfig)
        assert ("reused here, and ignored: " in text) == (cls is AudioEvalConfig)
