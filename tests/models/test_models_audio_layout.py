"""Every audio feature lands in its own sample, right after its timestamp: nothing dropped, shifted or carried into
another sample (SpotSound's released code drops the `n % 25` leftover features and, in batches, leaks them into the
next sample's placeholders; NOTES.md).

The reference features of each sample come from the family's own transformers code, run on that sample alone:
`get_audio_features` for Audio Flamingo 3 and the Qwen2.5-Omni thinker; for Qwen2-Audio, which has no such method,
transformers' own merge (`Qwen2AudioForConditionalGeneration.forward`, not rl_audio's subclass) on a prompt of
contiguous placeholders. The merged batch is read where the language model receives it (a forward pre-hook).
"""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
import torch
from transformers import Qwen2AudioForConditionalGeneration

from rl_audio.models.loading import LoadedModel, load_model
from rl_audio.models.prompting import PromptBuilder, pad_left, pad_right
from rl_audio.models.timestamps import TimestampSpec

TINY = ["tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3"]
FPS = 25  # audio features per second in all three families (40 ms each)


class LMInputs:
    """Captures the `inputs_embeds` the language model receives (after the audio merge)."""

    def __init__(self, lm: LoadedModel):
        self.module = lm.adapter.language_model(lm.model)
        self.embeds: torch.Tensor | None = None

    def __enter__(self):
        def hook(_module, _args, kwargs):
            self.embeds = kwargs["inputs_embeds"].detach().clone()

        self.handle = self.module.register_forward_pre_hook(hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def reference_features(lm: LoadedModel, wav) -> torch.Tensor:
    """(N, D): one clip's audio features after the projector, computed by the family's transformers code."""
    model, adapter = lm.model, lm.adapter
    audio, counts = adapter.encode_audio([wav])
    kwargs = adapter.model_audio_kwargs(audio)
    with torch.no_grad():
        if adapter.family == "audio_flamingo3":
            return model.get_audio_features(kwargs["input_features"], kwargs["input_features_mask"]).pooler_output
        if adapter.family == "qwen2_5_omni":
            out = model.get_audio_features(kwargs["input_features"], kwargs["feature_attention_mask"])
            return out.last_hidden_state
        assert adapter.family == "qwen2_audio"
        ids = PromptBuilder(adapter, TimestampSpec("none")).prompt_ids("q", counts[0])
        ids = torch.tensor([ids])
        with LMInputs(lm) as cap:
            Qwen2AudioForConditionalGeneration.forward(model, input_ids=ids, **kwargs)
        return cap.embeds[0, ids[0] == adapter.placeholder_id]


@pytest.fixture(scope="module")
def models():
    cache: dict = {}

    def get(name: str, mode: str) -> LoadedModel:
        if (name, mode) not in cache:
            lm = load_model(name, timestamps=TimestampSpec(mode, token_max=40.0))
            lm.model.eval()
            cache[(name, mode)] = lm
        return cache[(name, mode)]

    return get


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("seconds,expected", [(0.5, 12), (10.0, 250), (30.0, 750), (75.0, 1875)])
def test_placeholder_count_equals_encoder_output(models, make_audio, name, seconds, expected):
    lm = models(name, "none")
    wav = make_audio(seconds, seed=int(seconds * 10))
    enc = PromptBuilder(lm.adapter, TimestampSpec("none")).encode_prompts([wav], ["q"])
    n_placeholders = enc.prompt_ids[0].count(lm.adapter.placeholder_id)
    n_features = reference_features(lm, wav).shape[0]
    assert n_placeholders == n_features == expected
    assert sum(enc.window_counts[0]) == expected
    # the arithmetic used before training agrees with the feature extractor's masks
    assert lm.adapter.frame_counts_for_seconds(seconds) == enc.window_counts[0]


def _timestamp_before(ids: list[int], positions: list[int], tokenizer, placeholder: int) -> list[str]:
    """For each placeholder position, the text between it and the previous placeholder (or the sequence start)."""
    texts, prev = [], -1
    for pos in positions:
        texts.append(tokenizer.decode(ids[prev + 1 : pos]))
        prev = pos
    return texts


@pytest.fixture(scope="module")
def two_clips(models, make_audio):
    """3.3 s fills part of one window; 35 s crosses the 30 s window boundary (750 + 125 features). With each clip's
    reference features per family (the encoder is the same in every timestamp mode: only embedding rows differ)."""
    wavs = [make_audio(3.3, seed=11), make_audio(35.0, seed=12)]
    refs = {name: [reference_features(models(name, "none"), w) for w in wavs] for name in TINY}
    return wavs, refs


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize(
    "mode,padding", [("none", "left"), ("text", "right"), ("tokens", "left"), ("tokens", "right")]
)
def test_every_feature_lands_in_its_sample_after_its_timestamp(models, two_clips, name, mode, padding):
    lm = models(name, mode)
    tok, placeholder = lm.adapter.tokenizer, lm.adapter.placeholder_id
    wavs, refs = two_clips[0], two_clips[1][name]
    builder = PromptBuilder(lm.adapter, lm_spec(mode))
    enc = builder.encode_prompts(wavs, ["When does the tone rise?", "Is there a tone?"])
    if padding == "left":  # generation
        ids, attention = pad_left(enc.prompt_ids, tok.pad_token_id)
    else:  # training
        batch = pad_right(enc.prompt_ids, [[-100] * len(p) for p in enc.prompt_ids], tok.pad_token_id)
        ids, attention = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad(), LMInputs(lm) as cap:
        lm.model(input_ids=ids, attention_mask=attention, **lm.adapter.model_audio_kwargs(enc.audio))
    assert cap.embeds.shape[:2] == ids.shape

    for i, expected_n in enumerate((82, 875)):
        ref = refs[i]
        row = ids[i].tolist()
        positions = [p for p, t in enumerate(row) if t == placeholder]
        assert len(positions) == ref.shape[0] == expected_n  # no feature dropped or added
        got = cap.embeds[i, positions]
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
        # the check can fail: a shift by one frame, or the other sample's features, do not match
        assert not torch.allclose(got[1:], ref[:-1], rtol=1e-4, atol=1e-5)
        other = refs[1 - i]
        n = min(len(other), len(got))
        assert not torch.allclose(got[:n], other[:n], rtol=1e-4, atol=1e-5)

        before = _timestamp_before(row, positions, tok, placeholder)
        if mode == "text":
            current = None
            for j, text in enumerate(before):
                found = re.findall(r"timestamp: ([0-9.]+) seconds", text)
                if found:
                    current = Fraction(found[-1])
                # granularity 1 s: the nearest preceding timestamp names floor(j * 0.04 / 1) * 1 seconds
                assert current == Fraction(j, FPS) // 1, f"sample {i} frame {j}: after {current} s"
            assert sum("timestamp:" in t for t in before) == -(-expected_n // FPS)
        elif mode == "tokens":
            for j in range(1, expected_n):
                tid = row[positions[j] - 1]
                hundredths = 4 * j
                assert tok.convert_ids_to_tokens(tid) == f"<{hundredths // 100}.{hundredths % 100:02d}>"
            assert (
                tok.convert_ids_to_tokens(row[positions[-1] + 1])
                == f"<{4 * expected_n // 100}.{4 * expected_n % 100:02d}>"
            )
            assert before[0].endswith(lm.adapter.audio_open) and "<0." not in before[0]
        else:
            # contiguous placeholders: nothing between consecutive audio frames
            assert all(b - a == 1 for a, b in zip(positions, positions[1:]))


def lm_spec(mode: str) -> TimestampSpec:
    return TimestampSpec(mode, granularity=1.0, token_max=40.0)


@pytest.mark.parametrize("granularity,expected", [(0.2, [0, 0.2, 0.4]), (2.0, [0, 2, 4])])
def test_text_timestamps_at_other_granularities(models, make_audio, granularity, expected):
    lm = models("tiny-qwen2-audio", "none")
    spec = TimestampSpec("text", granularity=granularity)
    builder = PromptBuilder(lm.adapter, spec)
    seconds = 3 * granularity
    counts = lm.adapter.frame_counts_for_seconds(seconds)
    text = lm.adapter.tokenizer.decode(builder.layout.audio_ids(counts))
    stamps = [float(t) for t in re.findall(r"timestamp: ([0-9.]+) seconds", text)]
    assert stamps == expected
    assert text.count(lm.adapter.placeholder) == round(seconds * FPS)


def test_tokens_mode_on_qwen2_audio_avoids_the_legacy_merge(models, make_audio):
    """One timestamp token per 40 ms frame leaves no two placeholders adjacent, which sends the stock Qwen2-Audio
    model down its legacy merge path (it raises); rl_audio's subclass merges by position and matches the stock merge
    wherever the stock path works."""
    lm = models("tiny-qwen2-audio", "tokens")
    wav = make_audio(2.0, seed=3)
    enc = PromptBuilder(lm.adapter, lm_spec("tokens")).encode_prompts([wav], ["q"])
    ids = torch.tensor(enc.prompt_ids)
    kwargs = lm.adapter.model_audio_kwargs(enc.audio)
    attention = torch.ones_like(ids)
    with pytest.raises(ValueError, match="number of audio"):
        Qwen2AudioForConditionalGeneration.forward(lm.model, input_ids=ids, attention_mask=attention, **kwargs)
    with torch.no_grad():
        out = lm.model(input_ids=ids, attention_mask=attention, **kwargs)
    assert torch.isfinite(out.logits).all()

    plain = PromptBuilder(lm.adapter, lm_spec("none")).encode_prompts([wav], ["q"])
    plain_ids = torch.tensor(plain.prompt_ids)
    with torch.no_grad():
        ours = lm.model(input_ids=plain_ids, **kwargs).logits
        stock = Qwen2AudioForConditionalGeneration.forward(lm.model, input_ids=plain_ids, **kwargs).logits
    torch.testing.assert_close(ours, stock)


def test_windows_are_cut_and_padded_to_the_window_length(models, make_audio):
    """A Qwen2.5-Omni checkpoint's feature extractor may be set up for 300 s of input; windows stay 30 s each."""
    from transformers import WhisperFeatureExtractor

    lm = models("tiny-qwen2.5-omni", "none")
    adapter = type(lm.adapter)(lm.adapter.tokenizer, WhisperFeatureExtractor(feature_size=128, chunk_length=300))
    audio, counts = adapter.encode_audio([make_audio(35.0, seed=1), make_audio(3.3, seed=2)])
    assert audio.features.shape == (2, 2, 128, 3000)
    assert counts == [[750, 125], [82]]
    assert audio.window_mask.tolist() == [[1, 1], [1, 0]]
    assert audio.frame_mask.sum(-1).tolist() == [[3000, 500], [330, 0]]


def test_a_repeated_waveform_is_featurised_once(models, make_audio):
    """A GRPO group passes its clip G times: one log-mel computation, the same rows as G separate copies."""
    lm = models("tiny-qwen2-audio", "none")
    a, b = make_audio(35.0, seed=1), make_audio(3.3, seed=2)
    calls = []
    extractor = lm.adapter.feature_extractor
    adapter = type(lm.adapter)(lm.adapter.tokenizer, extractor)
    adapter.feature_extractor = lambda flat, **kw: calls.append(len(flat)) or extractor(flat, **kw)
    shared, counts = adapter.encode_audio([a, b, a, a, b])
    copies, want = lm.adapter.encode_audio([a, b, a.copy(), a.copy(), b.copy()])
    assert calls == [3]  # the two windows of `a` and the one of `b`
    assert counts == want
    for got, ref in zip(shared.to_dict().values(), copies.to_dict().values()):
        torch.testing.assert_close(got, ref)
