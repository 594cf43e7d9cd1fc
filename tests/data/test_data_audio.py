import numpy as np
import pytest

from rl_audio.data.audio import AudioError, audio_duration, check_audio_file, load_audio, write_wav


def test_load_audio_resamples_to_mono_float32(make_wav):
    t = np.arange(8000) / 8000
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 440 * t)], axis=1)
    path = make_wav("stereo8k.wav", sr=8000, data=stereo)
    wav = load_audio(path, sr=16000)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size - 16000) <= 2
    # mean of the two channels: amplitude 0.3; the resampler keeps it
    assert np.max(np.abs(wav[2000:-2000])) == pytest.approx(0.3, abs=0.01)


def test_audio_duration_reads_header(make_wav):
    assert audio_duration(make_wav(seconds=1.5)) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("setup", "kind", "text"),
    [
        ("missing", "missing", "audio file not found"),
        ("garbage", "unreadable", "audio file is unreadable"),
        ("empty", "empty", "empty (0 samples)"),
        ("silent", "silent", "silent"),
        ("nan", "non_finite", "NaN/inf"),
    ],
)
def test_load_audio_errors_name_the_path(tmp_path, make_wav, setup, kind, text):
    if setup == "missing":
        path = tmp_path / "nope.wav"
    elif setup == "garbage":
        path = tmp_path / "garbage.wav"
        path.write_bytes(b"this is not a wav file at all" * 10)
    elif setup == "empty":
        path = make_wav("empty.wav", data=np.zeros(0))
    elif setup == "silent":
        path = make_wav("silent.wav", data=np.zeros(16000))
    else:
        data = np.full(1600, 0.1)
        data[100] = np.nan
        path = make_wav("nan.wav", data=data, subtype="FLOAT")
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert info.value.kind == kind
    assert str(path) in str(info.value) and text in str(info.value)


def test_silence_check_can_be_disabled(make_wav):
    wav = load_audio(make_wav("silent.wav", data=np.zeros(1600)), check_silent=False)
    assert wav.shape == (1600,) and not wav.any()


def test_header_check_is_cheap_but_decode_finds_nan(make_wav):
    data = np.full(1600, 0.1)
    data[5] = np.inf
    path = make_wav("inf.wav", data=data, subtype="FLOAT")
    assert check_audio_file(path) == pytest.approx(0.1)
    with pytest.raises(AudioError, match="NaN/inf"):
        check_audio_file(path, decode=True)


def test_write_wav_clips_and_round_trips(tmp_path):
    path = tmp_path / "sub" / "x.wav"
    write_wav(path, np.array([0.5, 2.0, -3.0, 0.25]), 16000)
    wav = load_audio(path)
    np.testing.assert_allclose(wav, [0.5, 1.0, -1.0, 0.25], atol=1e-4)
