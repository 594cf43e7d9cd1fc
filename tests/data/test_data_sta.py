import json
import re

import numpy as np
import pytest

from rl_audio.data.audio import AudioError
from rl_audio.data.manifest import load_manifest
from rl_audio.data.sta import (
    TranscriptError,
    build_sta_manifest,
    build_sta_rows,
    read_transcript,
    sta_rows_for_file,
    transcript_stem,
)
from rl_audio.data.templates import render_question, render_target


def _segment(seg_id, words, **extra):
    """A segment in whisper-timestamped's output format (words: (text, start, end, confidence))."""
    return {
        "id": seg_id,
        "seek": 0,
        "start": words[0][1],
        "end": words[-1][2],
        "text": " " + " ".join(w[0] for w in words),
        "tokens": [50364, 1012, 7890],
        "temperature": 0.0,
        "avg_logprob": -0.31,
        "compression_ratio": 1.2,
        "no_speech_prob": 0.02,
        "confidence": 0.9,
        "words": [{"text": t, "start": s, "end": e, "confidence": c} for t, s, e, c in words],
        **extra,
    }


SEG0 = [
    ("I", 0.5, 0.62, 0.91),
    ("hope", 0.62, 0.9, 0.95),
    ("the", 0.9, 1.02, 0.99),
    ("scientist", 1.02, 1.6, 0.97),
    ("who", 1.6, 1.78, 0.98),
    ("confirms", 1.78, 2.3, 0.9),
    ("stream", 2.3, 2.66, 0.7),
    ("theory,", 2.66, 3.1, 0.88),
]
SEG1 = [("will", 3.6, 3.8, 0.9), ("win", 3.8, 4.1, 0.93), ("a", 4.1, 4.16, 0.99), ("prize.", 4.16, 4.7, 0.96)]


def _transcript(segments):
    return {"text": "".join(s["text"] for s in segments), "segments": segments, "language": "en"}


@pytest.fixture
def corpus(tmp_path, make_wav):
    (tmp_path / "whisper").mkdir()
    make_wav("audio/talk.wav", seconds=5.0)
    make_wav("audio/other.flac", seconds=2.0)
    data = _transcript([_segment(0, SEG0), _segment(1, SEG1)])
    (tmp_path / "whisper" / "talk.wav.words.json").write_text(json.dumps(data, indent=2))
    short = _transcript(
        [_segment(0, [("Hello", 0.1, 0.4, 0.9), ("world,", 0.4, 0.8, 0.9), ("friends.", 0.8, 1.5, 0.8)])]
    )
    (tmp_path / "whisper" / "other.json").write_text(json.dumps(short))
    return tmp_path


def _words_by_start():
    return {w[1]: w for w in SEG0 + SEG1}


def test_spans_match_word_timestamps(corpus):
    rows, skipped = build_sta_rows(corpus / "whisper", corpus / "audio", seed=0, min_words=2, max_words=4)
    assert not skipped
    talk = [r for r in rows if r["id"].startswith("talk-")]
    assert len(talk) == 3 and {r["audio"] for r in talk} == {str((corpus / "audio" / "talk.wav").resolve())}
    all_words = SEG0 + SEG1
    for row in talk:
        words = row["query"].split(" ")
        assert 2 <= len(words) <= 4
        first = next(i for i, w in enumerate(all_words) if w[1] == row["windows"][0][0])
        span = all_words[first : first + len(words)]
        assert [w[0] for w in span] == words, "the phrase is the consecutive words starting at the window start"
        assert row["windows"] == [[span[0][1], span[-1][2]]]
        assert span in (SEG0[first : first + len(words)], SEG1[first - len(SEG0) : first - len(SEG0) + len(words)])
        target = render_target(row)
        assert target == (
            f"The segment {row['query']} starts at {span[0][1]:.2f} seconds and ends at {span[-1][2]:.2f} seconds."
        )
        assert render_question(row) == f"What is the timestamp of the following segment? {row['query']}"
        assert row["meta"]["confidence"] == pytest.approx(np.mean([w[3] for w in span]), abs=1e-3)
    # spans of one file do not overlap
    covered = [(r["windows"][0][0], r["windows"][0][1]) for r in talk]
    covered.sort()
    assert all(a[1] <= b[0] for a, b in zip(covered, covered[1:]))


def test_no_span_crosses_segments(corpus):
    for seed in range(10):
        rows, _ = build_sta_rows(corpus / "whisper", corpus / "audio", seed=seed, min_words=3, max_words=5)
        for row in (r for r in rows if r["id"].startswith("talk-")):
            start, end = row["windows"][0]
            assert end <= 3.1 or start >= 3.6


def test_seed_is_deterministic(corpus):
    a, _ = build_sta_rows(corpus / "whisper", corpus / "audio", seed=1)
    b, _ = build_sta_rows(corpus / "whisper", corpus / "audio", seed=1)
    assert a == b
    assert any(build_sta_rows(corpus / "whisper", corpus / "audio", seed=s)[0] != a for s in range(2, 6))


def test_repeated_phrase_is_never_used(tmp_path, make_wav):
    make_wav("a/rep.wav", seconds=5.0)
    words = [("go", 0.1, 0.3, 0.9), ("now", 0.3, 0.6, 0.9), ("stop", 0.7, 1.0, 0.9)]
    words += [("go", 1.5, 1.7, 0.9), ("now", 1.7, 2.0, 0.9), ("wait", 2.1, 2.5, 0.9)]
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "rep.json").write_text(json.dumps(_transcript([_segment(0, words)])))
    for seed in range(10):
        rows, _ = build_sta_rows(tmp_path / "w", tmp_path / "a", seed=seed, min_words=2, max_words=2, spans_per_file=5)
        assert rows and all(r["query"].lower() != "go now" for r in rows)


def test_disfluency_and_bad_words_break_spans(tmp_path, make_wav):
    make_wav("a/d.wav", seconds=5.0)
    words = [("one", 0.1, 0.3, 0.9), ("[*]", 0.3, 0.5, 0.0), ("two", 0.5, 0.7, 0.9), ("three", 0.7, 0.9, 0.9)]
    words += [("four", 1.2, 1.0, 0.9), ("five", 1.3, 1.5, 0.9), ("six", 1.5, 1.8, 0.9)]
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "d.json").write_text(json.dumps(_transcript([_segment(0, words)])))
    rows, _ = build_sta_rows(tmp_path / "w", tmp_path / "a", seed=0, min_words=2, max_words=3, spans_per_file=10)
    assert sorted(r["query"] for r in rows) == ["five six", "two three"]


def test_transcript_stem():
    assert transcript_stem("x/talk.wav.words.json") == "talk"
    assert transcript_stem("talk.words.json") == "talk"
    assert transcript_stem("talk.json") == "talk"


def test_bad_inputs(tmp_path, make_wav):
    (tmp_path / "w").mkdir()
    broken, plain = tmp_path / "w" / "broken.json", tmp_path / "w" / "plain.json"
    broken.write_text('{"segments": [')
    plain.write_text(json.dumps({"text": "hi", "segments": [{"text": "hi"}]}))
    (tmp_path / "w" / "good.json").write_text(json.dumps(_transcript([_segment(0, SEG0)])))
    (tmp_path / "w" / "lonely.json").write_text(json.dumps(_transcript([_segment(0, SEG0)])))
    make_wav("a/broken.wav", seconds=1.0)
    make_wav("a/plain.wav", seconds=1.0)
    (tmp_path / "a" / "good.wav").write_bytes(b"garbage" * 20)
    with pytest.raises(TranscriptError, match=re.escape(str(broken)) + ": malformed JSON"):
        build_sta_rows(tmp_path / "w", tmp_path / "a")
    with pytest.raises(TranscriptError, match=re.escape(str(plain)) + ": expected whisper-timestamped JSON"):
        read_transcript(plain)
    broken.unlink()
    plain.unlink()
    with pytest.raises(AudioError, match=re.escape(str(tmp_path / "a" / "good.wav")) + ": audio file is unreadable"):
        build_sta_rows(tmp_path / "w", tmp_path / "a")
    (tmp_path / "a" / "good.wav").unlink()
    with pytest.raises(TranscriptError, match="good.json: no audio file with this stem"):
        build_sta_rows(tmp_path / "w", tmp_path / "a")


def test_skip_invalid_counts_by_reason(tmp_path, make_wav):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "broken.json").write_text('{"segments": [')
    (tmp_path / "w" / "plain.json").write_text(json.dumps({"text": "hi", "segments": [{"text": "hi"}]}))
    (tmp_path / "w" / "few.json").write_text(json.dumps(_transcript([_segment(0, SEG1[:2])])))
    (tmp_path / "w" / "good.json").write_text(json.dumps(_transcript([_segment(0, SEG0)])))
    (tmp_path / "w" / "lonely.json").write_text(json.dumps(_transcript([_segment(0, SEG0)])))
    for name in ("broken", "plain", "few", "good"):
        make_wav(f"a/{name}.wav", seconds=4.0)
    make_wav("a/short.wav", seconds=2.0)
    (tmp_path / "w" / "short.json").write_text(json.dumps(_transcript([_segment(0, SEG0)])))  # words run to 3.1 s
    with pytest.raises(TranscriptError, match="short.json: words run to 3.1 s but .*short.wav lasts 2.00 s"):
        sta_rows_for_file(tmp_path / "w" / "short.json", tmp_path / "a" / "short.wav", np.random.default_rng(0))
    rows, skipped = build_sta_rows(tmp_path / "w", tmp_path / "a", skip_invalid=True)
    assert {r["id"].split("-")[0] for r in rows} == {"good"}
    assert dict(skipped) == {"malformed_json": 1, "no_words": 1, "too_few_words": 1, "no_audio": 1, "overrun": 1}


def test_manifest_written_relative_and_loadable(corpus):
    path, rows, _ = build_sta_manifest(corpus / "whisper", corpus / "audio", corpus / "sta.jsonl", seed=0)
    assert '"audio": "audio/talk.wav"' in path.read_text()
    loaded = load_manifest(path, check_audio=True)
    assert [r["id"] for r in loaded] == [r["id"] for r in rows]
    assert {r["task"] for r in loaded} == {"sta"}


# --- sentence spans (TGSR §3.1: "[given sentence]") -----------------------------------------------------------


def _write(tmp_path, make_wav, stem, segments, seconds=12.0):
    make_wav(f"a/{stem}.wav", seconds=seconds)
    (tmp_path / "w").mkdir(exist_ok=True)
    (tmp_path / "w" / f"{stem}.json").write_text(
        json.dumps(_transcript([_segment(k, s) for k, s in enumerate(segments)]))
    )


def test_a_sentence_runs_to_its_full_stop_across_segments(corpus):
    rows, _ = build_sta_rows(corpus / "whisper", corpus / "audio", span="sentence", spans_per_file=5)
    talk = [r for r in rows if r["id"].startswith("talk-")]
    # SEG0 ends in "theory," (no sentence end): the sentence goes on into SEG1 up to "prize."
    assert [r["query"] for r in talk] == [" ".join(w[0] for w in SEG0 + SEG1)]
    assert talk[0]["windows"] == [[SEG0[0][1], SEG1[-1][2]]]
    assert talk[0]["meta"]["span"] == "sentence" and talk[0]["meta"]["segment"] == 0
    other = [r for r in rows if r["id"].startswith("other-")]
    assert [(r["query"], r["windows"]) for r in other] == [("Hello world, friends.", [[0.1, 1.5]])]
    assert render_target(talk[0]) == (
        f"The segment {talk[0]['query']} starts at 0.50 seconds and ends at 4.70 seconds."
    )


def test_sentence_boundaries_come_from_the_punctuation_on_the_words(tmp_path, make_wav):
    words = [
        ("Look", 0.2, 0.5, 0.9),
        ("over", 0.5, 0.8, 0.9),
        ("there!", 0.8, 1.2, 0.9),  # "!" ends it
        ("He", 1.5, 1.7, 0.9),
        ("said", 1.7, 2.0, 0.9),
        ('"stop."', 2.0, 2.6, 0.9),  # closing quote after "."
        ("Is", 3.0, 3.2, 0.9),
        ("it", 3.2, 3.3, 0.9),
        ("(really", 3.3, 3.7, 0.9),
        ("true?)", 3.7, 4.2, 0.9),
        ("Yes.", 4.5, 4.9, 0.9),  # one word: shorter than the default 2
        ("and", 5.2, 5.4, 0.9),
        ("then", 5.4, 5.7, 0.9),
        ("nothing", 5.7, 6.2, 0.9),  # unfinished: never used
    ]
    _write(tmp_path, make_wav, "p", [words[:5], words[5:]])
    rows, _ = build_sta_rows(tmp_path / "w", tmp_path / "a", span="sentence", spans_per_file=10)
    assert [(r["query"], r["windows"][0]) for r in rows] == [
        ("Look over there!", [0.2, 1.2]),
        ('He said "stop."', [1.5, 2.6]),
        ("Is it (really true?)", [3.0, 4.2]),
    ]
    rows, _ = build_sta_rows(tmp_path / "w", tmp_path / "a", span="sentence", spans_per_file=10, min_words=1)
    assert "Yes." in [r["query"] for r in rows] and not any("nothing" in r["query"] for r in rows)
    rows, _ = build_sta_rows(tmp_path / "w", tmp_path / "a", span="sentence", spans_per_file=10, max_words=3)
    assert [r["query"] for r in rows] == ["Look over there!", 'He said "stop."']


def test_repeated_or_broken_sentences_are_not_used(tmp_path, make_wav):
    words = [("Thank", 0.1, 0.3, 0.9), ("you.", 0.3, 0.6, 0.9)]
    words += [("The", 1.0, 1.2, 0.9), ("[*]", 1.2, 1.4, 0.0), ("end", 1.4, 1.6, 0.9), ("came.", 1.6, 2.0, 0.9)]
    words += [("It", 2.5, 2.6, 0.9), ("was", 2.6, 2.8, 0.9), ("late.", 2.8, 3.2, 0.9)]
    words += [("thank", 3.5, 3.7, 0.9), ("you!", 3.7, 4.0, 0.9)]  # the same words as the first sentence
    _write(tmp_path, make_wav, "r", [words])
    for seed in range(5):
        rows, _ = build_sta_rows(tmp_path / "w", tmp_path / "a", seed=seed, span="sentence", spans_per_file=10)
        assert [r["query"] for r in rows] == ["It was late."]


def test_sentence_spans_are_deterministic_and_non_overlapping(tmp_path, make_wav):
    words, t = [], 0.0
    for k in range(12):
        for j in range(4):
            words.append((f"w{k}x{j}" + ("." if j == 3 else ""), round(t, 2), round(t + 0.2, 2), 0.9))
            t += 0.25
    _write(tmp_path, make_wav, "many", [words[:20], words[20:]])
    a, _ = build_sta_rows(tmp_path / "w", tmp_path / "a", seed=3, span="sentence", spans_per_file=4)
    b, _ = build_sta_rows(tmp_path / "w", tmp_path / "a", seed=3, span="sentence", spans_per_file=4)
    assert a == b and len(a) == 4
    assert all(len(r["query"].split()) == 4 and r["query"].endswith(".") for r in a)
    spans = sorted(r["windows"][0] for r in a)
    assert all(x[1] <= y[0] for x, y in zip(spans, spans[1:]))
    picks = {tuple(r["query"] for r in build_sta_rows(tmp_path / "w", tmp_path / "a", seed=s, span="sentence",
                                                       spans_per_file=4)[0]) for s in range(6)}  # fmt: skip
    assert len(picks) > 1, "the seed chooses which sentences"


def test_a_transcript_without_sentence_ends_is_an_error(tmp_path, make_wav):
    _write(
        tmp_path, make_wav, "flat", [[("no", 0.1, 0.3, 0.9), ("punctuation", 0.3, 0.9, 0.9), ("here", 0.9, 1.2, 0.9)]]
    )
    with pytest.raises(TranscriptError, match="flat.json: no unique sentence of 2-40 timed words"):
        build_sta_rows(tmp_path / "w", tmp_path / "a", span="sentence")
    rows, skipped = build_sta_rows(tmp_path / "w", tmp_path / "a", span="sentence", skip_invalid=True)
    assert rows == [] and dict(skipped) == {"too_few_words": 1}
    assert [r["query"] for r in build_sta_rows(tmp_path / "w", tmp_path / "a", spans_per_file=1)[0]] == [
        "no punctuation here"
    ]  # n-grams (the default) need no punctuation
    with pytest.raises(ValueError, match="unknown STA span 'clause'"):
        build_sta_rows(tmp_path / "w", tmp_path / "a", span="clause")


def test_the_command_line_builds_sentence_spans(corpus, capsys):
    from rl_audio.data.__main__ import main

    out = corpus / "sentences.jsonl"
    args = ["--quiet", "sta", "--whisper-dir", str(corpus / "whisper"), "--audio-dir", str(corpus / "audio")]
    assert main([*args, "--out", str(out), "--span", "sentence"]) == 0
    rows = load_manifest(out)
    assert sorted(r["query"] for r in rows) == sorted([" ".join(w[0] for w in SEG0 + SEG1), "Hello world, friends."])
    assert {r["meta"]["span"] for r in rows} == {"sentence"}
