"""Audiology verification (TGSR App. C.4): crops, ASR, similarity, caching, batching, a tiny random Whisper, and the
choice of ASR backend (the real tiny.en is in test_audiology_real_asr.py)."""

import json
import pickle
import sys

import numpy as np
import pytest
import soundfile

import rewards
from rewards import RewardConfigError
from rewards.audiology import (
    AudiologyVerify,
    CTranslate2WhisperTranscriber,
    WhisperTranscriber,
    detect_asr_backend,
    load_audio,
    step_similarity,
)

RATE = 16_000


class FakeASR:
    """Returns scripted transcripts by crop start time, and records every batch it is given."""

    def __init__(self, by_start=None, default="hello there"):
        self.by_start, self.default, self.batches = by_start or {}, default, []

    def __call__(self, crops, sample_rate):
        assert sample_rate == RATE
        self.batches.append([len(crop) for crop in crops])
        # each crop carries its own start time (see tone_audio) in its first sample
        return [self.by_start.get(round(float(crop[0]), 1), self.default) for crop in crops]


def tone_audio(seconds=10.0):
    """Audio whose sample at time t holds t (rounded to 0.1 s), so a crop reveals where it starts."""
    t = np.arange(int(seconds * RATE)) / RATE
    return {"array": np.floor(t * 10) / 10, "sampling_rate": RATE}


def verify(reward, texts, audio=None, task="qa"):
    audio = tone_audio() if audio is None else audio
    return reward(texts, task=[task] * len(texts), audio=[audio] * len(texts))


# --- the formula ------------------------------------------------------------------------------------------------
def test_similarity_is_one_minus_wer_floored_at_zero():
    # reference "turn left here now" (4 words), hypothesis "turn left here": 1 deletion, WER 1/4
    assert step_similarity('He says "turn left here".', "Turn left here, now.") == pytest.approx(0.75)
    assert step_similarity("turn left here", "turn left here") == 1.0
    assert step_similarity("a b c d e f g", "x") == 0.0  # WER 7 -> floored
    assert step_similarity("...", "hello") == 0.0
    assert step_similarity("hello", "") == 0.0


def test_quoted_speech_is_what_is_compared():
    assert step_similarity("The woman says 'see you soon' happily.", "See you soon.") == 1.0
    assert step_similarity("The speaker's tone is calm", "the speakers tone is calm") < 1.0


def test_reward_averages_steps_and_pads_crops_by_half_a_second():
    asr = FakeASR({0.5: "turn left here", 3.5: "something else"})
    reward = AudiologyVerify(transcriber=asr)
    text = '[1.0s - 2.0s]: The man says "turn left here".\n[4.0s - 5.0s]: The man says "turn left here".'
    # step 1: crop [0.5, 2.5] -> sim 1.0; step 2: crop [3.5, 5.5] -> sim 0.0; mean 0.5
    assert verify(reward, [text]) == [0.5]
    assert asr.batches == [[2 * RATE, 2 * RATE]]


def test_no_steps_scores_zero_and_other_tasks_get_none():
    reward = AudiologyVerify(transcriber=FakeASR())
    out = reward(
        ["(b) no timestamps here", "[0-1] hello there", "[0-1] hello there"],
        task=["qa", "grounding", "sta"],
        audio=[tone_audio()] * 3,
    )
    assert out == [0.0, None, 1.0]


def test_steps_outside_the_audio_score_zero_without_asr():
    asr = FakeASR()
    reward = AudiologyVerify(transcriber=asr)
    assert verify(reward, ["[20.0s - 21.0s]: hello there"]) == [0.0]
    # wholly before 0 s, or ending at 0 s: the parser's clipping to 0 must not crop [0, 0.5] s and score it 1.0
    assert verify(reward, ["[-3s - -1s]: hello there"]) == [0.0]
    assert verify(reward, ["[-2s - 0s]: hello there"]) == [0.0]
    assert asr.batches == []
    # partly inside: the crop starts at 0 s
    assert verify(reward, ["[-1s - 0.5s]: hello there"]) == [1.0]
    assert asr.batches == [[int(1.0 * RATE)]]


def test_crops_are_clipped_at_the_audio_edges():
    asr = FakeASR()
    reward = AudiologyVerify(transcriber=asr)
    verify(reward, ["[0.0s - 0.2s]: hello there\n[9.8s - 12s]: hello there"])
    # [0 - 0.5, 0.2 + 0.5] -> [0, 0.7]; [9.8 - 0.5, 12.5] -> [9.3, 10]
    assert asr.batches == [[int(0.7 * RATE), int(0.7 * RATE)]]


def test_transcripts_are_cached_and_batched():
    asr = FakeASR()
    reward = AudiologyVerify(transcriber=asr, batch_size=2)
    texts = ["[0-1] hello there\n[2-3] hello there\n[4-5] hello there", "[0-1] hello there\n[6-7] hi"]
    assert verify(reward, texts) == [1.0, 0.5]
    assert [len(batch) for batch in asr.batches] == [2, 2]  # 4 distinct crops, batches of 2
    assert verify(reward, texts) == [1.0, 0.5]
    assert len(asr.batches) == 2  # second call: all from the cache


def test_max_steps_limits_the_verified_steps():
    reward = AudiologyVerify(transcriber=FakeASR(), max_steps=2)
    assert verify(reward, ["[0-1] hello there\n[1-2] hello there\n[2-3] nope"]) == [1.0]


def test_audio_from_a_file_is_mono_16k(tmp_path):
    path = tmp_path / "clip.wav"
    stereo = np.stack([np.full(8000 * 3, 0.5), np.full(8000 * 3, -0.1)], axis=1)  # 3 s at 8 kHz, (T, 2)
    soundfile.write(path, stereo, 8000)
    key, audio = load_audio(str(path))
    assert key.endswith("clip.wav") and audio.dtype == np.float32
    assert audio.shape == (3 * RATE,)
    assert np.allclose(audio[1000:-1000], 0.2, atol=1e-3)  # channel mean
    reward = AudiologyVerify(transcriber=FakeASR(default="x"))
    assert reward(["[0-1] x"], task=["qa"], audio=[str(path)]) == [1.0]


def test_missing_audio_file_is_a_config_error(tmp_path):
    reward = AudiologyVerify(transcriber=FakeASR())
    with pytest.raises(RewardConfigError, match="not found"):
        reward(["[0-1] hi"], task=["qa"], audio=[str(tmp_path / "missing.wav")])


def test_configuration_errors():
    with pytest.raises(RewardConfigError, match="exactly one"):
        AudiologyVerify()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AudiologyVerify(model="/nonexistent/whisper-checkpoint")
    broken = AudiologyVerify(transcriber=lambda crops, rate: ["only one"])
    with pytest.raises(RewardConfigError, match="transcriber returned"):
        verify(broken, ["[0-1] a\n[2-3] b"])


def test_odd_completions_never_raise():
    reward = AudiologyVerify(transcriber=FakeASR())
    texts = [
        "",
        "nan-nan",
        "1e308-1e309",
        "[0 - 1e308] hello",
        "[1e308-1.7e308] x",
        "[-5 - -1] x",
        "<1><2>" * 5000,
        '{"a": [[[[1, 2]]]]}',
        "\x00\ud7ff 1-2 é",
    ]
    out = verify(reward, texts)
    assert all(value is not None and 0.0 <= value <= 1.0 for value in out)


# --- a tiny random Whisper, end to end --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    directory = tmp_path_factory.mktemp("tiny-whisper")
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    vocab = {char: i for i, char in enumerate(bytes_to_unicode().values())}  # byte-level, no merges
    vocab.update({token: len(vocab) + i for i, token in enumerate(specials)})
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = WhisperTokenizer(
        str(directory / "vocab.json"),
        str(directory / "merges.txt"),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    config = WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=16,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_target_positions=32,
        decoder_start_token_id=vocab["<|startoftranscript|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
        bos_token_id=vocab["<|endoftext|>"],
    )
    WhisperForConditionalGeneration(config).save_pretrained(directory)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=16), tokenizer=tokenizer).save_pretrained(
        directory
    )
    return str(directory)


@pytest.mark.slow
def test_tiny_whisper_end_to_end(tiny_whisper):
    reward = AudiologyVerify(model=tiny_whisper, batch_size=2, max_new_tokens=6)
    assert reward.transcriber._model is None  # loads on first call, not at construction
    rng = np.random.default_rng(0)
    audio = {"array": rng.normal(0, 0.1, 5 * RATE).astype(np.float32), "sampling_rate": RATE}
    texts = ["[0.0s - 1.0s]: hello\n[2.0s - 3.0s]: the man says 'yes'", "no steps"]
    out = reward(texts, task=["qa", "qa"], audio=[audio, audio])
    assert out[1] == 0.0 and 0.0 <= out[0] <= 1.0
    # the reward equals the formula on what this Whisper transcribes
    asr = WhisperTranscriber(tiny_whisper, max_new_tokens=6)
    crops = [audio["array"][0 : int(1.5 * RATE)], audio["array"][int(1.5 * RATE) : int(3.5 * RATE)]]
    transcripts = asr(crops, RATE)
    assert all(isinstance(t, str) for t in transcripts)
    expected = (step_similarity("hello", transcripts[0]) + step_similarity("the man says 'yes'", transcripts[1])) / 2
    assert out[0] == pytest.approx(expected)
    clone = pickle.loads(pickle.dumps(reward))  # the loaded model is not pickled; it reloads on demand
    assert clone.transcriber._model is None
    assert clone(texts, task=["qa", "qa"], audio=[audio, audio]) == pytest.approx(out)


def test_unloadable_checkpoint_raises_a_clear_error_on_first_call(tmp_path):
    empty = tmp_path / "empty-checkpoint"
    empty.mkdir()
    reward = AudiologyVerify(model=str(empty))
    with pytest.raises(RuntimeError, match="cannot load Whisper checkpoint"):
        verify(reward, ["[0-1] hello"])


# --- ASR backends: detection and errors (no model is loaded) -------------------------------------------------------
def ct2_dir(path, *names):
    path.mkdir()
    for name in names:
        (path / name).write_text("{}")
    return path


def test_auto_detects_a_ctranslate2_directory(tmp_path):
    ct2 = ct2_dir(tmp_path / "ct2", "model.bin", "config.json", "tokenizer.json")
    assert detect_asr_backend(ct2) == "ctranslate2"
    assert detect_asr_backend(ct2_dir(tmp_path / "hf", "model.safetensors", "config.json")) == "transformers"
    both = ct2_dir(tmp_path / "both", "model.bin", "config.json", "pytorch_model.bin")
    assert detect_asr_backend(both) == "transformers"  # transformers weights win
    assert detect_asr_backend("openai/whisper-tiny.en") == "transformers"  # a hub id
    assert detect_asr_backend(tmp_path / "missing") == "transformers"
    reward = rewards.get("audiology_verify", model=str(ct2))  # the recipe route: reward_kwargs reach the class
    assert isinstance(reward.transcriber, CTranslate2WhisperTranscriber)
    assert reward.transcriber._model is None  # loads on first call
    assert (reward.transcriber.device, reward.transcriber.compute_type) == ("cpu", "int8")
    assert pickle.loads(pickle.dumps(reward)).transcriber.model_name == str(ct2)
    gpu = CTranslate2WhisperTranscriber(ct2, device="cuda:1")
    assert (gpu.device, gpu.device_index, gpu.compute_type) == ("cuda", 1, "default")
    forced = AudiologyVerify(model=str(ct2), asr_backend="transformers")
    assert isinstance(forced.transcriber, WhisperTranscriber)


def test_ctranslate2_errors_name_the_path_and_what_is_missing(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="CTranslate2 Whisper directory .*missing.* does not exist"):
        AudiologyVerify(model=str(tmp_path / "missing"), asr_backend="ctranslate2")
    partial = ct2_dir(tmp_path / "partial", "config.json")
    with pytest.raises(FileNotFoundError, match=r"partial.* has no model\.bin, tokenizer\.json"):
        AudiologyVerify(model=str(partial), asr_backend="ctranslate2")
    ct2 = ct2_dir(tmp_path / "ct2", "model.bin", "config.json", "tokenizer.json")
    with pytest.raises(RewardConfigError, match="asr_backend 'onnx' is not one of auto, transformers, ctranslate2"):
        AudiologyVerify(model=str(ct2), asr_backend="onnx")
    with pytest.raises(RewardConfigError, match=r"\['beam_size'\] apply to asr_backend 'ctranslate2' only"):
        AudiologyVerify(model=str(ct2), asr_backend="transformers", beam_size=2)
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install faster-whisper"):
        AudiologyVerify(model=str(ct2))


def test_an_unreadable_ctranslate2_model_fails_on_first_call(tmp_path):
    pytest.importorskip("faster_whisper", reason="faster-whisper is not installed: pip install faster-whisper")
    ct2 = ct2_dir(tmp_path / "ct2", "model.bin", "config.json", "tokenizer.json")  # model.bin holds "{}"
    reward = AudiologyVerify(model=str(ct2))
    with pytest.raises(RuntimeError, match="cannot load CTranslate2 Whisper model .*ct2"):
        verify(reward, ["[0-1] hello"])
