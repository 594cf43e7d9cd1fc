"""The three supported families. Each class is the only place that knows its family's specifics."""

from __future__ import annotations

import json
import logging
import os

import torch
from transformers import (
    AudioFlamingo3ForConditionalGeneration,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioForConditionalGeneration,
)
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .base import AudioLMAdapter, _unwrap
from .encoder_cache import EncoderCache, TowerCache, encoder_is_frozen

logger = logging.getLogger(__name__)


class Qwen2AudioTimestampModel(Qwen2AudioForConditionalGeneration):
    """`Qwen2AudioForConditionalGeneration` that always merges audio features by placeholder position.

    transformers 5.23 falls back to a legacy merge, which treats every `<|AUDIO|>` as a whole clip and raises,
    when no two placeholders are adjacent anywhere in the batch. TimePro-RL's timestamp tokens at the 40 ms frame
    rate (§2.1) interleave one timestamp per feature, which is exactly that case. This subclass computes the merged
    embeddings itself (the same `masked_scatter` the non-legacy path does) and hands the LM `inputs_embeds`.
    Weights and config are the stock ones: checkpoints load and save unchanged.

    With `Qwen2AudioAdapter.enable_encoder_cache` a frozen encoder's output is reused per window (`encoder_cache.py`).
    """

    audio_encoder_cache: EncoderCache | None = None  # set by `Qwen2AudioAdapter.enable_encoder_cache`

    def save_pretrained(self, save_directory, *args, is_main_process: bool = True, **kwargs):
        """Save as the stock class: transformers writes the saving class's name to `config.json` `architectures`,
        and `Qwen2AudioTimestampModel` is no transformers class, so tools that read that field (pipelines, vLLM, the
        hub) could not load the checkpoint. The weights and config are the stock ones, so the stock name is true."""
        super().save_pretrained(save_directory, *args, is_main_process=is_main_process, **kwargs)
        record_stock_architecture(self, save_directory, is_main_process)

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
        n_mel_frames = input_features.shape[-1]
        max_len = (n_mel_frames - 2) // 2 + 1
        valid = torch.arange(max_len, device=conv_lengths.device)[None, :] < conv_lengths[:, None]  # (W, T_enc)

        def encode(idx=None):  # windows `idx` (None: all); their attention mask only, (w, 1, T_enc, T_enc)
            feats, lengths = (input_features, valid) if idx is None else (input_features[idx], valid[idx])
            mask = create_bidirectional_mask(
                config=tower.config,
                inputs_embeds=torch.zeros((feats.shape[0], max_len, 1), dtype=embeds.dtype, device=tower.device),
                attention_mask=lengths.long(),
            )
            return tower(feats, attention_mask=mask).last_hidden_state

        cache = getattr(self, "audio_encoder_cache", None)
        if cache is not None and encoder_is_frozen(tower):
            hidden = cache.encode(input_features, conv_lengths, encode)  # (W, T_enc, D)
        else:
            hidden = encode()  # (W, T_enc, D)
        keep = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < out_lengths.to(hidden.device)[:, None]
        # the projector works frame by frame: run it on the frames that fill a placeholder only, not on the
        # padding of each 30 s window (a 4 s clip fills 100 of 750)
        feats = inner.multi_modal_projector(hidden[keep])  # (N_features, D), window then time order
        slots = input_ids == self.config.audio_token_id
        if int(slots.sum()) != feats.shape[0]:
            raise ValueError(
                f"audio placeholders ({int(slots.sum())}) and audio features ({feats.shape[0]}) do not match"
            )
        return embeds.masked_scatter(slots.unsqueeze(-1).to(embeds.device), feats.to(embeds.device, embeds.dtype))


def record_stock_architecture(model, save_directory, is_main_process: bool = True) -> None:
    """Name the first transformers class among `model`'s bases in its config and in the saved `config.json`."""
    stock = next(c for c in type(model).__mro__ if c.__module__.startswith("transformers."))
    model.config.architectures = [stock.__name__]
    path = os.path.join(save_directory, "config.json")
    if is_main_process and os.path.isfile(path):
        with open(path) as f:
            config = json.load(f)
        config["architectures"] = [stock.__name__]
        with open(path, "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")


class Qwen2AudioAdapter(AudioLMAdapter):
    """Qwen2-Audio(-7B-Instruct): `<|audio_bos|><|AUDIO|><|audio_eos|>`, 30 s Whisper windows, 25 features/s."""

    family = "qwen2_audio"
    model_types = ("qwen2_audio",)
    audio_open = "<|audio_bos|>"
    audio_close = "<|audio_eos|>"
    default_placeholder = "<|AUDIO|>"
    frame_mask_key = "feature_attention_mask"

    @classmethod
    def model_class(cls):
        return Qwen2AudioTimestampModel

    def enable_encoder_cache(self, model, cache=None):
        inner = _unwrap(model)
        inner.audio_encoder_cache = (
            cache if cache is not None else EncoderCache()
        )  # read by `Qwen2AudioTimestampModel.merge_audio`
        return inner.audio_encoder_cache

    def encoder_cache(self, model):
        return getattr(_unwrap(model), "audio_encoder_cache", None)


class _WindowTowerCache(TowerCache):
    """Audio Flamingo 3's tower: `(input_features (W, n_mels, n_frames), input_features_mask (W, n_frames))` ->
    `last_hidden_state (W, T_enc, D)`; the projector (the aligner) is outside the tower."""

    def cached(self, run, input_features, input_features_mask=None, **kwargs):
        if input_features_mask is None:
            return run(input_features, input_features_mask, **kwargs)
        hidden = self.cache.encode(
            input_features,
            input_features_mask.sum(-1),
            lambda idx: (
                run(input_features[idx], input_features_mask=input_features_mask[idx], **kwargs).last_hidden_state
            ),
        )  # (W, T_enc, D)
        return BaseModelOutputWithPooling(last_hidden_state=hidden)


class _FlatTowerCache(TowerCache):
    """The Qwen2.5-Omni thinker's tower: the valid frames of all windows side by side, `(n_mels, sum(feature_lens))`
    -> `(sum(output lengths), D)`. Its last module `proj` is the aligner (it may train), so what is cached is the
    output before it (`ln_post`), and `proj` runs on every pass."""

    def frozen(self) -> bool:
        return encoder_is_frozen(self.tower, except_=self.tower.proj)

    def cached(self, run, input_features, feature_lens=None, aftercnn_lens=None, **kwargs):
        if feature_lens is None:
            return run(input_features, feature_lens=feature_lens, aftercnn_lens=aftercnn_lens, **kwargs)
        tower = self.tower
        lens = [int(n) for n in feature_lens]
        windows = torch.split(input_features, lens, dim=1)  # (n_mels, n_i) each
        keys = self.cache.keys(windows, lens)

        def encode(idx):
            sub = feature_lens[idx]
            captured = []
            hook = tower.ln_post.register_forward_hook(lambda mod, args, out: captured.append(out))
            try:
                run(
                    torch.cat([windows[i] for i in idx.tolist()], dim=1),
                    feature_lens=sub,
                    aftercnn_lens=None if aftercnn_lens is None else aftercnn_lens[idx],
                    **kwargs,
                )
            finally:
                hook.remove()
            _, out_lens = tower._get_feat_extract_output_lengths(sub)
            return list(torch.split(captured[0], out_lens.tolist()))  # (n_out_i, D) per window, before `proj`

        hidden = tower.proj(torch.cat(self.cache.lookup(keys, encode, input_features.device)))  # (N, D)
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=hidden)


class Qwen2_5OmniAdapter(AudioLMAdapter):
    """Qwen2.5-Omni thinker (the text-generating half; the talker is not used for RL on text answers).

    Audio-only prompts take the 1-D rope path, so timestamp text inserted between placeholders only shifts
    positions (NOTES.md). The thinker's `masked_scatter` has no count check, so the prompt builder checks counts.
    """

    family = "qwen2_5_omni"
    model_types = ("qwen2_5_omni_thinker", "qwen2_5_omni")
    audio_open = "<|audio_bos|>"
    audio_close = "<|audio_eos|>"
    default_placeholder = "<|AUDIO|>"
    frame_mask_key = "feature_attention_mask"
    tower_cache = _FlatTowerCache

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
    default_placeholder = "<sound>"
    frame_mask_key = "input_features_mask"
    max_windows = 20
    tower_cache = _WindowTowerCache

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
