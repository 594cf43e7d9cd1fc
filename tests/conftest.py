"""Fixtures shared by the whole suite: a per-session preset cache, generated audio and small data sets.

- Tiny presets are built from configs on first use and cached under ``$RL_AUDIO_CACHE``. The session points that
  variable at a fresh temporary folder before any test runs, so every preset is built once per session (from its
  seed, no download) and nothing from a user's own cache leaks into the tests. Subprocesses inherit it.
- ``default_data`` is the embedded default data set, generated once per session; pass ``default_data_args`` to an
  entry point so that it reuses these files instead of generating its own.
- ``sta_manifest`` is a small STA manifest built by ``rl_audio.data.sta`` from hand-made whisper-timestamped
  transcripts and speech-like audio whose voiced bursts sit exactly at the transcript's word times.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

SR = 16000
DEFAULT_CLIPS = 8  # clips of the session's default data set (each gives 4 rows: grounding and existence, +/-)


@pytest.fixture(scope="session", autouse=True)
def rl_audio_cache(tmp_path_factory):
    """A fresh preset cache for the session (``RL_AUDIO_CACHE``), set before any preset is resolved."""
    path = tmp_path_factory.mktemp("rl_audio_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RL_AUDIO_CACHE", str(path))
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        yield path


def tone_noise(seconds: float, seed: int = 0, freq: float = 440.0) -> np.ndarray:
    """A 16 kHz test signal: a tone whose pitch drifts over time plus noise, so neighbouring frames differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SR))) / SR
    sweep = np.sin(2 * np.pi * (freq * t + 20.0 * t**2))
    return (0.3 * sweep + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="session")
def make_audio():
    """``make_audio(seconds, seed=0)`` -> float32 waveform at 16 kHz (tone sweep in noise)."""
    return tone_noise


@pytest.fixture
def write_wav(tmp_path):
    """``write_wav(name, seconds, seed=0)`` -> path of a 16 kHz PCM wav under tmp_path."""

    def write(name: str, seconds: float, seed: int = 0):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone_noise(seconds, seed), SR, subtype="PCM_16")
        return path

    return write


@pytest.fixture(scope="session")
def default_data(tmp_path_factory):
    """The embedded default data set with DEFAULT_CLIPS training clips: {"dir", "train", "test"}."""
    from rl_audio.data import build_default_dataset

    out = tmp_path_factory.mktemp("default_data")
    paths = build_default_dataset(out, num_train=DEFAULT_CLIPS, num_test=max(8, DEFAULT_CLIPS // 4), progress=False)
    return {"dir": out, **paths}


@pytest.fixture(scope="session")
def default_data_args(default_data):
    """Command-line overrides that make an entry point reuse the session's default data set."""
    return ["--data_dir", str(default_data["dir"]), "--default_data_clips", str(DEFAULT_CLIPS)]


_TRANSCRIPTS = {
    "talk_a": [
        [("the", 0.40, 0.62), ("train", 0.70, 1.10), ("leaves", 1.18, 1.60), ("at", 1.70, 1.85), ("nine", 1.95, 2.40)],
        [("please", 3.10, 3.50), ("mind", 3.60, 3.95), ("the", 4.02, 4.15), ("gap", 4.25, 4.80)],
    ],
    "talk_b": [
        [("a", 0.30, 0.40), ("dog", 0.50, 0.90), ("barks", 1.00, 1.45), ("twice", 1.55, 2.10)],
        [("then", 2.90, 3.20), ("the", 3.28, 3.40), ("door", 3.50, 3.95), ("closes", 4.05, 4.70)],
    ],
}


def speech_like(words: list[tuple[str, float, float]], seconds: float, seed: int) -> np.ndarray:
    """Voiced bursts (harmonics of a gliding f0 under a Hann envelope) at the word times, faint noise elsewhere."""
    rng = np.random.default_rng(seed)
    wav = 0.003 * rng.standard_normal(int(seconds * SR))
    for k, (_, start, end) in enumerate(words):
        t = np.arange(int(round((end - start) * SR))) / SR
        f0 = 110.0 + 15.0 * k + 40.0 * t
        phase = 2 * np.pi * np.cumsum(f0) / SR
        voiced = sum(np.sin(h * phase) / h for h in range(1, 8))
        i = int(round(start * SR))
        wav[i : i + t.size] += 0.2 * np.hanning(t.size) * voiced
    return wav.astype(np.float32)


@pytest.fixture(scope="session")
def sta_manifest(tmp_path_factory):
    """An STA manifest from hand-made whisper-timestamped JSON and speech-like audio (TGSR §3.1)."""
    from rl_audio.data import build_sta_manifest

    root = tmp_path_factory.mktemp("sta")
    (root / "whisper").mkdir()
    (root / "audio").mkdir()
    for k, (stem, segments) in enumerate(_TRANSCRIPTS.items()):
        words = [w for seg in segments for w in seg]
        sf.write(root / "audio" / f"{stem}.wav", speech_like(words, 5.5, k), SR, subtype="PCM_16")
        doc = {
            "text": " ".join(w for w, _, _ in words),
            "language": "en",
            "segments": [
                {
                    "id": s,
                    "start": seg[0][1],
                    "end": seg[-1][2],
                    "text": " ".join(w for w, _, _ in seg),
                    "words": [{"text": w, "start": a, "end": b, "confidence": 0.9} for w, a, b in seg],
                }
                for s, seg in enumerate(segments)
            ],
        }
        (root / "whisper" / f"{stem}.words.json").write_text(json.dumps(doc))
    path, rows, _ = build_sta_manifest(root / "whisper", root / "audio", root / "sta.jsonl", spans_per_file=2)
    assert rows and all(r["task"] == "sta" for r in rows)
    return path


@pytest.fixture
def subprocess_env():
    """Environment for entry points run as subprocesses: one thread each (2-core machines), no hub access."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
