"""The frozen-encoder cache: same logits as without it, each distinct window encoded once, off while the encoder
trains, and gradients through a trained encoder unchanged."""

from __future__ import annotations

import torch

from rl_audio.data import load_audio
from rl_audio.models.encoder_cache import EncoderCache, encoder_is_frozen
from rl_audio.models.loading import load_model
from rl_audio.models.prompting import PromptBuilder, pad_left
from rl_audio.models.timestamps import TimestampSpec


def _batch(lm, wavs):
    builder = PromptBuilder(lm.adapter, TimestampSpec("text"))
    enc = builder.encode_prompts(wavs, ["Where is the tone?"] * len(wavs))
    ids, attention = pad_left(enc.prompt_ids, lm.adapter.tokenizer.pad_token_id)
    return ids, attention, lm.adapter.model_audio_kwargs(enc.audio)


def _counting(tower):
    calls = []
    tower.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    return calls


def test_cache_gives_the_same_logits_and_encodes_each_window_once(write_wav):
    wavs = [load_audio(write_wav(f"{i}.wav", 1.5 + i, seed=i)) for i in range(3)]
    plain = load_model("tiny-qwen2-audio", freeze_audio_encoder=True, cache_audio_features=False)
    cached = load_model("tiny-qwen2-audio", freeze_audio_encoder=True)
    assert plain.model.audio_encoder_cache is None and isinstance(cached.model.audio_encoder_cache, EncoderCache)
    calls = _counting(cached.adapter.audio_encoder(cached.model))
    # a GRPO-like batch: each clip repeated, then the same clips again in another order
    batch = [wavs[0], wavs[1], wavs[0], wavs[2], wavs[1]]
    again = [wavs[2], wavs[0], wavs[1]]
    with torch.no_grad():
        for clips in (batch, again):
            ids, attention, audio = _batch(plain, clips)
            want = plain.model(input_ids=ids, attention_mask=attention, **audio).logits
            got = cached.model(input_ids=ids, attention_mask=attention, **audio).logits
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    cache = cached.model.audio_encoder_cache
    assert calls == [3]  # three distinct clips, one encoder call; the second batch hit the cache only
    assert (cache.misses, cache.hits, len(cache)) == (3, 5, 3)


def test_cache_is_bypassed_while_the_encoder_trains(write_wav):
    wavs = [load_audio(write_wav("a.wav", 1.2, seed=1)), load_audio(write_wav("b.wav", 2.0, seed=2))]
    lm = load_model("tiny-qwen2-audio")  # encoder trainable
    tower = lm.adapter.audio_encoder(lm.model)
    assert not encoder_is_frozen(tower)
    calls = _counting(tower)
    ids, attention, audio = _batch(lm, wavs)
    reference = load_model("tiny-qwen2-audio", cache_audio_features=False)
    for model in (lm.model, reference.model):
        model.zero_grad()
        model(input_ids=ids, attention_mask=attention, **audio).logits.float().pow(2).mean().backward()
    lm.model(input_ids=ids, attention_mask=attention, **audio)
    assert calls == [2, 2] and len(lm.model.audio_encoder_cache) == 0
    for (name, p), q in zip(tower.named_parameters(), reference.adapter.audio_encoder(reference.model).parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


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
