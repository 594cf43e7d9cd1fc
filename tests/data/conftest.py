"""Shared helpers for the data pipeline tests: tiny wav files and manifests written under tmp_path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

SR = 16000


@pytest.fixture
def make_wav(tmp_path):
    """``make_wav(name, seconds=2.0, sr=16000, data=None, subtype="PCM_16")`` -> path of a written wav."""

    def make(name="clip.wav", seconds=2.0, sr=SR, data=None, subtype="PCM_16"):
        if data is None:
            rng = np.random.default_rng(0)
            data = 0.1 * rng.standard_normal(int(seconds * sr))
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, data, sr, subtype=subtype)
        return path

    return make


@pytest.fixture
def write_lines(tmp_path):
    """``write_lines(rows_or_strings, name="m.jsonl")`` writes one JSON object (or raw string) per line."""

    def write(lines, name="m.jsonl"):
        path = tmp_path / name
        text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
        path.write_text("\n".join(text) + "\n")
        return path

    return write


@pytest.fixture
def grounding_row():
    """``grounding_row(**overrides)`` -> a valid grounding row (2 s clip.wav, window [0.5, 1.0])."""

    def make(**overrides):
        row = {"id": "r1", "audio": "clip.wav", "duration": 2.0, "task": "grounding", "query": "a dog barking"}
        return {**row, "windows": [[0.5, 1.0]], **overrides}

    return make
