"""Loading a model, its tokenizer and feature extractor, and the adapter of its family, from a local path or id."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoTokenizer

from .base import AudioLMAdapter
from .families import adapter_for_model_type
from .presets import resolve_model_path
from .timestamps import RowFreezer, TimestampSpec, add_timestamp_tokens

logger = logging.getLogger(__name__)

_DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    adapter: AudioLMAdapter
    path: str
    timestamp_ids: list[int]
    freezer: RowFreezer | None


def _check_path(path: str) -> None:
    looks_local = path.startswith((".", "/", "~")) or os.sep in path.strip("/").split("/", 1)[-1]
    if looks_local and not os.path.isdir(os.path.expanduser(path)):
        raise FileNotFoundError(f"model path {path!r} does not exist (model_name_or_path in the recipe)")


def load_adapter(path: str) -> AudioLMAdapter:
    """The family adapter with the checkpoint's own tokenizer and feature extractor."""
    config = AutoConfig.from_pretrained(path)
    adapter_cls = adapter_for_model_type(config.model_type)
    tokenizer = AutoTokenizer.from_pretrained(path)
    feature_extractor = AutoFeatureExtractor.from_pretrained(path)
    return adapter_cls(tokenizer, feature_extractor)


def load_model(
    name_or_path: str,
    *,
    timestamps: TimestampSpec | None = None,
    dtype: str = "float32",
    attn_implementation: str | None = None,
    freeze_audio_encoder: bool = False,
    preset_seed: int = 0,
) -> LoadedModel:
    """Load any supported family; add timestamp tokens if the spec asks for them; freeze what is asked.

    `name_or_path` is a tiny preset name (built once and cached), a local checkpoint directory (a base model or an
    rl_audio SFT/GRPO output with merged weights), or a hub id already in the local cache.
    """
    path = resolve_model_path(name_or_path, seed=preset_seed)
    _check_path(path)
    adapter = load_adapter(path)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(_DTYPES)}")
    kwargs = {"dtype": _DTYPES[dtype]}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = adapter.load_model(path, **kwargs)
    ts_ids: list[int] = []
    freezer = None
    if timestamps is not None and timestamps.mode == "tokens":
        ts_ids = add_timestamp_tokens(model, adapter.tokenizer, timestamps)
        freezer = RowFreezer(model, ts_ids)
    if freeze_audio_encoder:
        adapter.audio_encoder(model).requires_grad_(False)
    n = sum(p.numel() for p in model.parameters())
    logger.info("loaded %s (%s, %.1f M parameters) from %s", adapter.family, dtype, n / 1e6, path)
    return LoadedModel(model, adapter, path, ts_ids, freezer)
