"""The frozen-encoder cache, on every family and timestamp mode: the same logits as without it, each distinct
window encoded once, the aligner still trained through it, off while the encoder trains, and the LM head asked for
the last positions only."""

from __future__ import annotations

import pytest
import torch

from rl_audio.data import load_audio
from rl_audio.models.base import last_logits_only
from rl_audio.models.encoder_cache import EncoderCache, encoder_is_frozen
from rl_audio.models.loading import load_model
from rl_audio.models.prompting import PromptBuilder, pad_left
from rl_audio.models.timestamps import TimestampSpec

FAMILIES = ("tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3")
GRID = [
    pytest.param(p, m, marks=() if m == "text" else pytest.mark.slow) for p in FAMILIES for m in ("text", "tokens")
]


def _spec(mode):
    return TimestampSpec(mode, token_max=10.0) if mode == "tokens" else TimestampSpec(mode)


def _batch(lm, wavs, mode="text"):
    builder = PromptBuilder(lm.adapter, _spec(mode))
    enc = builder.encode_prompts(wavs, ["Where is the tone?"] * len(wavs))
    ids, attention = pad_left(enc.prompt_ids, lm.adapter.tokenizer.pad_token_id)
    return ids, attention, lm.adapter.model_audio_kwargs(enc.audio)


def _encoder_work(lm):
    """Batch sizes reaching the tower's first convolution: what the encoder really computed (a cache hit skips it)."""
    calls = []
    lm.adapter.audio_encoder(lm.model).conv1.register_forward_hook(
        lambda mod, args, out: calls.append(args[0].shape[0])
    )
    return calls


def _wavs(write_wav, n=3):
    return [load_audio(write_wav(f"{i}.wav", 1.5 + i, seed=i)) for i in range(n)]


@pytest.mark.parametrize("preset,mode", GRID)
def test_cache_gives_the_same_logits_and_encodes_each_window_once(write_wav, preset, mode):
    wavs = _wavs(write_wav)
    plain = load_model(preset, timestamps=_spec(mode), freeze_audio_encoder=True, cache_audio_features=False)
    cached = load_model(preset, timestamps=_spec(mode), freeze_audio_encoder=True)
    assert not plain.adapter.encoder_cache(plain.model).enabled
    cache = cached.adapter.encoder_cache(cached.model)
    assert isinstance(cache, EncoderCache)
    # what encoding the three distinct clips once costs, counted on the uncached model
    once = _encoder_work(plain)
    with torch.no_grad():
        ids, attention, audio = _batch(plain, wavs, mode)
        plain.model(input_ids=ids, attention_mask=attention, **audio)
    expected, once[:] = list(once), []
    work = _encoder_work(cached)
    # a GRPO-like batch: each clip repeated, then the same clips again in another order
    with torch.no_grad():
        for clips in ([wavs[0], wavs[1], wavs[0], wavs[2], wavs[1]], [wavs[2], wavs[0], wavs[1]]):
            ids, attention, audio = _batch(plain, clips, mode)
            want = plain.model(input_ids=ids, attention_mask=attention, **audio).logits
            got = cached.model(input_ids=ids, attention_mask=attention, **audio).logits
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert sum(work) == sum(expected)  # the three distinct clips were encoded once; everything else hit the cache
    assert (cache.misses, cache.hits, len(cache)) == (3, 5, 3)


@pytest.mark.parametrize("preset", FAMILIES)
def test_a_trained_aligner_gets_the_same_gradients_through_the_cache(write_wav, preset):
    wavs = _wavs(write_wav, 2)
    models = []
    for cache in (False, True):
        lm = load_model(preset, freeze_audio_encoder=True, cache_audio_features=cache)
        lm.adapter.aligner(lm.model).requires_grad_(True)  # STA's setup (TGSR Table 5): the aligner trains
        models.append(lm)
    plain, cached = models
    work = _encoder_work(cached)
    ids, attention, audio = _batch(plain, wavs)
    for _ in range(2):  # the second pass reads the cache
        for lm in models:
            lm.model.zero_grad()
            lm.model(input_ids=ids, attention_mask=attention, **audio).logits.float().pow(2).mean().backward()
        for (name, p), q in zip(
            plain.adapter.aligner(plain.model).named_parameters(), cached.adapter.aligner(cached.model).parameters()
        ):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
            torch.testing.assert_close(q.grad, p.grad, msg=name)
    assert len(work) == 1 and cached.adapter.encoder_cache(cached.model).hits == 2


@pytest.mark.parametrize("preset", FAMILIES)
def test_cache_is_bypassed_while_the_encoder_trains(write_wav, preset):
    wavs = _wavs(write_wav, 2)
    lm = load_model(preset)  # encoder trainable
    tower = lm.adapter.audio_encoder(lm.model)
    assert not encoder_is_frozen(tower)
    work = _encoder_work(lm)
    ids, attention, audio = _batch(lm, wavs)
    reference = load_model(preset, cache_audio_features=False)
    for model in (lm.model, reference.model):
        model.zero_grad()
        model(input_ids=ids, attention_mask=attention, **audio).logits.float().pow(2).mean().backward()
    lm.model(input_ids=ids, attention_mask=attention, **audio)
    assert len(work) == 2 and len(lm.adapter.encoder_cache(lm.model)) == 0
    for (name, p), q in zip(tower.named_parameters(), reference.adapter.audio_encoder(reference.model).parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize("preset", FAMILIES)
def test_last_logits_only_gives_the_same_last_positions(write_wav, preset):
    lm = load_model(preset)
    ids, attention, audio = _batch(lm, _wavs(write_wav, 2))
    seen = []
    lm.model.get_output_embeddings().register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[1]))
    with torch.no_grad():
        full = lm.model(input_ids=ids, attention_mask=attention, **audio).logits
        with last_logits_only(lm.model, 5):
            last = lm.model(input_ids=ids, attention_mask=attention, **audio).logits
    assert seen == [ids.shape[1], 5] and last.shape[1] == 5
    torch.testing.assert_close(last, full[:, -5:], rtol=1e-5, atol=1e-5)


def test_keys_hash_any_dtype():
    x = torch.randn(4, 6)
    assert EncoderCache.key(x.bfloat16(), 6) != EncoderCache.key(x, 6)
    assert EncoderCache.key(x.bfloat16(), 6) == EncoderCache.key(x.clone().bfloat16(), 6)
    assert EncoderCache.key(x, 5) != EncoderCache.key(x, 6)


def test_eviction_keeps_the_byte_budget():
    cache = EncoderCache(max_bytes=3 * 4 * 4)  # three (2, 2) float32 outputs
    feats = torch.arange(5 * 6, dtype=torch.float32).reshape(5, 2, 3)
    out = cache.encode(feats, torch.full((5,), 3), lambda idx: feats[idx][:, :, :2] * 2)
    torch.testing.assert_close(out, feats[:, :, :2] * 2)
    assert len(cache) == 3
    # the most recent three stay; an evicted window is encoded again
    again = cache.encode(feats[:1], torch.full((1,), 3), lambda idx: feats[:1][idx][:, :, :2] * 2)
    torch.testing.assert_close(again, feats[:1, :, :2] * 2)
    assert cache.misses == 6


@pytest.mark.parametrize("preset", FAMILIES)
@pytest.mark.parametrize("cache", [True, False])
def test_a_frozen_encoder_records_no_graph_even_with_input_grads_enabled(write_wav, preset, cache):
    """transformers' `enable_input_require_grads` (gradient checkpointing with LoRA) hooks the tower's first conv;
    the backward pass must still not run through the frozen encoder."""
    lm = load_model(preset, freeze_audio_encoder=True, cache_audio_features=cache)
    lm.model.enable_input_require_grads()
    tower = lm.adapter.audio_encoder(lm.model)
    backward = []
    tower.layers[0].register_full_backward_hook(lambda mod, gin, gout: backward.append(1))
    ids, attention, audio = _batch(lm, _wavs(write_wav, 2))
    lm.model(input_ids=ids, attention_mask=attention, **audio).logits.float().pow(2).mean().backward()
    assert backward == []
    assert any(p.grad is not None for p in lm.adapter.language_model(lm.model).parameters())


def test_keys_hash_each_distinct_window_once_and_match_hashing_each(monkeypatch):
    """A group's copies of one window are hashed once; a window that differs from another in one value that the
    sparse sample does not see still gets its own key; bfloat16 windows key too."""
    torch.manual_seed(0)
    a = torch.randn(80, 3000)
    b = a.clone()
    b[3, 5] += 1.0  # frame 5 is off the sample grid (every 97th frame)
    for dtype in (torch.float32, torch.bfloat16):
        windows = [w.to(dtype) for w in (a, a.clone(), b, a, b.clone())]
        lengths = [3000, 3000, 3000, 2000, 3000]
        cache = EncoderCache()
        hashed = []
        real_key = EncoderCache.key
        monkeypatch.setattr(EncoderCache, "key", staticmethod(lambda w, n: hashed.append(n) or real_key(w, n)))
        keys = cache.keys(windows, lengths)
        monkeypatch.setattr(EncoderCache, "key", staticmethod(real_key))
        assert keys == [real_key(w, n) for w, n in zip(windows, lengths)]
        assert keys[0] == keys[1] != keys[2] == keys[4] and keys[3] not in (keys[0], keys[2])
        assert len(hashed) == 3  # a, b, and a with another valid length
    assert EncoderCache(0).keys([a, a], [3000, 3000]) == [None, None]
