"""Audio I/O for the data pipeline: decoding, resampling, sanity checks and writing.

Audio is decoded with soundfile and resampled with soxr (librosa's default resampler). ``datasets.Audio`` is
deliberately not used: its decoder needs torchcodec, and the manifests keep paths, not arrays.

Every failure raises :class:`AudioError`, whose message starts with the offending path and whose ``kind`` is a
short code (``missing``, ``unreadable``, ``empty``, ``silent``, ``non_finite``) that the manifest loader uses to
count skipped rows by reason.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf

logger = logging.getLogger(__name__)

SILENCE_THRESHOLD = 1e-8
"""A file whose every sample satisfies ``|x| < SILENCE_THRESHOLD`` counts as silent."""

_SOUNDFILE_ERRORS = (sf.SoundFileError, RuntimeError, OSError, TypeError)


class AudioError(ValueError):
    """A missing, unreadable, empty, silent or corrupt audio file.

    Attributes:
        path: the file.
        reason: what is wrong, in words.
        kind: a short code: ``missing``, ``unreadable``, ``empty``, ``silent`` or ``non_finite``.
    """

    def __init__(self, path: str | os.PathLike, reason: str, kind: str):
        self.path = str(path)
        self.reason = reason
        self.kind = kind
        super().__init__(f"{self.path}: {reason}")


def _info(path: str | os.PathLike) -> sf._SoundFileInfo:
    if not os.path.exists(path):
        raise AudioError(path, "audio file not found", "missing")
    if not os.path.isfile(path):
        raise AudioError(path, "audio path is not a regular file", "unreadable")
    try:
        info = sf.info(str(path))
    except _SOUNDFILE_ERRORS as err:
        raise AudioError(path, f"audio file is unreadable ({err})", "unreadable") from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(path, "audio file is empty (0 samples)", "empty")
    return info


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds, read from the file header (cheap: nothing is decoded).

    Raises:
        AudioError: the file is missing, unreadable or has no samples.
    """
    info = _info(path)
    return info.frames / info.samplerate


def load_audio(path: str | os.PathLike, sr: int = 16000, *, check_silent: bool = True) -> np.ndarray:
    """Decode a file to a mono float32 waveform at ``sr`` Hz.

    Channels are averaged; resampling uses soxr at high quality, as ``librosa.resample(res_type="soxr_hq")`` does.

    Args:
        path: any format libsndfile reads (wav, flac, ogg, mp3 with libsndfile >= 1.1).
        sr: target sample rate.
        check_silent: raise on an all-silent file (``|x| < 1e-8`` everywhere).

    Returns:
        np.ndarray of shape ``(T,)``, dtype float32.

    Raises:
        AudioError: missing, unreadable, empty (0 samples), silent, or NaN/inf samples; the message names the path.
    """
    _info(path)
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except _SOUNDFILE_ERRORS as err:
        raise AudioError(path, f"audio file is unreadable ({err})", "unreadable") from err
    if data.shape[0] == 0:
        raise AudioError(path, "audio file is empty (0 samples)", "empty")
    # Check before resampling: the resampler would smear one NaN over the whole filter length.
    if not np.isfinite(data).all():
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise AudioError(path, f"audio contains {bad} NaN/inf samples", "non_finite")
    wav = data.mean(axis=1)  # (T,)
    if check_silent and float(np.max(np.abs(wav))) < SILENCE_THRESHOLD:
        raise AudioError(path, "audio is silent (all samples below 1e-8)", "silent")
    if file_sr != sr:
        # soxr is librosa's default resampler (res_type="soxr_hq"); called directly, it spares librosa's slow import
        import soxr

        wav = soxr.resample(wav, file_sr, sr, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32)


def write_wav(path: str | os.PathLike, wav: np.ndarray, sr: int) -> None:
    """Write a mono waveform as 16-bit PCM wav (samples are clipped to [-1, 1]); parent folders are created."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wav, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")


def check_audio_file(path: str | os.PathLike, *, decode: bool = False) -> float:
    """Check that a file can be used for training and return its duration in seconds.

    With ``decode=False`` only the header is read (existence, readability, sample count). With ``decode=True`` the
    whole file is decoded and also checked for silence and NaN/inf samples, as :func:`load_audio` does.
    """
    info = _info(path)
    if decode:
        load_audio(path, sr=info.samplerate)  # native rate: the checks need no resampling
    return info.frames / info.samplerate
