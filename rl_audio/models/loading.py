"""Loading a model, its tokenizer and feature extractor, and the adapter of its family, from a local path or id."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoTokenizer

from .base import AudioLMAdapter, deepspeed_config_detached, held_deepspeed_config
from .encoder_cache import EncoderCache
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
    """A local path must exist; a hub id not in the local cache fails at once when offline, and otherwise says that
    transformers is about to download it (rather than five silent retries and a generic OSError)."""
    looks_local = path.startswith((".", "/", "~")) or os.sep in path.strip("/").split("/", 1)[-1]
    if looks_local and not os.path.isdir(os.path.expanduser(path)):
        raise FileNotFoundError(f"model path {path!r} does not exist (model_name_or_path in the recipe)")
    if looks_local or os.path.isdir(path):
        return
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(path, "config.json")
    except ValueError:  # not a valid hub id either (HFValidationError): transformers' own error names it
        return
    if isinstance(cached, str):
        return
    where = constants.HF_HUB_CACHE
    if constants.is_offline_mode():  # what transformers' own hub calls obey
        raise FileNotFoundError(
            f"model {path!r} is not a local directory and not in the Hugging Face cache ({where}), and the hub is "
            f"off (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE): download it on a machine with network access "
            f"(`huggingface-cli download {path} --local-dir /models/{path.split('/')[-1]}`) and set "
            "model_name_or_path to that directory"
        )
    logger.warning(
        "model %r is not a local directory and not in the Hugging Face cache (%s): transformers will download it "
        "from the hub now (about 15 GB for a 7B model in bfloat16). Set HF_HUB_OFFLINE=1 to fail instead.",
        path, where,
    )  # fmt: skip


@contextlib.contextmanager
def _whole_weights_unless_zero3_init():
    """Load whole weights in every process when accelerate's DeepSpeed config says `zero3_init_flag: false`.

    transformers' TrainingArguments registers the ZeRO-3 config globally whatever that flag says, and
    `from_pretrained` then shards the weights while loading (deepspeed.zero.Init). The flag is honoured here:
    timestamp tokens are added and initialised on whole matrices, and DeepSpeed shards the model when training
    starts. With `zero3_init_flag: true` loading stays sharded (rl_audio.models.timestamps gathers what it edits).
    """
    flag = os.environ.get("ACCELERATE_DEEPSPEED_ZERO3_INIT", "").lower()
    ds_config = held_deepspeed_config()
    if ds_config is None or not ds_config.is_zero3() or flag not in ("false", "0"):
        ds_config = None  # keep transformers' sharded loading
    with deepspeed_config_detached(ds_config):
        yield


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
    cache_audio_features: bool = True,
) -> LoadedModel:
    """Load any supported family; add timestamp tokens if the spec asks for them; freeze what is asked.

    `name_or_path` is a tiny preset name (built once and cached), a local checkpoint directory (a base model or an
    rl_audio SFT/GRPO output with merged weights), or a hub id already in the local cache.
    """
    path = resolve_model_path(name_or_path, seed=preset_seed)
    _check_path(path)
    if os.path.isfile(os.path.join(path, "adapter_config.json")):
        return _load_lora_checkpoint(
            path, timestamps, dtype, attn_implementation, freeze_audio_encoder, preset_seed, cache_audio_features
        )
    adapter = load_adapter(path)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(_DTYPES)}")
    kwargs = {"dtype": _DTYPES[dtype]}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    with _whole_weights_unless_zero3_init():
        model = adapter.load_model(path, **kwargs)
    ts_ids: list[int] = []
    freezer = None
    if timestamps is not None and timestamps.mode == "tokens":
        ts_ids = add_timestamp_tokens(model, adapter.tokenizer, timestamps)
        freezer = RowFreezer(model, ts_ids)
    if freeze_audio_encoder:
        adapter.audio_encoder(model).requires_grad_(False)
    # read only while the encoder is frozen (encoder_cache.encoder_is_frozen); EncoderCache(0): off, stores nothing
    adapter.enable_encoder_cache(model, None if cache_audio_features else EncoderCache(0))
    n = sum(p.numel() for p in model.parameters())
    logger.info("loaded %s (%s, %.1f M parameters) from %s", adapter.family, dtype, n / 1e6, path)
    return LoadedModel(model, adapter, path, ts_ids, freezer)


def load_model_for(cfg, path: str | None = None, *, freeze_audio_encoder: bool = False) -> LoadedModel:
    """:func:`load_model` with a recipe's model settings (``rl_audio.configs.AudioArguments``): the model at `path`,
    default ``cfg.model_name_or_path``. The one loader of the SFT and GRPO policies, the GRPO reference model and
    evaluation, so that all of them read dtype, attention implementation, timestamps and presets alike."""
    return load_model(
        path or cfg.model_name_or_path,
        timestamps=cfg.timestamp_spec(),
        dtype=cfg.model_dtype,
        attn_implementation=cfg.attn_implementation,
        freeze_audio_encoder=freeze_audio_encoder,
        preset_seed=cfg.preset_seed,
        cache_audio_features=cfg.cache_audio_features,
    )


def max_positions(model: torch.nn.Module) -> int | None:
    """The language model's position limit (``max_position_embeddings`` of its text config); None when the config
    names none. A PEFT wrapper forwards ``config`` to the model it wraps."""
    config = model.config
    return getattr(getattr(config, "text_config", config), "max_position_embeddings", None)


def check_positions(model: torch.nn.Module, tokens: int, what: str) -> None:
    """Refuse a sequence of `tokens` tokens that the model has no positions for; `what` names it in the error
    (SFT's max_length, GRPO's prompt + max_completion_length, evaluation's prompt + max_new_tokens)."""
    limit = max_positions(model)
    if limit is not None and tokens > limit:
        raise ValueError(f"{what} exceeds the model's {limit} positions")


def _load_lora_checkpoint(
    path, timestamps, dtype, attn_implementation, freeze_audio_encoder, preset_seed, cache_audio_features=True
):
    """A LoRA adapter directory (an rl_audio `final/adapter`): load its base model, apply and merge the adapter.

    Timestamp tokens are re-added to the base exactly as in training (deterministic initialisation), so the
    adapter's shapes match. The result is a plain model, ready for a new adapter or full fine-tuning.
    """
    from peft import PeftModel

    with open(os.path.join(path, "adapter_config.json")) as f:
        base_path = json.load(f)["base_model_name_or_path"]
    base = load_model(
        base_path,
        timestamps=timestamps,
        dtype=dtype,
        attn_implementation=attn_implementation,
        freeze_audio_encoder=False,
        preset_seed=preset_seed,
        cache_audio_features=cache_audio_features,
    )
    model = PeftModel.from_pretrained(base.model, path).merge_and_unload()
    model.requires_grad_(True)  # PEFT froze the base; a loaded checkpoint starts fully trainable
    if freeze_audio_encoder:
        base.adapter.audio_encoder(model).requires_grad_(False)
    logger.info("merged the LoRA adapter %s into %s", path, base_path)
    # merge_and_unload returns the base model's own modules, so the base's row freezer still applies
    return LoadedModel(model, base.adapter, path, base.timestamp_ids, base.freezer)
