"""Audio I/O for the data pipeline: decoding, resampling, sanity checks and writing.

Audio is decoded with soundfile and resampled with soxr (librosa's default resampler). ``datasets.Audio`` is
deliberately not used: its decoder needs torchcodec, and the manifests keep paths, not arrays.

Every failure raises :class:`AudioError`, whose message starts with the offending path and whose ``kind`` is a
short code (``missing``, ``unreadable``, ``empty``, ``silent``, ``non_finite``, ``out_of_range``) that the
manifest loader uses to count skipped rows by reason. Messages say what happened: a symlink loop or a dangling link
is not reported as a missing file, a corrupt file is not reported as an empty one, and stereo channels that cancel
out are not reported as a silent recording.

Samples are checked after every arithmetic step (decoding, the channel average, resampling): each must be finite
and within :data:`MAX_ABS_SAMPLE`, so that nothing downstream (levels, log-mel features) overflows.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf

logger = logging.getLogger(__name__)

SILENCE_THRESHOLD = 1e-8
"""A file whose every sample satisfies ``|x| < SILENCE_THRESHOLD`` counts as silent."""

EMPTY_FILE_BYTES = 128
"""A file of at most this many bytes whose header reports no samples is called empty; a larger one, corrupt."""

MAX_ABS_SAMPLE = 1e3
"""Largest accepted ``|sample|`` (60 dB over full scale; our choice). Float files may exceed 1.0 a little, but a
sample near 3e38 is corrupt data, and its square overflows float32 in the feature extractor."""

# File extensions of each libsndfile major format (soundfile.available_formats() keys); .opus is Opus in an Ogg
# container, which libsndfile >= 1.0.29 decodes.
_EXTENSIONS_BY_FORMAT = {
    "WAV": (".wav", ".wave"), "WAVEX": (".wav",), "RF64": (".rf64",), "W64": (".w64",), "FLAC": (".flac",),
    "OGG": (".ogg", ".oga", ".opus"), "MP3": (".mp3",), "AIFF": (".aiff", ".aif", ".aifc"), "AU": (".au", ".snd"),
    "CAF": (".caf",), "VOC": (".voc",), "NIST": (".sph",),
}  # fmt: skip
AUDIO_EXTENSIONS = tuple(
    sorted({ext for fmt, exts in _EXTENSIONS_BY_FORMAT.items() if fmt in sf.available_formats() for ext in exts})
)
"""Extensions of the formats this libsndfile decodes: what every builder and converter lists as audio."""

_SOUNDFILE_ERRORS = (sf.SoundFileError, RuntimeError, OSError, TypeError)


class AudioError(ValueError):
    """A missing, unreadable, empty, silent or corrupt audio file.

    Attributes:
        path: the file.
        reason: what is wrong, in words.
        kind: a short code: ``missing``, ``unreadable``, ``empty``, ``silent``, ``non_finite`` or ``out_of_range``.
    """

    def __init__(self, path: str | os.PathLike, reason: str, kind: str):
        self.path = str(path)
        self.reason = reason
        self.kind = kind
        super().__init__(f"{self.path}: {reason}")


def _missing(path: str | os.PathLike) -> AudioError:
    """The error for a path that does not resolve to a file: not found, a dangling link, or a symlink loop."""
    if not os.path.islink(path):
        return AudioError(path, "audio file not found", "missing")
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return AudioError(path, "audio path is a symlink loop", "missing")
    return AudioError(path, f"audio path is a symlink to {os.readlink(path)!r}, which does not exist", "missing")


def _info(path: str | os.PathLike) -> sf._SoundFileInfo:
    if not os.path.exists(path):
        raise _missing(path)
    if not os.path.isfile(path):
        raise AudioError(path, "audio path is not a regular file", "unreadable")
    try:
        info = sf.info(str(path))
    except _SOUNDFILE_ERRORS as err:
        raise AudioError(path, f"audio file is unreadable ({err})", "unreadable") from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise _no_samples(path)
    return info


def _no_samples(path: str | os.PathLike) -> AudioError:
    size = os.path.getsize(path)
    if size > EMPTY_FILE_BYTES:  # a header alone is smaller: the data are there but do not decode
        return AudioError(
            path, f"no samples could be decoded from its {size} bytes (truncated or corrupt)", "unreadable"
        )
    return AudioError(path, f"audio file is empty (0 samples): {size} bytes, a header at most", "empty")


def _check_samples(path: str | os.PathLike, x: np.ndarray, step: str) -> None:
    """Raise unless every sample of ``x`` is finite and within :data:`MAX_ABS_SAMPLE` (``step``: where, for the message)."""
    finite = np.isfinite(x)
    if not finite.all():
        bad = int(np.count_nonzero(~finite))
        raise AudioError(path, f"audio contains {bad} NaN/inf samples {step}", "non_finite")
    peak = float(np.max(np.abs(x)))
    if peak > MAX_ABS_SAMPLE:
        raise AudioError(
            path, f"audio samples reach {peak:.3g} {step}, over {MAX_ABS_SAMPLE:g} (full scale is 1): corrupt data",
            "out_of_range",
        )  # fmt: skip


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
        path: any format libsndfile reads (:data:`AUDIO_EXTENSIONS`: wav, flac, ogg/oga/opus, mp3 with
            libsndfile >= 1.1, aiff, ...).
        sr: target sample rate.
        check_silent: raise on an all-silent file (``|x| < 1e-8`` everywhere).

    Returns:
        np.ndarray of shape ``(T,)``, dtype float32.

    Raises:
        AudioError: missing, unreadable or corrupt, empty (0 samples), silent, NaN/inf samples, or samples over
            :data:`MAX_ABS_SAMPLE`; the message names the path and says which.
    """
    _info(path)
    try:
        data, file_sr = sf.read(str(path), dtype="float64", always_2d=True)  # (T, C)
    except _SOUNDFILE_ERRORS as err:
        raise AudioError(path, f"audio file is unreadable ({err})", "unreadable") from err
    if data.shape[0] == 0:
        raise _no_samples(path)
    # Checked before resampling too: the resampler would smear one NaN over the whole filter length.
    _check_samples(path, data, "as decoded")
    wav = data.mean(axis=1)  # (T,), float64: the average of huge float32 samples cannot overflow
    if check_silent and float(np.max(np.abs(wav))) < SILENCE_THRESHOLD:
        channel_peak = float(np.max(np.abs(data)))
        if channel_peak >= SILENCE_THRESHOLD:
            raise AudioError(
                path, f"its {data.shape[1]} channels cancel out when averaged to mono (channel peak {channel_peak:.3g}, "
                "mono peak below 1e-8): opposite-phase channels", "silent",
            )  # fmt: skip
        raise AudioError(path, "audio is silent (all samples below 1e-8)", "silent")
    if file_sr != sr:
        # soxr is librosa's default resampler (res_type="soxr_hq"); called directly, it spares librosa's slow import
        import soxr

        wav = soxr.resample(wav, file_sr, sr, quality="HQ")
        _check_samples(path, wav, "after resampling")
    return np.ascontiguousarray(wav, dtype=np.float32)


def write_wav(path: str | os.PathLike, wav: np.ndarray, sr: int) -> None:
    """Write a mono waveform as 16-bit PCM wav (samples are clipped to [-1, 1]); parent folders are created."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wav, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")


def check_audio_file(path: str | os.PathLike, *, decode: bool = False) -> float:
    """Check that a file can be used for training and return its duration in seconds.

    With ``decode=False`` only the header is read (existence, readability, sample count). With ``decode=True`` the
    whole file is decoded and also checked for silence and NaN/inf or out-of-range samples, as :func:`load_audio` does.
    """
    info = _info(path)
    if decode:
        load_audio(path, sr=info.samplerate)  # native rate: the checks need no resampling
    return info.frames / info.samplerate
