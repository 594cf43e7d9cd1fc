"""Tiny random-initialised presets of the three families, written as ordinary checkpoint directories.

A preset is built once from a config (no download), saved with `save_pretrained` next to its tokenizer and
processor, and from then on loaded through the same `from_pretrained` path as a real 7B checkpoint. The encoders
keep the real input geometry (128 mel bins, 30 s windows of 3000 frames, 25 features/s) so that placeholder
counts, windowing and timestamp interleaving are exercised exactly as on the real models; only widths, depths and
the vocabulary shrink.

Presets: `tiny-qwen2-audio`, `tiny-qwen2.5-omni`, `tiny-af3` (test size, < 1 M parameters) and
`small-qwen2-audio` (2.4 M parameters, for runs that should learn more than the test presets; the replication
study in benchmarks/replicate defines its own Qwen2.5-Omni presets).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import WhisperFeatureExtractor

from .tokenizer import CHATML_TEMPLATE, build_tokenizer

logger = logging.getLogger(__name__)

PRESET_VERSION = 1


@dataclass(frozen=True)
class PresetSpec:
    family: str
    enc_layers: int = 2
    enc_width: int = 64
    lm_layers: int = 2
    lm_width: int = 64
    lm_ffn: int = 128
    heads: int = 4
    kv_heads: int = 2
    vocab: int = 400
    extra: dict = field(default_factory=dict)


PRESETS: dict[str, PresetSpec] = {
    "tiny-qwen2-audio": PresetSpec("qwen2_audio"),
    "tiny-qwen2.5-omni": PresetSpec("qwen2_5_omni"),
    "tiny-af3": PresetSpec("audio_flamingo3"),
    "small-qwen2-audio": PresetSpec("qwen2_audio", enc_layers=2, enc_width=128, lm_layers=4, lm_width=192, lm_ffn=512),
}

_QWEN_SPECIALS = {
    "audio_token": "<|AUDIO|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
}
_OMNI_SPECIALS = {
    **_QWEN_SPECIALS,
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}
_AF3_SPECIALS = {"audio_token": "<sound>"}


def default_cache_dir() -> Path:
    return Path(os.environ.get("RL_AUDIO_CACHE", Path.home() / ".cache" / "rl_audio"))


def _template(marker: str) -> str:
    # Render audio parts as the family's own marker, as the real chat templates do.
    return CHATML_TEMPLATE.replace("{{ audio_marker | default('<|AUDIO|>') }}", marker)


def _text_config(spec: PresetSpec, vocab: int) -> dict:
    return {
        "vocab_size": vocab,
        "hidden_size": spec.lm_width,
        "intermediate_size": spec.lm_ffn,
        "num_hidden_layers": spec.lm_layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
    }


def _encoder_config(spec: PresetSpec) -> dict:
    return {
        "num_mel_bins": 128,
        "d_model": spec.enc_width,
        "encoder_layers": spec.enc_layers,
        "encoder_attention_heads": spec.heads,
        "encoder_ffn_dim": spec.enc_width * 2,
        "max_source_positions": 1500,
    }


def _build_qwen2_audio(spec: PresetSpec):
    from transformers import Qwen2AudioConfig, Qwen2AudioProcessor

    from .families import Qwen2AudioTimestampModel

    tok = build_tokenizer(_QWEN_SPECIALS, vocab_size=spec.vocab)
    tok.chat_template = _template("Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n")
    fe = WhisperFeatureExtractor(feature_size=128)
    proc = Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok, chat_template=tok.chat_template)
    cfg = Qwen2AudioConfig(
        audio_config=_encoder_config(spec),
        text_config=_text_config(spec, len(tok)),
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
    )
    return Qwen2AudioTimestampModel(cfg), proc


def _build_omni(spec: PresetSpec):
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    tok = build_tokenizer(_OMNI_SPECIALS, vocab_size=spec.vocab)
    tok.chat_template = _template("<|audio_bos|><|AUDIO|><|audio_eos|>")
    # The full Omni processor needs torchvision for its video half; audio-LM training needs only the tokenizer
    # and the feature extractor, which is also all `rl_audio.models.load_processor` reads from real checkpoints.
    proc = _TokenizerAndFeatures(tok, WhisperFeatureExtractor(feature_size=128))
    head_dim = spec.lm_width // spec.heads
    third = head_dim // 2 // 4  # mrope sections must sum to head_dim / 2
    text = _text_config(spec, len(tok)) | {
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1e6,
            "mrope_section": [head_dim // 2 - 2 * third, third, third],
        }
    }
    audio = _encoder_config(spec) | {"output_dim": spec.lm_width, "n_window": 100}
    vision = {
        "depth": 1,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": spec.lm_width,
        "fullatt_block_indexes": [0],
    }
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in _OMNI_SPECIALS.items()}
    cfg = Qwen2_5OmniThinkerConfig(
        audio_config=audio,
        vision_config=vision,
        text_config=text,
        audio_token_index=ids["audio_token"],
        image_token_index=ids["image_token"],
        video_token_index=ids["video_token"],
        audio_start_token_id=ids["audio_bos_token"],
        audio_end_token_id=ids["audio_eos_token"],
        vision_start_token_id=ids["vision_bos_token"],
        vision_end_token_id=ids["vision_eos_token"],
        user_token_id=tok.convert_tokens_to_ids("<|im_start|>"),
    )
    return Qwen2_5OmniThinkerForConditionalGeneration(cfg), proc


def _build_af3(spec: PresetSpec):
    from transformers import AudioFlamingo3Config, AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor

    tok = build_tokenizer(_AF3_SPECIALS, vocab_size=spec.vocab)
    tok.chat_template = _template("<sound>")
    fe = WhisperFeatureExtractor(feature_size=128)
    proc = AudioFlamingo3Processor(feature_extractor=fe, tokenizer=tok, chat_template=tok.chat_template)
    enc = _encoder_config(spec)
    audio = {
        "num_mel_bins": 128,
        "hidden_size": enc["d_model"],
        "num_hidden_layers": enc["encoder_layers"],
        "num_attention_heads": enc["encoder_attention_heads"],
        "intermediate_size": enc["encoder_ffn_dim"],
        "max_source_positions": 1500,
    }
    cfg = AudioFlamingo3Config(
        audio_config=audio,
        text_config=_text_config(spec, len(tok)),
        audio_token_id=tok.convert_tokens_to_ids("<sound>"),
    )
    return AudioFlamingo3ForConditionalGeneration(cfg), proc


class _TokenizerAndFeatures:
    """Saves a tokenizer and a feature extractor side by side, as a processor would."""

    def __init__(self, tokenizer, feature_extractor):
        self.tokenizer, self.feature_extractor = tokenizer, feature_extractor

    def save_pretrained(self, out):
        self.tokenizer.save_pretrained(out)
        self.feature_extractor.save_pretrained(out)


_BUILDERS = {"qwen2_audio": _build_qwen2_audio, "qwen2_5_omni": _build_omni, "audio_flamingo3": _build_af3}


def build_preset(name: str, out_dir: str | os.PathLike, *, seed: int = 0) -> Path:
    """Build preset `name` with random weights drawn from `seed` and save it as a checkpoint directory."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}")
    spec = PRESETS[name]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model, processor = _BUILDERS[spec.family](spec)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    (out / "rl_audio_preset.json").write_text(
        json.dumps({"preset": name, "seed": seed, "version": PRESET_VERSION, "parameters": n_params})
    )
    logger.info("built preset %s (%.2f M parameters, seed %d) in %s", name, n_params / 1e6, seed, out)
    return out


def resolve_model_path(name_or_path: str, *, seed: int = 0, cache_dir: str | os.PathLike | None = None) -> str:
    """A preset name becomes its cached checkpoint directory (built on first use); anything else is returned as is."""
    if name_or_path not in PRESETS:
        return name_or_path
    key = hashlib.sha1(json.dumps([name_or_path, seed, PRESET_VERSION]).encode()).hexdigest()[:8]
    out = Path(cache_dir or default_cache_dir()) / "presets" / f"{name_or_path}-seed{seed}-{key}"
    if not (out / "rl_audio_preset.json").exists():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        build_preset(name_or_path, tmp, seed=seed)
        try:
            tmp.rename(out)
        except OSError:  # another process finished first; use its copy
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return str(out)
