"""Timestamp prompting: where time marks go among the audio placeholders, in three modes.

- `none`: placeholders only.
- `text` (SpotSound §2.2): before each block of `granularity` seconds of audio features, the text
  "timestamp: t seconds" naming the block's start time. Blocks count features in the sample's own timeline
  (window w, feature j is at w * window_seconds + j / features_per_second), so audio longer than one encoder window
  keeps counting and every feature follows its own timestamp; nothing is dropped or carried into another sample.
- `tokens` (TimePro-RL §2.1): added tokens `<0.04>`, `<0.08>`, ... on a grid of `token_stride` up to `token_max`
  seconds, one after each `token_stride` of audio naming the time reached, as in TimePro-RL's example
  `<audio><AUDIO><0.04><AUDIO><0.08>...`. So every feature but the first is preceded by the token of its start
  time. Their embeddings are initialised as the mean of the embeddings of the subword tokens of the number string
  (TimePro-RL eq. 1) or randomly (the ablation of Table 3), likewise the lm_head rows when the head is not tied to
  the embedding, and all of them stay frozen during training (TimePro-RL §2.1, "to prevent semantic drift").
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

import torch

logger = logging.getLogger(__name__)

MODES = ("none", "text", "tokens")


@dataclass
class TimestampSpec:
    mode: Literal["none", "text", "tokens"] = "none"
    granularity: float = 1.0
    text_template: str = "timestamp: {t} seconds"
    token_stride: float = 0.04
    token_max: float = 30.0
    token_init: Literal["semantic", "random"] = "semantic"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"timestamp mode {self.mode!r} is not one of {MODES}")
        if self.token_init not in ("semantic", "random"):
            raise ValueError(f"timestamp_token_init {self.token_init!r} is not 'semantic' or 'random'")
        if self.granularity <= 0 or self.token_stride <= 0:
            raise ValueError("timestamp granularity and token stride must be positive")

    def token_strings(self) -> list[str]:
        n = int(round(self.token_max / self.token_stride))
        return [token_name((k + 1) * self.token_stride) for k in range(n)]


def format_seconds(t: float) -> str:
    """Shortest decimal form with at most two decimals: 0 -> '0', 1.0 -> '1', 0.2 -> '0.2', 1.24 -> '1.24'."""
    s = f"{t:.2f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


def token_name(t: float) -> str:
    return f"<{t:.2f}>"


def _frames_per(seconds: float, fps: float, what: str) -> int:
    n = seconds * fps
    if abs(n - round(n)) > 1e-6 or round(n) < 1:
        raise ValueError(f"{what} of {seconds} s is not a whole number of audio features at {fps:g} features/s")
    return int(round(n))


class TimestampLayout:
    """Builds the token ids of the audio span (between the family's open and close tokens) for one sample."""

    def __init__(self, spec: TimestampSpec, tokenizer, placeholder_id: int, fps: float, window_seconds: float):
        self.spec, self.tokenizer, self.placeholder_id, self.fps = spec, tokenizer, placeholder_id, fps
        self.window_frames = _frames_per(window_seconds, fps, "the encoder window")
        self._text_cache: dict[int, list[int]] = {}
        if spec.mode == "text":
            self.block = _frames_per(spec.granularity, fps, "timestamp granularity")
        elif spec.mode == "tokens":
            self.block = _frames_per(spec.token_stride, fps, "timestamp token stride")
            self.grid = spec.token_strings()
            ids = tokenizer.convert_tokens_to_ids(self.grid)
            if any(i is None or i == tokenizer.unk_token_id for i in ids):
                raise ValueError("timestamp tokens are not in the tokenizer; call add_timestamp_tokens first")
            self.grid_ids = ids

    def frame_starts(self, window_counts: list[int]) -> list[int]:
        """Global feature index (in units of 1/fps) of every feature, window by window."""
        return [w * self.window_frames + j for w, n in enumerate(window_counts) for j in range(n)]

    def _text_ids(self, block_index: int) -> list[int]:
        if block_index not in self._text_cache:
            t = format_seconds(block_index * self.spec.granularity)
            text = self.spec.text_template.format(t=t)
            self._text_cache[block_index] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._text_cache[block_index]

    def audio_ids(self, window_counts: list[int]) -> list[int]:
        ids: list[int] = []
        mode = self.spec.mode
        for k in self.frame_starts(window_counts):
            if mode == "text" and k % self.block == 0:
                ids.extend(self._text_ids(k // self.block))
            ids.append(self.placeholder_id)
            if mode == "tokens" and (k + 1) % self.block == 0:
                slot = (k + 1) // self.block - 1
                if slot >= len(self.grid_ids):
                    raise ValueError(
                        f"audio reaches {(k + 1) / self.fps:.2f} s but the timestamp grid ends at "
                        f"{self.spec.token_max:g} s; raise timestamp_token_max"
                    )
                ids.append(self.grid_ids[slot])
        return ids


def add_timestamp_tokens(model, tokenizer, spec: TimestampSpec) -> list[int]:
    """Add the grid tokens to the tokenizer and initialise their embedding (and untied lm_head) rows.

    Idempotent: a checkpoint that already has the tokens (an rl_audio SFT output) keeps its trained rows.
    Returns the token ids.
    """
    names = spec.token_strings()
    have = tokenizer.convert_tokens_to_ids(names)
    if all(i is not None and i != tokenizer.unk_token_id for i in have):
        return list(have)
    subwords = [tokenizer(name[1:-1], add_special_tokens=False)["input_ids"] for name in names]
    tokenizer.add_tokens(names)
    ids = tokenizer.convert_tokens_to_ids(names)
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    tied = head is not None and _same_tensor(head.weight, emb.weight)
    # Qwen configs carry spare rows past len(tokenizer): resize only when the new ids do not fit.
    if max(ids) >= _rows(emb.weight):
        # max id + 1, not len(tokenizer): with a gap in the added-token ids the two differ, and len() would cut rows
        model.resize_token_embeddings(max(len(tokenizer), max(ids) + 1), mean_resizing=False)
        emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    tables = [emb.weight] + ([] if tied or head is None else [head.weight])
    with torch.no_grad(), gathered(tables, modifier_rank=0):
        for table in tables:
            if spec.token_init == "semantic":
                for tid, parts in zip(ids, subwords):
                    table[tid] = table[parts].mean(dim=0)  # TimePro-RL eq. 1
            else:
                # Seeded, so that re-adding the tokens to the base model (merging a LoRA adapter) gives the
                # same rows as the ones trained around.
                std = float(table[: min(ids)].std())
                gen = torch.Generator().manual_seed(0)
                table[ids] = (torch.randn((len(ids), table.shape[1]), generator=gen) * std).to(table.dtype)
    logger.info(
        "added %d timestamp tokens (%s init, lm_head %s)", len(ids), spec.token_init, "tied" if tied else "own"
    )
    return list(ids)


def gathered(params: list[torch.Tensor], modifier_rank: int | None = None):
    """Whole tensors of DeepSpeed ZeRO-3-partitioned parameters inside the block; a no-op for ordinary ones.

    Under ZeRO-3 a parameter outside forward is an empty shard (`ds_id` set, shape (0,)). With `modifier_rank`,
    what that rank writes is scattered back to every shard on exit. Every process must enter the block.
    """
    partitioned = [p for p in params if hasattr(p, "ds_id")]
    if not partitioned:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(partitioned, modifier_rank=modifier_rank)


def _rows(weight: torch.Tensor) -> int:
    return weight.ds_shape[0] if hasattr(weight, "ds_shape") else weight.shape[0]


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    # Tied weights are one Parameter; empty ZeRO-3 shards may share a data pointer without being tied.
    return a is b or (a.numel() > 0 and a.data_ptr() == b.data_ptr())


class RowFreezer:
    """Keeps chosen rows of the embedding and lm_head bit-identical while the rest of the matrix trains.

    A gradient hook zeroes their gradient; `restore()` (called after every optimizer step by
    `FreezeRowsCallback`) copies the saved rows back, which also undoes AdamW's decoupled weight decay. When the
    matrices are frozen as a whole (LoRA leaves them frozen), both are no-ops.
    """

    def __init__(self, model, row_ids: list[int]):
        self.rows = torch.tensor(sorted(set(row_ids)), dtype=torch.long)
        self.params = []
        for module in (model.get_input_embeddings(), model.get_output_embeddings()):
            if module is None or any(module.weight is p for p, _ in self.params):
                continue
            with gathered([module.weight]):
                self.params.append((module.weight, module.weight.detach()[self.rows].clone()))
        for p, _ in self.params:
            if p.requires_grad:
                p.register_hook(self._zero_rows)

    def _zero_rows(self, grad):
        grad = grad.clone()
        grad[self.rows.to(grad.device)] = 0
        return grad

    @torch.no_grad()
    def restore(self):
        for p, saved in self.params:
            if p.requires_grad:
                with gathered([p], modifier_rank=0):
                    p[self.rows.to(p.device)] = saved.to(p.device, p.dtype)
