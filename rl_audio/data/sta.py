"""Supervised timestamp alignment (STA) data from word-timestamped transcripts, following TGSR
("Listen First, Then Answer: Timestamp-Grounded Speech Reasoning", arXiv:2603.19468) §3.1.

TGSR transcribes speech with whisper-timestamped, samples a phrase from the transcript and asks for its time span:
"What is the timestamp of the following segment? <phrase>" -> "The segment <phrase> starts at X.XX seconds and
ends at Y.YY seconds." (:mod:`rl_audio.data.templates` holds App. B.1's templates, one per base model).

Input: one whisper-timestamped JSON per audio file, ``{"text", "segments": [{..., "words": [{"text", "start",
"end", "confidence"}]}], "language"}``, matched to the audio by file stem (``talk.json``, ``talk.words.json`` and
``talk.wav.words.json`` all match ``talk.wav``). Two kinds of span (``span``):

- ``"sentence"``: a spoken sentence, as TGSR's "[given sentence]" (§3.1, App. B.1; Table 1 calls the stage
  "sentence-level timestamp alignment"). whisper-timestamped gives no sentence list, so a sentence is read from
  the punctuation Whisper writes on the words: it runs from the word after the previous sentence end to the next
  word whose text ends in ``.``, ``!``, ``?``, ``…`` (or their CJK forms), closing quotes and brackets allowed after
  it, and it may cross segment boundaries. Words after the last such word (an unfinished sentence) and sentences
  with an unusable word are not used. Abbreviations such as "Mr." end a sentence too; the phrase and its window
  still match each other. Default length 2-40 words (our choice: one word is hard to localise from the
  transcript's word timing alone, and a run of more than 40 words is usually missing punctuation).
- ``"ngram"``: 3-8 consecutive words of one segment (the default; lengths configurable).

A span's window is [start of its first word, end of its last word]. Phrases that occur more than once in a
transcript (as consecutive words anywhere in it) are never used, since their answer would be ambiguous; spans of
one file do not overlap.
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
SPAN_WORDS = {"ngram": (3, 8), "sentence": (2, 40)}
"""Span kind -> default (min_words, max_words)."""
SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*$")
"""A word that ends a sentence: terminal punctuation, then optional closing quotes or brackets."""

Span = tuple[tuple[int, int], ...]  # the (segment, word) positions of consecutive words


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


def ngram_spans(segments: list[list[dict | None]], min_words: int, max_words: int) -> list[Span]:
    """Every run of ``min_words``-``max_words`` usable words inside one segment."""
    spans = []
    for s, words in enumerate(segments):
        for i in range(len(words)):
            for n in range(min_words, max_words + 1):
                window = words[i : i + n]
                if len(window) == n and None not in window:
                    spans.append(tuple((s, k) for k in range(i, i + n)))
    return spans


def sentence_spans(segments: list[list[dict | None]], min_words: int, max_words: int) -> list[Span]:
    """The transcript's sentences of ``min_words``-``max_words`` words (see the module docstring).

    >>> words = [{"text": t} for t in ("Hello", "there.", "How", "are", "you?", "I")]
    >>> sentence_spans([words[:3], words[3:]], 1, 10)
    [((0, 0), (0, 1)), ((0, 2), (1, 0), (1, 1))]
    """
    spans, current, usable = [], [], True
    for s, words in enumerate(segments):
        for i, word in enumerate(words):
            if word is None:
                usable = False  # the sentence holds an unusable word: drop it whole
                continue
            current.append((s, i))
            if SENTENCE_END.search(word["text"]):
                if usable and min_words <= len(current) <= max_words:
                    spans.append(tuple(current))
                current, usable = [], True
    return spans


def _unique(segments: list[list[dict | None]], spans: list[Span]) -> list[Span]:
    """The spans whose token sequence occurs once in the whole transcript (runs of usable words across segments)."""
    stream: list[str | None] = [w["token"] if w else None for seg in segments for w in seg]
    counts: Counter = Counter()
    for n in {len(span) for span in spans}:
        for i in range(len(stream) - n + 1):
            window = stream[i : i + n]
            if None not in window:
                counts[tuple(window)] += 1
    return [span for span in spans if counts[tuple(segments[s][i]["token"] for s, i in span)] == 1]


SPAN_BUILDERS = {"ngram": ngram_spans, "sentence": sentence_spans}


def _span_kind(span: str) -> str:
    if span not in SPAN_BUILDERS:
        raise ValueError(f"unknown STA span {span!r} (valid: {', '.join(SPAN_BUILDERS)})")
    return span


def sample_spans(
    segments, rng: np.random.Generator, *, min_words: int, max_words: int, count: int, span: str = "ngram"
) -> list[Span]:
    """Up to ``count`` non-overlapping unique spans, drawn uniformly among the candidates, in transcript order."""
    candidates = _unique(segments, SPAN_BUILDERS[_span_kind(span)](segments, min_words, max_words))
    chosen, used = [], set()
    for index in rng.permutation(len(candidates)):
        positions = candidates[int(index)]
        (s0, i0), (s1, i1) = positions[0], positions[-1]
        if used.intersection(positions) or segments[s1][i1]["end"] <= segments[s0][i0]["start"]:
            continue  # overlaps a chosen span, or has zero length (no window to learn)
        chosen.append(positions)
        used.update(positions)
        if len(chosen) == count:
            break
    return sorted(chosen)


def word_range(span: str, min_words: int | None, max_words: int | None) -> tuple[int, int]:
    """``(min_words, max_words)`` with the span kind's defaults (:data:`SPAN_WORDS`) filled in, checked."""
    low, high = SPAN_WORDS[_span_kind(span)]
    low, high = low if min_words is None else min_words, high if max_words is None else max_words
    if not 1 <= low <= high:
        raise ValueError(f"need 1 <= min_words <= max_words, got {low}, {high}")
    return low, high


def sta_rows_for_file(
    transcript, audio: Path, rng, *, span="ngram", min_words=None, max_words=None, spans_per_file=3
) -> list[dict]:
    """STA rows for one transcript/audio pair (raises TranscriptError or AudioError).

    ``span`` is ``"ngram"`` or ``"sentence"``; ``min_words`` / ``max_words`` default to :data:`SPAN_WORDS`.
    """
    min_words, max_words = word_range(span, min_words, max_words)
    segments = read_transcript(transcript)
    duration = audio_duration(audio)
    last_end = max((w["end"] for seg in segments for w in seg if w), default=0.0)
    if last_end > duration + OVERRUN_S:
        # a transcript of another (longer) file: clamping its times would write wrong labels
        raise TranscriptError(transcript, f"words run to {last_end} s but {audio} lasts {duration:.2f} s", "overrun")
    rows = []
    spans = sample_spans(segments, rng, min_words=min_words, max_words=max_words, count=spans_per_file, span=span)
    for k, positions in enumerate(spans):
        words = [segments[s][i] for s, i in positions]
        start, end = round(words[0]["start"], 3), round(min(words[-1]["end"], duration), 3)
        if start >= end:
            continue  # the phrase starts at the very end of the audio
        confidences = [w["confidence"] for w in words if isinstance(w["confidence"], (int, float))]
        meta = {"source": "whisper-timestamped", "segment": positions[0][0], "span": span}
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
        what = "sentence" if span == "sentence" else "span"
        raise TranscriptError(transcript, f"no unique {what} of {min_words}-{max_words} timed words", "too_few_words")
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
    span: str = "ngram",
    min_words: int | None = None,
    max_words: int | None = None,
    spans_per_file: int = 3,
    skip_invalid: bool = False,
    progress: bool = False,
) -> tuple[list[dict], Counter]:
    """STA rows for every transcript in ``whisper_dir`` whose audio is in ``audio_dir`` (matched by stem).

    ``span``: ``"sentence"`` (TGSR §3.1's spoken sentences) or ``"ngram"``; ``min_words`` / ``max_words`` default
    to the kind's range in :data:`SPAN_WORDS` (ngram 3-8, sentence 2-40).

    Returns:
        ``(rows, skipped)``: ``skipped`` counts files dropped by reason (``no_audio``, ``malformed_json``,
        ``no_words``, ``too_few_words``, ``overrun``, ``audio_<kind>``); they only drop when ``skip_invalid`` is set.

    Raises:
        TranscriptError | AudioError: the first unusable file, unless ``skip_invalid``.
    """
    min_words, max_words = word_range(span, min_words, max_words)
    rows, skipped = [], Counter()
    for index, (transcript, audio) in enumerate(tqdm(_pair_files(whisper_dir, audio_dir), disable=not progress)):
        rng = np.random.default_rng([seed, index])
        try:
            if audio is None:
                raise TranscriptError(transcript, f"no audio file with this stem in {audio_dir}", "no_audio")
            rows.extend(
                sta_rows_for_file(
                    transcript,
                    audio,
                    rng,
                    span=span,
                    min_words=min_words,
                    max_words=max_words,
                    spans_per_file=spans_per_file,
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
