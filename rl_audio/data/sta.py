"""Supervised timestamp alignment (STA) data from word-timestamped transcripts, following TGSR
("Listen First, Then Answer: Timestamp-Grounded Speech Reasoning", arXiv:2603.19468) §3.1.

TGSR transcribes speech with whisper-timestamped, samples a phrase from the transcript and asks for its time span:
"What is the timestamp of the following segment? <phrase>" -> "The segment <phrase> starts at X.XX seconds and
ends at Y.YY seconds." (see :mod:`rl_audio.data.templates`).

Input: one whisper-timestamped JSON per audio file, ``{"text", "segments": [{..., "words": [{"text", "start",
"end", "confidence"}]}], "language"}``, matched to the audio by file stem (``talk.json``, ``talk.words.json`` and
``talk.wav.words.json`` all match ``talk.wav``). A phrase is 3-8 consecutive words of one segment (configurable);
its window is [start of the first word, end of the last word]. Phrases that occur more than once in a transcript
are never used, since their answer would be ambiguous; spans of one file do not overlap.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .audio import AudioError, audio_duration
from .manifest import write_manifest
from .sources import AUDIO_EXTENSIONS, list_audio_files

logger = logging.getLogger(__name__)

DISFLUENCY = "[*]"  # whisper-timestamped's marker for detected disfluencies
OVERRUN_S = 0.5  # word times may pass the audio's end by this much (then they are clamped), no more


class TranscriptError(ValueError):
    """A whisper-timestamped file that cannot be used; ``kind`` counts skips by reason."""

    def __init__(self, path: str | os.PathLike, reason: str, kind: str):
        self.kind = kind
        super().__init__(f"{path}: {reason}")


def transcript_stem(path: str | os.PathLike) -> str:
    """``talk.wav.words.json`` -> ``talk``: strip ``.json``, then ``.words``, then an audio extension."""
    name = Path(path).name
    for suffix in (".json", ".words", *AUDIO_EXTENSIONS):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _word(raw) -> dict | None:
    """A clean word ``{text, start, end, confidence, token}`` or None when unusable (bad times, disfluency)."""
    if not isinstance(raw, dict):
        return None
    text, start, end = str(raw.get("text", "")).strip(), raw.get("start"), raw.get("end")
    numbers = (start, end)
    if not text or text == DISFLUENCY or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in numbers):
        return None
    if end < start or start < 0:
        return None
    token = re.sub(r"[^\w']+", "", text.lower())
    return {
        "text": text,
        "start": float(start),
        "end": float(end),
        "confidence": raw.get("confidence"),
        "token": token,
    }


def read_transcript(path: str | os.PathLike) -> list[list[dict | None]]:
    """Words per segment (``None`` marks an unusable word, which no phrase may cross).

    Raises:
        TranscriptError: malformed JSON, or not whisper-timestamped's format.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TranscriptError(path, f"malformed JSON ({err})", "malformed_json") from err
    segments = data.get("segments") if isinstance(data, dict) else None
    if not isinstance(segments, list) or not all(isinstance(s, dict) and "words" in s for s in segments):
        raise TranscriptError(path, "expected whisper-timestamped JSON: segments with word timestamps", "no_words")
    return [[_word(w) for w in s["words"]] if isinstance(s["words"], list) else [] for s in segments]


def _candidates(segments: list[list[dict | None]], min_words: int, max_words: int) -> list[tuple[int, int, int]]:
    """All (segment, first word, word count) spans made of usable words, whose token sequence is unique."""
    sequences = [[w["token"] if w else None for w in seg] for seg in segments]
    seen: Counter = Counter()
    spans = []
    for s, tokens in enumerate(sequences):
        for i in range(len(tokens)):
            for n in range(min_words, max_words + 1):
                window = tokens[i : i + n]
                if len(window) == n and None not in window:
                    seen[tuple(window)] += 1
                    spans.append((s, i, n))
    return [(s, i, n) for s, i, n in spans if seen[tuple(sequences[s][i : i + n])] == 1]


def sample_spans(segments, rng: np.random.Generator, *, min_words: int, max_words: int, count: int) -> list[tuple]:
    """Up to ``count`` non-overlapping unique spans, drawn uniformly among the candidates, in transcript order."""
    candidates = _candidates(segments, min_words, max_words)
    chosen, used = [], set()
    for index in rng.permutation(len(candidates)):
        s, i, n = candidates[int(index)]
        positions = {(s, k) for k in range(i, i + n)}
        first, last = segments[s][i], segments[s][i + n - 1]
        if positions & used or last["end"] <= first["start"]:
            continue  # overlaps a chosen span, or has zero length (no window to learn)
        chosen.append((s, i, n))
        used |= positions
        if len(chosen) == count:
            break
    return sorted(chosen)


def sta_rows_for_file(transcript, audio: Path, rng, *, min_words=3, max_words=8, spans_per_file=3) -> list[dict]:
    """STA rows for one transcript/audio pair (raises TranscriptError or AudioError)."""
    segments = read_transcript(transcript)
    duration = audio_duration(audio)
    last_end = max((w["end"] for seg in segments for w in seg if w), default=0.0)
    if last_end > duration + OVERRUN_S:
        # a transcript of another (longer) file: clamping its times would write wrong labels
        raise TranscriptError(transcript, f"words run to {last_end} s but {audio} lasts {duration:.2f} s", "overrun")
    rows = []
    spans = sample_spans(segments, rng, min_words=min_words, max_words=max_words, count=spans_per_file)
    for k, (s, i, n) in enumerate(spans):
        words = segments[s][i : i + n]
        start, end = round(words[0]["start"], 3), round(min(words[-1]["end"], duration), 3)
        if start >= end:
            continue  # the phrase starts at the very end of the audio
        confidences = [w["confidence"] for w in words if isinstance(w["confidence"], (int, float))]
        meta = {"source": "whisper-timestamped", "segment": s}
        if confidences:
            meta["confidence"] = round(float(np.mean(confidences)), 3)
        rows.append(
            {
                "id": f"{audio.stem}-sta{k:03d}",
                "audio": str(audio.resolve()),
                "duration": round(duration, 3),
                "task": "sta",
                "query": " ".join(w["text"] for w in words),
                "windows": [[start, end]],
                "meta": meta,
            }
        )
    if not rows:
        raise TranscriptError(transcript, f"no unique span of {min_words}-{max_words} timed words", "too_few_words")
    return rows


def _pair_files(whisper_dir, audio_dir) -> list[tuple[Path, Path | None]]:
    audio_by_stem: dict[str, Path] = {}
    for path in list_audio_files(audio_dir, expected=(".json",)):  # transcripts may sit beside the audio
        if path.stem in audio_by_stem:
            raise ValueError(f"two audio files share the stem {path.stem!r}: {audio_by_stem[path.stem]} and {path}")
        audio_by_stem[path.stem] = path
    transcripts = sorted(Path(whisper_dir).rglob("*.json"))
    if not transcripts:
        raise ValueError(f"{whisper_dir}: no whisper-timestamped .json files")
    return [(t, audio_by_stem.get(transcript_stem(t))) for t in transcripts]


def build_sta_rows(
    whisper_dir: str | os.PathLike,
    audio_dir: str | os.PathLike,
    *,
    seed: int = 0,
    min_words: int = 3,
    max_words: int = 8,
    spans_per_file: int = 3,
    skip_invalid: bool = False,
    progress: bool = False,
) -> tuple[list[dict], Counter]:
    """STA rows for every transcript in ``whisper_dir`` whose audio is in ``audio_dir`` (matched by stem).

    Returns:
        ``(rows, skipped)``: ``skipped`` counts files dropped by reason (``no_audio``, ``malformed_json``,
        ``no_words``, ``too_few_words``, ``overrun``, ``audio_<kind>``); they only drop when ``skip_invalid`` is set.

    Raises:
        TranscriptError | AudioError: the first unusable file, unless ``skip_invalid``.
    """
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    rows, skipped = [], Counter()
    for index, (transcript, audio) in enumerate(tqdm(_pair_files(whisper_dir, audio_dir), disable=not progress)):
        rng = np.random.default_rng([seed, index])
        try:
            if audio is None:
                raise TranscriptError(transcript, f"no audio file with this stem in {audio_dir}", "no_audio")
            rows.extend(
                sta_rows_for_file(
                    transcript, audio, rng, min_words=min_words, max_words=max_words, spans_per_file=spans_per_file
                )
            )
        except (TranscriptError, AudioError) as err:
            if not skip_invalid:
                raise
            kind = err.kind if isinstance(err, TranscriptError) else f"audio_{err.kind}"
            skipped[kind] += 1
            logger.debug("skipped %s", err)
    if skipped:
        logger.warning("skipped %d transcripts: %s", sum(skipped.values()), dict(sorted(skipped.items())))
    return rows, skipped


def build_sta_manifest(whisper_dir, audio_dir, out: str | os.PathLike, **kwargs) -> tuple[Path, list[dict], Counter]:
    """Build STA rows (``kwargs`` as in :func:`build_sta_rows`) and write them to ``out``."""
    rows, skipped = build_sta_rows(whisper_dir, audio_dir, **kwargs)
    return write_manifest(rows, out), rows, skipped
