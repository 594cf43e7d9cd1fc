"""Outputs load with stock transformers and PEFT: every saved `config.json` names a transformers class, the family's
transformers class loads `final/` and full checkpoints, and `peft.PeftModel.from_pretrained` on the stock base loads
LoRA adapters (`final/adapter`, `checkpoint-N`) with as many embedding rows as the tokenizer has tokens, the
timestamp rows included (docs/models.md, "Loading outputs without rl_audio")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from peft import PeftModel
from transformers import AutoConfig, AutoTokenizer

from rl_audio.cli import parse_recipe
from rl_audio.configs import AudioSFTConfig
from rl_audio.runs import save_final
from rl_audio.sft import build_trainer
from rl_audio.trainers.card import STOCK_CLASSES, stock_loading_section

ROOT = Path(__file__).resolve().parents[2]
STOCK = {  # model_type -> the transformers class that loads it
    "qwen2_audio": "Qwen2AudioForConditionalGeneration",
    "qwen2_5_omni_thinker": "Qwen2_5OmniThinkerForConditionalGeneration",
    "audioflamingo3": "AudioFlamingo3ForConditionalGeneration",
}
PRESETS = ["tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3"]


def train(tmp_path: Path, default_data_args, preset: str, mode: str, lora: bool) -> Path:
    """One SFT step with a checkpoint, then `final/`; returns output_dir."""
    out = tmp_path / f"{preset}-{mode}-{'lora' if lora else 'full'}"
    cfg = parse_recipe(
        AudioSFTConfig,
        [str(ROOT / "recipes" / "cpu" / "spotsound.yaml"), "--output_dir", str(out), *default_data_args,
         "--model_name_or_path", preset, "--timestamp_mode", mode, "--use_peft", str(lora).lower(),
         "--max_steps", "1", "--save_steps", "1", "--per_device_train_batch_size", "1", "--learning_rate", "1e-2"],
    )  # fmt: skip
    trainer, lm = build_trainer(cfg)
    trainer.train()
    save_final(trainer, lm, cfg, extra_info={"stage": "sft"})
    return out


def stock_class(path: Path):
    """The class `config.json` names, which must exist in transformers and be the family's stock class."""
    names = json.loads((path / "config.json").read_text())["architectures"]
    config = AutoConfig.from_pretrained(path)
    assert names == [STOCK[config.model_type]], (path, names)
    assert hasattr(transformers, names[0])
    return getattr(transformers, names[0])


def rows(model) -> int:
    return model.get_input_embeddings().weight.shape[0]


def load_adapter_stock(adapter: Path, tokenizer):
    """What docs/models.md tells a PEFT user to do: stock base, resized to the tokenizer if it has fewer rows."""
    base_path = Path(json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"])
    base = stock_class(base_path).from_pretrained(base_path)
    if len(tokenizer) > rows(base):
        base.resize_token_embeddings(len(tokenizer))
    return PeftModel.from_pretrained(base, adapter)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["text", "tokens"])
@pytest.mark.parametrize("preset", PRESETS)
def test_lora_outputs_load_with_stock_transformers_and_peft(tmp_path, default_data_args, preset, mode):
    out = train(tmp_path, default_data_args, preset, mode, lora=True)
    final = out / "final"
    tokenizer = AutoTokenizer.from_pretrained(final)
    merged = stock_class(final).from_pretrained(final)  # the merged model
    assert rows(merged) == len(tokenizer)
    card = (out / "README.md").read_text()  # the run's card says how to do what this test does
    assert "## Load with stock transformers and PEFT" in card and STOCK[merged.config.model_type] in card
    assert "PeftModel.from_pretrained(base" in card and "resize_token_embeddings(len(tokenizer))" in card
    for adapter in (final / "adapter", out / "checkpoint-1"):
        model = load_adapter_stock(adapter, tokenizer)
        assert rows(model) == len(tokenizer), adapter
        # LoRA leaves the embedding frozen: the adapter must restore rl_audio's rows (timestamp rows set by TimePro-RL
        # eq. 1), not the values a resize gives them
        assert torch.equal(model.get_input_embeddings().weight, merged.get_input_embeddings().weight), adapter
        if adapter.name == "adapter":  # the same weights rl_audio merged into final/
            got = model.merge_and_unload().state_dict()
            want = merged.state_dict()
            assert got.keys() == want.keys()
            bad = [k for k in got if not torch.allclose(got[k], want[k], atol=1e-5)]
            assert not bad, bad[:5]


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_full_outputs_name_a_transformers_class(tmp_path, default_data_args, preset):
    out = train(tmp_path, default_data_args, preset, "tokens", lora=False)
    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    for path in (out / "final", out / "checkpoint-1"):
        model = stock_class(path).from_pretrained(path)
        assert rows(model) == len(tokenizer), path


def test_the_card_names_the_stock_class_of_every_family_and_what_needs_rl_audio():
    assert all(hasattr(transformers, name) for name in STOCK_CLASSES.values())
    text = "\n".join(stock_loading_section("qwen2_audio", "tokens", True, "Qwen/Qwen2-Audio-7B-Instruct", 0.04))
    assert 'Qwen2AudioForConditionalGeneration.from_pretrained("Qwen/Qwen2-Audio-7B-Instruct")' in text
    assert "carries the whole embedding and lm_head tables" in text and "Qwen2AudioTimestampModel" in text
    text = "\n".join(stock_loading_section("audio_flamingo3", "text", False, "nvidia/audio-flamingo-3-hf"))
    assert "AudioFlamingo3ForConditionalGeneration" in text and "PeftModel" not in text
    assert "PromptBuilder" in text and "Qwen2AudioTimestampModel" not in text


@pytest.mark.slow
def test_token_mode_lora_with_embedding_tables_resumes_exactly(tmp_path, default_data_args):
    """The embedding tables in a token-mode LoRA checkpoint load back on resume (frozen, so unchanged): steps 3-4
    after resuming from checkpoint-2 log the losses of the uninterrupted run."""
    args = [str(ROOT / "recipes" / "cpu" / "timepro_sft.yaml"), "--output_dir", str(tmp_path / "out"),
            *default_data_args, "--max_steps", "4", "--save_steps", "2", "--save_total_limit", "3",
            "--logging_steps", "1", "--per_device_train_batch_size", "1", "--learning_rate", "1e-2"]  # fmt: skip
    trainer, _ = build_trainer(parse_recipe(AudioSFTConfig, args))
    trainer.train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    from safetensors import safe_open

    with safe_open(checkpoint / "adapter_model.safetensors", "pt") as f:
        assert any("embed_tokens" in k for k in f.keys())
    first = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    trainer, _ = build_trainer(parse_recipe(AudioSFTConfig, [*args, "--resume_from_checkpoint", str(checkpoint)]))
    trainer.train(resume_from_checkpoint=str(checkpoint))
    resumed = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    assert sorted(resumed) == [1, 2, 3, 4]
    for step in (3, 4):
        assert resumed[step] == pytest.approx(first[step], rel=1e-5)
