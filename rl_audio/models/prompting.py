"""Turns (audio, question[, target]) into model inputs, identically for SFT, GRPO and evaluation.

The family's chat template renders the conversation with a single audio marker (e.g.
`<|audio_bos|><|AUDIO|><|audio_eos|>`); the marker's placeholder is replaced by the sample's expanded audio span:
one placeholder per encoder feature with timestamps interleaved by `TimestampLayout`. Audio features are computed
per encoder window by the adapter. Because the span is built per sample from that sample's own feature count, the
number of placeholders always equals the number of features and feature j of sample i lands in sample i.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from .base import AudioBatch, AudioLMAdapter
from .timestamps import TimestampLayout, TimestampSpec

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class EncodedPrompts:
    prompt_ids: list[list[int]]
    audio: AudioBatch
    window_counts: list[list[int]]


class PromptBuilder:
    def __init__(self, adapter: AudioLMAdapter, spec: TimestampSpec, system_prompt: str | None = None):
        self.adapter, self.spec, self.system_prompt = adapter, spec, system_prompt
        self.tokenizer = adapter.tokenizer
        self.layout = TimestampLayout(
            spec, self.tokenizer, adapter.placeholder_id, adapter.features_per_second, adapter.window_seconds
        )
        self.turn_end_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if self.turn_end_id is None or self.turn_end_id == self.tokenizer.unk_token_id:
            self.turn_end_id = self.tokenizer.eos_token_id

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def messages(self, question: str) -> list[dict]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        msgs.append(
            {"role": "user", "content": [{"type": "audio", "audio": "audio"}, {"type": "text", "text": question}]}
        )
        return msgs

    def prompt_ids(self, question: str, window_counts: list[int]) -> list[int]:
        text = self.tokenizer.apply_chat_template(self.messages(question), tokenize=False, add_generation_prompt=True)
        marker = self.adapter.marker
        if text.count(marker) != 1:
            raise ValueError(
                f"the chat template must render the audio part as {marker!r} exactly once; got:\n{text[:500]}"
            )
        prefix, suffix = text.split(marker)
        return (
            self._ids(prefix)
            + self._ids(self.adapter.audio_open)
            + self.layout.audio_ids(window_counts)
            + self._ids(self.adapter.audio_close)
            + self._ids(suffix)
        )

    def check_fits(self, seconds: float, max_length: int | None = None) -> None:
        """Raise now, before training, if a clip of `seconds` cannot be laid out: longer than the family allows,
        past the end of the timestamp-token grid, or an audio span alone of `max_length` tokens or more."""
        try:
            span = self.layout.audio_ids(self.adapter.frame_counts_for_seconds(seconds))
        except ValueError as e:
            raise ValueError(f"the longest audio in the data ({seconds:g} s) does not fit: {e}") from e
        if max_length is not None and len(span) >= max_length:
            raise ValueError(
                f"the longest audio in the data ({seconds:g} s) takes {len(span)} tokens with timestamp mode "
                f"{self.spec.mode!r}, more than max_length={max_length}; raise max_length, shorten the audio or "
                "coarsen the timestamps"
            )

    def target_ids(self, target: str) -> list[int]:
        return self._ids(target) + [self.turn_end_id]

    def encode_prompts(self, wavs: list[np.ndarray], questions: list[str]) -> EncodedPrompts:
        audio, counts = self.adapter.encode_audio(wavs)
        ids = [self.prompt_ids(q, c) for q, c in zip(questions, counts, strict=True)]
        return EncodedPrompts(ids, audio, counts)

    def encode_for_training(
        self, wavs: list[np.ndarray], questions: list[str], targets: list[str], max_length: int | None = None
    ) -> dict:
        """Right-padded batch with labels on the target tokens only (SpotSound §2.3)."""
        enc = self.encode_prompts(wavs, questions)
        seqs, labels = [], []
        for p, t in zip(enc.prompt_ids, targets, strict=True):
            tgt = self.target_ids(t)
            if max_length is not None and len(p) + len(tgt) > max_length:
                raise ValueError(
                    f"sequence of {len(p) + len(tgt)} tokens ({len(p)} prompt with audio) exceeds max_length "
                    f"{max_length}; shorten the audio, coarsen the timestamps or raise max_length"
                )
            seqs.append(p + tgt)
            labels.append([IGNORE_INDEX] * len(p) + tgt)
        return {**pad_right(seqs, labels, self.tokenizer.pad_token_id), **enc.audio.to_dict()}


def pad_right(seqs: list[list[int]], labels: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    n = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), n), dtype=torch.long)
    lab = torch.full((len(seqs), n), IGNORE_INDEX, dtype=torch.long)
    for i, (s, lb) in enumerate(zip(seqs, labels, strict=True)):
        input_ids[i, : len(s)] = torch.tensor(s)
        attention[i, : len(s)] = 1
        lab[i, : len(lb)] = torch.tensor(lb)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": lab}


def pad_left(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        input_ids[i, n - len(s) :] = torch.tensor(s)
        attention[i, n - len(s) :] = 1
    return input_ids, attention
