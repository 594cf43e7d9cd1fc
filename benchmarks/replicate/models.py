"""Model presets of the study: random-initialised checkpoints built from configs (no download), one per seed.

``rl_audio.models.presets`` builds a preset from a :class:`PresetSpec`; the study's sizes sit between the test
presets (< 1 M parameters) and ``small-qwen2-audio``. A study preset is registered under its own name in this
process only, built once per seed into ``OUT/models/<name>-seed<k>`` and from then on passed to the entry points as
an ordinary local checkpoint (``--model_name_or_path DIR``), as a user passes a real checkpoint.

One change to transformers' initialisation (calibration in README.md): the audio encoder's two input convolutions
get He (Kaiming) normal weights with gain 2 instead of N(0, 0.02). With 0.02 the convolutions' output is about 20
times smaller than the encoder's sinusoidal position embedding, so the encoder output hardly depends on the audio
(its spread across clips was 1.7 % of its norm) and in 600-1,200 steps the language model learned to ignore it: the
same answer for every clip. With the He init the spread across clips is of the order of the norm.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from rl_audio.models.loading import load_model
from rl_audio.models.presets import PRESETS, PresetSpec, build_preset

STUDY_PRESETS: dict[str, PresetSpec] = {
    # Qwen2.5-Omni thinker (TimePro-RL Table 3's backbone). Its encoder runs on the clip's real length (Qwen2-Audio
    # and Audio Flamingo 3 pad every window to 30 s, three times the work for a 10 s clip).
    "study-omni-xs": PresetSpec("qwen2_5_omni", enc_layers=2, enc_width=96, lm_layers=3, lm_width=128, lm_ffn=384),
    "study-omni-s": PresetSpec("qwen2_5_omni", enc_layers=2, enc_width=128, lm_layers=4, lm_width=192, lm_ffn=512),
}
CONV_GAIN = 2.0


def _init_encoder_convolutions(path: Path, seed: int) -> None:
    lm = load_model(str(path))
    encoder = lm.adapter.audio_encoder(lm.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in (encoder.conv1, encoder.conv2):
            fan_in = conv.weight.shape[1] * conv.weight.shape[2]
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * CONV_GAIN * math.sqrt(2 / fan_in))
    lm.model.save_pretrained(path)


def checkpoint(name: str, out_dir: str | Path, seed: int) -> str:
    """The checkpoint directory of preset ``name`` (a study preset or one of rl_audio's) with weights from ``seed``."""
    if name in STUDY_PRESETS:
        PRESETS.setdefault(name, STUDY_PRESETS[name])  # this process only: build_preset looks names up there
    elif name not in PRESETS:
        raise ValueError(
            f"unknown preset {name!r}; study presets {sorted(STUDY_PRESETS)}, rl_audio's {sorted(PRESETS)}"
        )
    path = Path(out_dir) / "models" / f"{name}-seed{seed}"
    marker = path / "study_init.json"
    if not marker.exists():
        build_preset(name, path, seed=seed)
        if name in STUDY_PRESETS:
            _init_encoder_convolutions(path, seed)
        marker.write_text(json.dumps({"preset": name, "seed": seed, "conv_init": f"he_normal x {CONV_GAIN}"}))
    return str(path)


def encoder_kind(name: str) -> str:
    """How the preset's audio encoder is initialised: pretrained weights, or random (He init for study presets)."""
    spec = STUDY_PRESETS.get(name) or PRESETS.get(name)
    if spec is not None and spec.pretrained_encoder:
        return f"pretrained ({spec.encoder})"
    return "random"


def parameter_count(path: str | Path) -> int:
    return int(json.loads((Path(path) / "rl_audio_preset.json").read_text())["parameters"])
