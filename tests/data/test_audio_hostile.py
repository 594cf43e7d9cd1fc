"""Hostile audio: every failure says what really happened, and every decodable extension is audio."""

import logging
import os

import numpy as np
import pytest
import soundfile as sf

from rl_audio.data.audio import AUDIO_EXTENSIONS, MAX_ABS_SAMPLE, AudioError, check_audio_file, load_audio
from rl_audio.data.sources import FolderBackgrounds, FolderForegrounds, list_audio_files

SR = 16000


def _tone(seconds=1.0, freq=440.0):
    t = np.arange(int(seconds * SR)) / SR
    return 0.5 * np.sin(2 * np.pi * freq * t)


def _error(path) -> AudioError:
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(path) in str(info.value)
    return info.value


def test_symlink_loop_and_dangling_link_are_not_called_missing_files(tmp_path):
    os.symlink(tmp_path / "b.wav", tmp_path / "a.wav")
    os.symlink(tmp_path / "a.wav", tmp_path / "b.wav")
    os.symlink(tmp_path / "gone.wav", tmp_path / "dangling.wav")
    assert "symlink loop" in str(_error(tmp_path / "a.wav"))
    err = _error(tmp_path / "dangling.wav")
    assert err.kind == "missing" and "symlink to" in str(err) and "gone.wav" in str(err)


def test_corrupt_file_is_not_called_empty(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), SR)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(empty.read_bytes() + bytes(range(256)) * 8)  # a 0-sample header followed by data
    assert _error(empty).kind == "empty"
    err = _error(corrupt)
    assert err.kind == "unreadable" and "truncated or corrupt" in str(err) and "2092 bytes" in str(err)


def test_opposite_phase_channels_are_named_not_called_silent(tmp_path):
    path = tmp_path / "phase.wav"
    x = _tone().astype(np.float32)
    sf.write(path, np.stack([x, -x], axis=1), SR, subtype="FLOAT")
    err = _error(path)
    assert err.kind == "silent" and "cancel out" in str(err) and "2 channels" in str(err)


def test_huge_float_samples_are_rejected_not_loaded_as_inf(tmp_path):
    path = tmp_path / "huge.wav"
    big = np.full(SR, 3e38, dtype=np.float32)
    sf.write(path, np.stack([big, big], axis=1), SR, subtype="FLOAT")  # the float32 channel sum overflows
    err = _error(path)
    assert err.kind == "out_of_range" and "3e+38" in str(err)
    with pytest.raises(AudioError, match="over 1000"):
        check_audio_file(path, decode=True)
    fine = tmp_path / "loud.wav"
    sf.write(fine, np.full(SR, 2.0, dtype=np.float32), SR, subtype="FLOAT")  # over full scale, under the cap
    assert float(load_audio(fine).max()) == pytest.approx(2.0)
    assert MAX_ABS_SAMPLE > 2.0


def test_resampled_output_is_checked_too(tmp_path):
    path = tmp_path / "r.wav"
    sf.write(path, _tone(), 8000)
    wav = load_audio(path, sr=SR)
    assert wav.dtype == np.float32 and np.isfinite(wav).all() and wav.size == 2 * SR


def test_ogg_vorbis_oga_and_opus_are_audio_in_every_listing(tmp_path):
    assert {".oga", ".ogg", ".opus", ".flac", ".wav"} <= set(AUDIO_EXTENSIONS)
    assert ".m4a" not in AUDIO_EXTENSIONS  # libsndfile does not decode it
    (tmp_path / "bg").mkdir()
    sf.write(tmp_path / "bg" / "x.oga", _tone(), SR, format="OGG")
    sf.write(tmp_path / "bg" / "y.opus", _tone(), 48000, format="OGG", subtype="OPUS")
    assert [p.name for p in list_audio_files(tmp_path / "bg")] == ["x.oga", "y.opus"]
    assert load_audio(tmp_path / "bg" / "x.oga").size == SR
    assert len(FolderBackgrounds(tmp_path / "bg").files) == 2


def test_skipped_files_are_listed(tmp_path, caplog):
    (tmp_path / "fg" / "a_dog").mkdir(parents=True)
    (tmp_path / "fg" / "a_dog" / "bark.m4a").write_bytes(b"\0" * 10)
    (tmp_path / "fg" / "a_dog" / "notes.txt").write_text("x")
    with pytest.raises(ValueError) as info:
        FolderForegrounds(tmp_path / "fg")
    assert "a_dog" in str(info.value) and "bark.m4a" in str(info.value) and "notes.txt" in str(info.value)
    sf.write(tmp_path / "fg" / "a_dog" / "bark.oga", _tone(), SR, format="OGG")
    with caplog.at_level(logging.WARNING):
        fg = FolderForegrounds(tmp_path / "fg")
    assert [p.name for p in fg.files[0]] == ["bark.oga"]
    assert "2 file(s) skipped" in caplog.text and "bark.m4a" in caplog.text
    (tmp_path / "bg").mkdir()
    (tmp_path / "bg" / "rain.wma").write_bytes(b"\0")
    with pytest.raises(ValueError, match="rain.wma"):
        FolderBackgrounds(tmp_path / "bg")
