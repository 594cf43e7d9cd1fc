"""Where the synthetic builder takes its foregrounds and backgrounds from: procedural generators or folders.

A folder of real foregrounds has one subfolder per class; the subfolder's name is the caption (underscores read as
spaces), e.g. ``foregrounds/a_dog_barking/*.wav``. A folder of backgrounds holds audio files at any depth. Files are
listed in sorted order so that a seed gives the same clips on every machine.

Real foregrounds are trimmed as SpotSound (arXiv:2604.13023, §3.1) trims VGGSound clips: leading and trailing
frames more than 20 dB below the mean signal power are removed. A file that is shorter than the builder's
``min_event`` after trimming is skipped (another file of its class is drawn; our choice: padding it with silence
would put silence inside the labelled window), and a class none of whose files is long enough is an error.

Audio files are those whose extension libsndfile decodes (:data:`rl_audio.data.audio.AUDIO_EXTENSIONS`, ``.oga``
and ``.opus`` included); other files in the folders are listed in a warning, and in the error when no audio is left.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .audio import AUDIO_EXTENSIONS, load_audio
from .sounds import SOUND_CLASSES, render_background, unit_rms

logger = logging.getLogger(__name__)

TRIM_DB = 20.0
_SHOWN = 5  # skipped files named in a message


def _split_files(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))
    audio = [p for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
    return audio, [p for p in files if p.suffix.lower() not in AUDIO_EXTENSIONS]


def describe_skipped(skipped: list[Path]) -> str:
    """``"3 file(s) skipped (extension not among those libsndfile decodes): a.m4a, b.txt, c.wma"`` (five named)."""
    names = ", ".join(str(p) for p in skipped[:_SHOWN]) + (
        f", ... ({len(skipped) - _SHOWN} more)" if len(skipped) > _SHOWN else ""
    )
    return f"{len(skipped)} file(s) skipped (extension not among those libsndfile decodes): {names}"


def list_audio_files(folder: str | os.PathLike, *, expected: tuple[str, ...] = ()) -> list[Path]:
    """Audio files under ``folder`` (any depth, hidden files aside), sorted; other files are named in a warning,
    except those ending in one of ``expected`` (e.g. the transcripts that sit beside STA audio)."""
    audio, skipped = _split_files(folder)
    skipped = [p for p in skipped if not p.name.lower().endswith(expected)] if expected else skipped
    if skipped:
        logger.warning("%s: %s", folder, describe_skipped(skipped))
    return audio


def trim_quiet_edges(wav: np.ndarray, sr: int, *, below_db: float = TRIM_DB, frame_s: float = 0.02) -> np.ndarray:
    """Drop leading/trailing frames whose power is more than ``below_db`` dB under the mean power."""
    frame = max(1, int(frame_s * sr))
    n_frames = wav.size // frame
    if n_frames < 2:
        return wav
    power = np.mean(np.square(wav[: n_frames * frame].reshape(n_frames, frame)), axis=1)  # (n_frames,)
    loud = np.flatnonzero(power >= np.mean(power) * 10 ** (-below_db / 10))
    if loud.size == 0:
        return wav
    return wav[loud[0] * frame : (loud[-1] + 1) * frame]


class ProceduralForegrounds:
    """The procedural classes of :data:`rl_audio.data.sounds.SOUND_CLASSES`."""

    def __init__(self):
        self.classes = list(SOUND_CLASSES.values())
        self.captions = [c.captions for c in self.classes]

    def render(self, index: int, rng: np.random.Generator, n: int, sr: int, min_n: int = 1) -> np.ndarray:
        """An instance of class ``index`` lasting exactly ``n`` samples (``>= min_n``), unit RMS."""
        return self.classes[index].render(rng, n, sr)


class FolderForegrounds:
    """Real foregrounds: ``folder/<caption>/<files>``; each instance is a trimmed, possibly cropped file."""

    def __init__(self, folder: str | os.PathLike):
        subdirs = sorted(p for p in Path(folder).iterdir() if p.is_dir())
        split = [_split_files(d) for d in subdirs]
        self.folders = subdirs
        self.files = [audio for audio, _ in split]
        self.captions = [(d.name.replace("_", " ").strip(),) for d in subdirs]
        skipped = [p for _, other in split for p in other]
        empty = [d.name for d, files in zip(subdirs, self.files) if not files]
        if not subdirs or empty:
            raise ValueError(
                f"{folder}: need one subfolder of audio files per class (without audio: {empty or 'all'})"
                + (f"; {describe_skipped(skipped)}" if skipped else "")
            )
        if skipped:
            logger.warning("%s: %s", folder, describe_skipped(skipped))

    def render(self, index: int, rng: np.random.Generator, n: int, sr: int, min_n: int = 1) -> np.ndarray:
        """A random file of class ``index``, trimmed, cropped at random to at most ``n`` samples, unit RMS.

        Files shorter than ``min_n`` samples after trimming are skipped: the next file of a random order is tried.

        Raises:
            ValueError: no file of the class lasts ``min_n`` samples after trimming (the message names the folder
                and its longest file).
        """
        files, longest = self.files[index], (0, None)
        for k in rng.permutation(len(files)):
            wav = trim_quiet_edges(load_audio(files[int(k)], sr=sr), sr)
            if wav.size >= min_n:
                break
            longest = max(longest, (wav.size, str(files[int(k)])), key=lambda t: t[0])
        else:
            raise ValueError(
                f"{self.folders[index]}: no file lasts the minimum event length of {min_n / sr:.3f} s after trimming "
                f"quiet edges (longest: {longest[1]}, {longest[0] / sr:.3f} s); add longer files or lower min_event"
            )
        if wav.size > n:
            start = int(rng.integers(wav.size - n + 1))
            wav = wav[start : start + n]
        return unit_rms(wav.astype(np.float64))


class ProceduralBackgrounds:
    """Procedural ambience from :func:`rl_audio.data.sounds.render_background`."""

    def render(self, rng: np.random.Generator, n: int, sr: int) -> tuple[np.ndarray, str]:
        return render_background(rng, n, sr)


class FolderBackgrounds:
    """Real ambience: a random file, looped if too short, cropped at random to the clip length."""

    def __init__(self, folder: str | os.PathLike):
        self.files, skipped = _split_files(folder)
        if not self.files:
            raise ValueError(
                f"{folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)})"
                + (f"; {describe_skipped(skipped)}" if skipped else "")
            )
        if skipped:
            logger.warning("%s: %s", folder, describe_skipped(skipped))

    def render(self, rng: np.random.Generator, n: int, sr: int) -> tuple[np.ndarray, str]:
        path = self.files[int(rng.integers(len(self.files)))]
        wav = load_audio(path, sr=sr).astype(np.float64)
        if wav.size < n:
            wav = np.tile(wav, -(-n // wav.size))
        start = int(rng.integers(wav.size - n + 1))
        return unit_rms(wav[start : start + n]), path.name
