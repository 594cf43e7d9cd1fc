"""Reuse a frozen audio encoder's output for a window it has already encoded.

All three papers freeze the audio encoder in training (SpotSound §4.1, TimePro-RL §3.2, TGSR Table 5), so its
output for a given window of log-mel features never changes: across SFT epochs, and in GRPO across the G copies of a
prompt and the generation, old-policy, reference and policy passes. The cache keys each window by a hash of its
features and valid length and keeps the encoder's output, so each distinct window is encoded once.

It is used only while the encoder has no trainable parameter and computes deterministically (eval mode, or no
dropout in its config); otherwise every call runs the encoder, so gradients through a trained encoder stay exact.
What is cached stops before the aligner (the projection into the language model), which may train: the aligner
runs on every pass. Turn it off with `cache_audio_features: false` (an `EncoderCache(0)`, which stores nothing).

Either way a frozen encoder runs without an autograd graph. That matters: transformers' `enable_input_require_grads`
(called for gradient checkpointing with adapters) hooks the input embeddings of every sub-model, the audio tower's
first convolution included, so a frozen encoder would otherwise record its whole forward and the backward pass
would run (and, with checkpointing, recompute) it for no parameter at all.

Qwen2-Audio reads the cache in its own merge (`families.Qwen2AudioTimestampModel`); Audio Flamingo 3 and the
Qwen2.5-Omni thinker use the stock transformers classes, whose audio tower gets a `TowerCache` as its `forward` on
the instance (the weights, their names and the saved files are untouched).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)

_DROPOUT_KEYS = ("dropout", "attention_dropout", "activation_dropout")
# Every how many frames a window is sampled to find the windows of a call worth comparing in full (our choice).
_PROBE_STRIDE = 97


def encoder_is_frozen(encoder: torch.nn.Module, *, except_: torch.nn.Module | None = None) -> bool:
    """True when `encoder` (leaving out its submodule `except_`) cannot change and gives the same output per input."""
    skip = {id(p) for p in except_.parameters()} if except_ is not None else set()
    if any(p.requires_grad for p in encoder.parameters() if id(p) not in skip):
        return False
    if not encoder.training:
        return True
    config = getattr(encoder, "config", None)
    return all(float(getattr(config, key, 0.0) or 0.0) == 0.0 for key in _DROPOUT_KEYS)


_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (so 0.0 and -0.0 differ, and NaN equals itself), as the hash of the bytes sees it."""
    bits = _BITS[a.element_size()]
    return torch.equal(a.detach().view(bits), b.detach().view(bits))


class EncoderCache:
    """Encoder outputs per window, least recently used first out once `max_bytes` is exceeded."""

    def __init__(self, max_bytes: int = 2**30):
        self.max_bytes = int(max_bytes)
        self._store: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    @staticmethod
    def key(features: torch.Tensor, length: int) -> bytes:
        """Hash of one window's features (n_mels, n_frames), its valid length, dtype and shape."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{tuple(features.shape)}|{features.dtype}|{int(length)}".encode())
        # raw bytes, so that any dtype hashes (numpy has no bfloat16)
        h.update(features.detach().contiguous().view(torch.uint8).cpu().numpy().tobytes())
        return h.digest()

    @property
    def enabled(self) -> bool:
        """False for `EncoderCache(0)`: nothing is stored, every window is encoded (still without a graph)."""
        return self.max_bytes > 0

    def keys(self, windows, lengths) -> list:
        """One key per window; no hashing when disabled.

        A window equal to one already keyed in this call (a GRPO group carries its clip G times, in every pass)
        reuses that key: windows that agree on a sparse sample of their values are compared in full
        (bit for bit, a memory scan), and only the first of each distinct window is hashed. The keys are the
        same as hashing each window; the saving is G - 1 hashes per group and pass.
        """
        if not self.enabled:
            return [None] * len(windows)
        keys, seen = [], {}  # sparse sample -> [(window, key)]
        for w, n in zip(windows, lengths):
            n = int(n)
            sample = w.detach()[..., ::_PROBE_STRIDE].contiguous().view(torch.uint8).cpu().numpy().tobytes()
            probe = (tuple(w.shape), w.dtype, n, sample)
            same = seen.setdefault(probe, [])
            key = next((k for other, k in same if _same_bits(other, w)), None)
            if key is None:
                key = self.key(w, n)
                same.append((w, key))
            keys.append(key)
        return keys

    def lookup(self, keys: list, run: Callable[[torch.Tensor], list[torch.Tensor]], device) -> list:
        """The stored output of each key, running `run(indices)` (a list of outputs) on the keys not seen before."""
        if not self.enabled:
            with torch.no_grad():  # frozen: no graph to keep
                return list(run(torch.arange(len(keys), device=device)))
        found = {k: self._store[k] for k in keys if k in self._store}
        todo = [keys.index(k) for k in dict.fromkeys(keys) if k not in found]  # a repeated window is encoded once
        if todo:
            with torch.no_grad():  # frozen: no graph to keep
                out = run(torch.tensor(todo, device=device))
            for j, i in enumerate(todo):
                found[keys[i]] = out[j].detach().clone()  # a copy: a view would keep the whole batch output alive
        for k in found:
            self._put(k, found[k])
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        return [found[k] for k in keys]

    def encode(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        run: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Encoder output for every window, running `run(indices)` only on the windows not seen before.

        features: (W, n_mels, n_frames); lengths: (W,) valid frames per window; `run(idx)` returns the encoder
        output (len(idx), T_enc, D) of windows `idx`. Returns (W, T_enc, D).
        """
        keys = self.keys(features, lengths)
        return torch.stack(self.lookup(keys, lambda idx: list(run(idx)), features.device))

    def _put(self, key: bytes, value: torch.Tensor) -> None:
        if key in self._store:
            self._store.move_to_end(key)
            return
        self._store[key] = value
        self._bytes += value.numel() * value.element_size()
        while self._bytes > self.max_bytes and len(self._store) > 1:
            _, old = self._store.popitem(last=False)
            self._bytes -= old.numel() * old.element_size()


class TowerCache:
    """Stands in for an audio tower's `forward` (set on the instance) and reads `cache` while the tower is frozen.

    It holds the module itself, not a bound method, so a deep copy of the model (TRL's reference model) gets a
    wrapper of its own copied tower. Subclasses say how a call's windows are split, encoded and joined.
    """

    def __init__(self, tower: torch.nn.Module, cache: EncoderCache):
        self.tower, self.cache = tower, cache

    def __call__(self, *args, **kwargs):
        run = type(self.tower).forward.__get__(self.tower)  # the class's forward, with its decorators
        if kwargs.get("output_hidden_states") or kwargs.get("output_attentions") or not self.frozen():
            return run(*args, **kwargs)
        return self.cached(run, *args, **kwargs)

    def frozen(self) -> bool:
        return encoder_is_frozen(self.tower)

    def cached(self, run, *args, **kwargs):
        raise NotImplementedError


def install_tower_cache(tower: torch.nn.Module, wrapper: type[TowerCache], cache: EncoderCache) -> EncoderCache:
    """Give `tower` a `wrapper` over `cache` as its forward (once; a second call swaps the cache)."""
    current = tower.__dict__.get("forward")
    if isinstance(current, TowerCache):
        current.cache = cache
    else:
        tower.forward = wrapper(tower, cache)
    return cache


def tower_cache(tower: torch.nn.Module) -> EncoderCache | None:
    current = tower.__dict__.get("forward")
    return current.cache if isinstance(current, TowerCache) else None
