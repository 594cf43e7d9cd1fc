"""The three supported families. Each class is the only place that knows its family's specifics."""

from __future__ import annotations

import logging

import torch
from transformers import (
    AudioFlamingo3ForConditionalGeneration,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioForConditionalGeneration,
)
from transformers.masking_utils import create_bidirectional_mask

from .base import AudioLMAdapter, _unwrap
from .encoder_cache import EncoderCache, encoder_is_frozen

logger = logging.getLogger(__name__)


class Qwen2AudioTimestampModel(Qwen2AudioForConditionalGeneration):
    """`Qwen2AudioForConditionalGeneration` that always merges audio features by placeholder position.

    transformers 5.23 falls back to a legacy merge, which treats every `<|AUDIO|>` as a whole clip and raises,
    when no two placeholders are adjacent anywhere in the batch. TimePro-RL's timestamp tokens at the 40 ms frame
    rate (§2.1) interleave one timestamp per feature, which is exactly that case. This subclass computes the merged
    embeddings itself (the same `masked_scatter` the non-legacy path does) and hands the LM `inputs_embeds`.
    Weights and config are the stock ones: checkpoints load and save unchanged.

    With `enable_audio_encoder_cache()` a frozen encoder's output is reused per window (`encoder_cache.py`).
    """

    audio_encoder_cache: EncoderCache | None = None

    def enable_audio_encoder_cache(self, max_bytes: int = 2**30) -> EncoderCache:
        self.audio_encoder_cache = EncoderCache(max_bytes)
        return self.audio_encoder_cache

    def forward(self, input_ids=None, input_features=None, feature_attention_mask=None, inputs_embeds=None, **kwargs):
        if inputs_embeds is None and input_features is not None and input_ids is not None and input_ids.shape[1] != 1:
            inputs_embeds = self.merge_audio(input_ids, input_features, feature_attention_mask)
            input_ids, input_features, feature_attention_mask = None, None, None
        return super().forward(
            input_ids=input_ids,
            input_features=input_features,
            feature_attention_mask=feature_attention_mask,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )

    def merge_audio(self, input_ids, input_features, feature_attention_mask):
        inner = self.model
        embeds = inner.get_input_embeddings()(input_ids)  # (B, T, D)
        tower = inner.audio_tower
        input_features = input_features.to(tower.device, tower.dtype)
        feature_attention_mask = feature_attention_mask.to(tower.device)
        conv_lengths, out_lengths = tower._get_feat_extract_output_lengths(feature_attention_mask.sum(-1))
        n_windows, _, n_mel_frames = input_features.shape
        max_len = (n_mel_frames - 2) // 2 + 1
        valid = torch.arange(max_len, device=conv_lengths.device)[None, :] < conv_lengths[:, None]  # (W, T_enc)
        mask = create_bidirectional_mask(
            config=tower.config,
            inputs_embeds=torch.zeros((n_windows, max_len, 1), dtype=embeds.dtype, device=tower.device),
            attention_mask=valid.long(),
        )
        cache = getattr(self, "audio_encoder_cache", None)
        if cache is not None and encoder_is_frozen(tower):
            hidden = cache.encode(
                input_features,
                conv_lengths,
                lambda idx: tower(input_features[idx], attention_mask=mask[idx]).last_hidden_state,
            )  # (W, T_enc, D)
        else:
            hidden = tower(input_features, attention_mask=mask).last_hidden_state  # (W, T_enc, D)
        feats = inner.multi_modal_projector(hidden)  # (W, max_audio_len, D)
        keep = torch.arange(feats.shape[1], device=feats.device)[None, :] < out_lengths.to(feats.device)[:, None]
        feats = feats[keep]  # (N_features, D), window then time order
        slots = input_ids == self.config.audio_token_id
        if int(slots.sum()) != feats.shape[0]:
            raise ValueError(
                f"audio placeholders ({int(slots.sum())}) and audio features ({feats.shape[0]}) do not match"
            )
        return embeds.masked_scatter(slots.unsqueeze(-1).to(embeds.device), feats.to(embeds.device, embeds.dtype))


class Qwen2AudioAdapter(AudioLMAdapter):
    """Qwen2-Audio(-7B-Instruct): `<|audio_bos|><|AUDIO|><|audio_eos|>`, 30 s Whisper windows, 25 features/s."""

    family = "qwen2_audio"
    model_types = ("qwen2_audio",)
    audio_open = "<|audio_bos|>"
    audio_close = "<|audio_eos|>"
    frame_mask_key = "feature_attention_mask"

    @classmethod
    def model_class(cls):
        return Qwen2AudioTimestampModel


class Qwen2_5OmniAdapter(AudioLMAdapter):
    """Qwen2.5-Omni thinker (the text-generating half; the talker is not used for RL on text answers).

    Audio-only prompts take the 1-D rope path, so timestamp text inserted between placeholders only shifts
    positions (NOTES.md). The thinker's `masked_scatter` has no count check, so the prompt builder checks counts.
    """

    family = "qwen2_5_omni"
    model_types = ("qwen2_5_omni_thinker", "qwen2_5_omni")
    audio_open = "<|audio_bos|>"
    audio_close = "<|audio_eos|>"
    frame_mask_key = "feature_attention_mask"

    @classmethod
    def model_class(cls):
        return Qwen2_5OmniThinkerForConditionalGeneration

    @classmethod
    def load_model(cls, path: str, **kwargs):
        from transformers import AutoConfig

        if AutoConfig.from_pretrained(path).model_type == "qwen2_5_omni":
            # A full Omni checkpoint (thinker + talker + token2wav): load it and keep the thinker.
            from transformers import Qwen2_5OmniForConditionalGeneration

            full = Qwen2_5OmniForConditionalGeneration.from_pretrained(path, **kwargs)
            logger.info("loaded a full Qwen2.5-Omni checkpoint from %s; using its thinker", path)
            return full.thinker
        return Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path, **kwargs)

    # The thinker nests its parts like the other families (`model.audio_tower`, `model.language_model`), so the
    # base class finds the encoder and the LM; only the aligner differs.
    @staticmethod
    def aligner(model):
        # The thinker's audio tower ends in its own projection (`proj`) to the LM width; there is no separate
        # multi-modal projector.
        return _unwrap(model).model.audio_tower.proj


class AudioFlamingo3Adapter(AudioLMAdapter):
    """Audio Flamingo 3: `<sound>` placeholders, 30 s windows, at most 20 windows (600 s)."""

    family = "audio_flamingo3"
    model_types = ("audioflamingo3",)
    frame_mask_key = "input_features_mask"
    max_windows = 20

    @classmethod
    def model_class(cls):
        return AudioFlamingo3ForConditionalGeneration


ADAPTERS: dict[str, type[AudioLMAdapter]] = {
    a.family: a for a in (Qwen2AudioAdapter, Qwen2_5OmniAdapter, AudioFlamingo3Adapter)
}


def adapter_for_model_type(model_type: str) -> type[AudioLMAdapter]:
    for adapter in ADAPTERS.values():
        if model_type in adapter.model_types:
            return adapter
    known = sorted(t for a in ADAPTERS.values() for t in a.model_types)
    raise ValueError(f"model type {model_type!r} is not a supported audio-LM family; supported: {known}")
