"""Helpers of the converter tests: tiny wav files and input files in the releases' formats, under tmp_path."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf


def wav_writer(tmp_path):
    """``wav(relative_path, seconds=2.0, sr=16000)`` writes a short noise file under tmp_path/audio."""

    def make(name: str, seconds: float = 2.0, sr: int = 16000):
        path = tmp_path / "audio" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(len(name))
        sf.write(path, 0.05 * rng.standard_normal(int(seconds * sr)), sr, subtype="PCM_16")
        return path

    return make


def file_writer(tmp_path):
    """``write(name, obj_or_text)``: JSON for objects, text as is; returns the path."""

    def make(name: str, content):
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    return make
