"""The model-family adapter: everything that differs between audio-LM families lives behind this interface.

All three supported families (Qwen2-Audio, Qwen2.5-Omni thinker, Audio Flamingo 3) put a Whisper-style encoder in
front of a Qwen2/2.5 language model: 16 kHz audio -> 128-bin log-mel at 100 frames/s -> conv stride 2 -> pooling
stride 2 -> 25 audio features per second (40 ms each, SpotSound §2.1). The LM's input holds one placeholder token
per feature and the model fills placeholders with features in order (`masked_scatter`). They differ in the
placeholder token, the wrapper tokens around the audio, the names of the feature tensors, the chat template and how
long audio is handled. An adapter captures those differences; nothing outside `rl_audio.models` asks which family
a model belongs to.

Long audio (SpotSound §4.1): the audio is cut into `window_seconds` windows that are encoded independently; their
features are concatenated in time order. Each window is one entry of the encoder batch, so a sample's features are
`input_features[first_window:first_window + n_windows]`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)


def held_deepspeed_config():
    """The DeepSpeed config transformers holds for this process (set by a DeepSpeed `TrainingArguments`), or None."""
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:  # no deepspeed integration
        return None
    ref = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    return ref() if ref is not None else None


@contextlib.contextmanager
def deepspeed_config_detached(ds_config):
    """Models built or loaded inside have whole tensors (no `deepspeed.zero.Init`); `ds_config` is restored after.

    A no-op when `ds_config` is None."""
    if ds_config is None:
        yield
        return
    from transformers.integrations import deepspeed as hf_deepspeed

    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(ds_config)


SAMPLING_RATE = 16000


@dataclass
class AudioBatch:
    """Encoder inputs for a batch of samples, indexed by sample on dim 0 so that TRL can split and shuffle it.

    features:    (B, W, n_mels, n_frames) log-mel per window; W = the most windows of any sample in the batch
    frame_mask:  (B, W, n_frames) 1 where a mel frame is real audio
    window_mask: (B, W) 1 where the window exists
    """

    features: torch.Tensor
    frame_mask: torch.Tensor
    window_mask: torch.Tensor

    def to_dict(self, prefix: str = "audio_") -> dict[str, torch.Tensor]:
        return {
            f"{prefix}features": self.features,
            f"{prefix}frame_mask": self.frame_mask,
            f"{prefix}window_mask": self.window_mask,
        }

    @classmethod
    def from_dict(cls, d: dict, prefix: str = "audio_") -> AudioBatch | None:
        if f"{prefix}features" not in d or d[f"{prefix}features"] is None:
            return None
        return cls(d[f"{prefix}features"], d[f"{prefix}frame_mask"], d[f"{prefix}window_mask"])

    def __getitem__(self, idx) -> AudioBatch:
        return AudioBatch(self.features[idx], self.frame_mask[idx], self.window_mask[idx])

    def __len__(self) -> int:
        return self.features.shape[0]

    def to(self, device, dtype=None) -> AudioBatch:
        feats = self.features.to(device=device, dtype=dtype) if dtype is not None else self.features.to(device)
        return AudioBatch(feats, self.frame_mask.to(device), self.window_mask.to(device))

    def flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows that exist, in sample then time order: (N, n_mels, n_frames), (N, n_frames)."""
        keep = self.window_mask.bool()
        if bool(keep.all()):  # every sample has its windows (one clip length): a view, no copy
            return self.features.flatten(0, 1), self.frame_mask.flatten(0, 1)
        return self.features[keep], self.frame_mask[keep]


def encoder_output_length(mel_frames: int) -> int:
    """Features produced from `mel_frames` valid mel frames: conv stride 2, then pooling stride 2.

    The same arithmetic as `_get_feat_extract_output_lengths` in the three families' encoders.
    >>> encoder_output_length(3000), encoder_output_length(1000), encoder_output_length(50)
    (750, 250, 12)
    """
    after_conv = (mel_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


class AudioLMAdapter:
    """Base class of the family adapters. Subclasses set the class attributes and may override methods."""

    family: str = ""
    model_types: tuple[str, ...] = ()
    # Attribute names on the tokenizer/processor; the strings come from the checkpoint's own tokenizer.
    audio_token_attr: str = "audio_token"
    # The placeholder when the tokenizer names none: the family processor's own default. transformers'
    # Qwen2AudioProcessor and AudioFlamingo3Processor fall back the same way, because a checkpoint's tokenizer config
    # need not carry an `audio_token` entry (the real-file checkpoints of rl_audio.models.real carry none).
    default_placeholder: str = ""
    # Strings the chat template puts around the single audio placeholder. The prompt builder finds
    # `audio_open + placeholder + audio_close` in the rendered template and replaces it with the expanded sequence.
    audio_open: str = ""
    audio_close: str = ""
    frame_mask_key: str = "feature_attention_mask"
    window_seconds: float = 30.0
    max_windows: int | None = None
    features_per_second: float = 25.0

    def __init__(self, tokenizer, feature_extractor):
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.placeholder = getattr(tokenizer, self.audio_token_attr, None) or self.default_placeholder
        if not self.placeholder:
            raise ValueError(f"the {self.family} tokenizer defines no {self.audio_token_attr!r}")
        self.placeholder_id = tokenizer.convert_tokens_to_ids(self.placeholder)
        if self.placeholder_id is None or self.placeholder_id == tokenizer.unk_token_id:
            raise ValueError(f"the {self.family} audio placeholder {self.placeholder!r} is not in the tokenizer")
        # A feature extractor set up for windows shorter than the family's (the mini presets' 10 s) sets the window:
        # the encoder's position table is that long. Real checkpoints' extractors are 30 s (Qwen2-Audio, AF3) or
        # longer (Qwen2.5-Omni), so the family's window stands.
        chunk = getattr(feature_extractor, "chunk_length", None)
        if isinstance(chunk, (int, float)) and 0 < chunk < self.window_seconds:
            self.window_seconds = float(chunk)

    # ---- model ---------------------------------------------------------------------------------------------
    @classmethod
    def model_class(cls):
        raise NotImplementedError

    @classmethod
    def load_model(cls, path: str, **kwargs):
        return cls.model_class().from_pretrained(path, **kwargs)

    @staticmethod
    def audio_encoder(model) -> torch.nn.Module:
        """The audio tower (frozen with `freeze_audio_encoder`)."""
        return _unwrap(model).model.audio_tower

    @staticmethod
    def aligner(model) -> torch.nn.Module:
        """The projector between the audio encoder and the LM (TGSR Table 5 trains only this in STA)."""
        return _unwrap(model).model.multi_modal_projector

    @staticmethod
    def language_model(model) -> torch.nn.Module:
        return _unwrap(model).model.language_model

    # The `encoder_cache.TowerCache` subclass that reads this family's audio tower calls; None: no cache.
    tower_cache: type | None = None

    def enable_encoder_cache(self, model, cache=None):
        """Reuse the frozen encoder's output per window (`encoder_cache.py`); pass `cache` to share one between
        models with the same frozen encoder (policy and reference). Returns the cache, or None for no cache."""
        from .encoder_cache import EncoderCache, install_tower_cache

        if self.tower_cache is None:
            logger.debug("no audio-feature cache for the %s family: the encoder runs on every pass", self.family)
            return None
        return install_tower_cache(
            self.audio_encoder(model), self.tower_cache, cache if cache is not None else EncoderCache()
        )

    def encoder_cache(self, model):
        """The cache `enable_encoder_cache` set on `model`, or None."""
        from .encoder_cache import tower_cache

        return tower_cache(self.audio_encoder(model))

    # ---- audio ---------------------------------------------------------------------------------------------
    def reserved_token_ids(self) -> list[int]:
        """Tokens a model must never generate: its audio placeholder and audio wrapper tokens. A generated
        placeholder would be taken for an audio slot in the next forward pass (pass as `suppress_tokens`)."""
        ids = [self.placeholder_id]
        for text in (self.audio_open, self.audio_close):
            if text:
                ids.append(self.tokenizer.convert_tokens_to_ids(text))
        return ids

    @property
    def marker(self) -> str:
        return self.audio_open + self.placeholder + self.audio_close

    def split_windows(self, wav: np.ndarray) -> list[np.ndarray]:
        """Cut a 16 kHz waveform into encoder windows (the last one may be shorter)."""
        win = int(round(self.window_seconds * SAMPLING_RATE))
        n = max(1, math.ceil(len(wav) / win))
        if self.max_windows is not None and n > self.max_windows:
            raise ValueError(
                f"audio of {len(wav) / SAMPLING_RATE:.1f} s is longer than the {self.family} limit of "
                f"{self.max_windows * self.window_seconds:.0f} s"
            )
        return [wav[i * win : (i + 1) * win] for i in range(n)]

    def frame_counts_for_seconds(self, seconds: float) -> list[int]:
        """Audio features (placeholders) per encoder window for a clip of `seconds`, without the audio itself
        or the feature extractor (for checks before training)."""
        n_samples = max(1, int(round(seconds * SAMPLING_RATE)))
        win = int(round(self.window_seconds * SAMPLING_RATE))
        n_windows = max(1, math.ceil(n_samples / win))
        if self.max_windows is not None and n_windows > self.max_windows:
            self.split_windows(np.zeros(n_samples, dtype=np.float32))  # raises the family's length error
        hop = self.feature_extractor.hop_length
        lengths = [min(win, n_samples - i * win) for i in range(n_windows)]
        return [encoder_output_length(math.ceil(n / hop)) for n in lengths]

    def encode_audio(self, wavs: list[np.ndarray]) -> tuple[AudioBatch, list[list[int]]]:
        """Log-mel features per window for each waveform, and the feature count of each window.

        A waveform passed several times (the same array object: a GRPO group repeats its prompt G times) is
        featurised once and its rows copied.
        """
        first: dict[int, int] = {}
        for i, w in enumerate(wavs):
            first.setdefault(id(w), i)
        if len(first) < len(wavs):
            audio, counts = self.encode_audio([wavs[i] for i in first.values()])
            row = {key: j for j, key in enumerate(first)}
            pick = [row[id(w)] for w in wavs]
            return audio[torch.tensor(pick)], [counts[j] for j in pick]
        per_sample = [self.split_windows(np.asarray(w, dtype=np.float32)) for w in wavs]
        flat = [w for ws in per_sample for w in ws]
        # Pad every window to exactly `window_seconds`, not to the extractor's own `n_samples`: a Qwen2.5-Omni
        # checkpoint's extractor may be set up for much longer input, which would only add padding frames.
        fe = self.feature_extractor(
            flat,
            sampling_rate=SAMPLING_RATE,
            padding="max_length",
            max_length=int(round(self.window_seconds * SAMPLING_RATE)),
            truncation=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        feats, mask = fe["input_features"], fe["attention_mask"]
        n_w = max(len(ws) for ws in per_sample)
        features = feats.new_zeros((len(wavs), n_w, *feats.shape[1:]))
        frame_mask = mask.new_zeros((len(wavs), n_w, mask.shape[-1]))
        window_mask = torch.zeros((len(wavs), n_w), dtype=torch.long)
        counts, k = [], 0
        for i, ws in enumerate(per_sample):
            features[i, : len(ws)] = feats[k : k + len(ws)]
            frame_mask[i, : len(ws)] = mask[k : k + len(ws)]
            window_mask[i, : len(ws)] = 1
            counts.append([encoder_output_length(int(m.sum())) for m in mask[k : k + len(ws)]])
            k += len(ws)
        return AudioBatch(features, frame_mask, window_mask), counts

    def model_audio_kwargs(self, audio: AudioBatch | None, dtype: torch.dtype | None = None) -> dict:
        """Keyword arguments for the model's forward/generate from a (sliced) `AudioBatch`."""
        if audio is None or int(audio.window_mask.sum()) == 0:
            return {}
        feats, mask = audio.flat()
        if dtype is not None and feats.is_floating_point():
            feats = feats.to(dtype)
        return {"input_features": feats, self.frame_mask_key: mask}


@contextlib.contextmanager
def _head_input(model, cut):
    """Within the block, the LM head (`get_output_embeddings()`) of `model` gets `cut(hidden)` instead of its
    (B, T, D) input whenever `cut` returns a tensor (None: unchanged). A forward pre-hook, so it is the same for
    every family, under PEFT, DDP and DeepSpeed wrappers alike."""
    base = _unwrap(getattr(model, "module", model))  # DDP / DeepSpeed engine, then PEFT
    head = base.get_output_embeddings()

    def hook(module, args):
        if not args or args[0].dim() != 3:
            return None
        cut_input = cut(args[0])
        return None if cut_input is None else (cut_input, *args[1:])

    handle = head.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def last_logits_only(model, keep: int):
    """Within the block, `model`'s LM head sees only the last `keep` positions: (B, T, D) -> logits (B, keep, V).

    A log-prob pass needs the logits of the completion only, but Qwen2-Audio's and the Qwen2.5-Omni thinker's
    forwards (transformers 5.24) take no `logits_to_keep` and would compute (B, T, V) over the whole audio prompt
    (V = 152k on the real models). The head's input is sliced instead (`_head_input`).
    """
    return _head_input(model, lambda hidden: hidden[:, -keep:, :] if hidden.shape[1] > keep else None)


def selected_logits_only(model, positions: torch.Tensor):
    """Within the block, `model`'s LM head sees only the positions where `positions` (B, T) is True, as one
    sequence: (B, T, D) -> logits (1, N, V), N = positions.sum(), in batch then time order.

    SFT needs the logits of the positions that predict a target token only. The whole audio prompt would cost
    (B, T, V) logits (V = 152k on the real models: 1.9 GB in float32 for 4 sequences of 800 tokens, against 37 MB
    for their 60 target tokens). A head input of another shape (nn.DataParallel's slice of the batch) is left whole.
    """

    def select(hidden):
        if hidden.shape[:2] != positions.shape:
            return None
        return hidden[positions.to(hidden.device)].unsqueeze(0)

    return _head_input(model, select)


def _unwrap(model):
    """The transformers model under a PEFT wrapper, if any."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model
