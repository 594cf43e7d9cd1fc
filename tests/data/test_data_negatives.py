import pytest

from rl_audio.data.manifest import load_manifest, validate_row
from rl_audio.data.negatives import (
    NegativeError,
    add_negatives,
    add_negatives_with_report,
    content_words,
    is_absent_grounding,
    normalize_query,
)
from rl_audio.data.synth import SynthConfig, build_synthetic
from rl_audio.data.templates import render_target


def _row(row_id, audio, query, windows=((1.0, 2.0),), **kw):
    return validate_row(
        {"id": row_id, "audio": audio, "duration": 10.0, "task": "grounding", "query": query,
         "windows": [list(w) for w in windows], **kw}
    )  # fmt: skip


def test_content_words():
    assert content_words("A dog is barking loudly") == {"dog", "barking", "loudly"}
    assert content_words("Dogs bark; the DOG barks!") == {"dog", "bark"}
    assert content_words("two glasses and boxes, puppies") == {"glass", "box", "puppy"}
    assert content_words("the sound of a bus") == {"sound", "bus"}  # "bus" is too short to strip
    assert content_words("of the and") == frozenset()


def _check_constraints(rows):
    clips = {}
    for row in rows:
        clips.setdefault(row["audio"], []).append(row)
    checked = 0
    for clip_rows in clips.values():
        annotated = {normalize_query(r["query"]) for r in clip_rows if r["windows"]}
        annotated |= {normalize_query(e["label"]) for r in clip_rows for e in r["events"]}
        words = set().union(*(content_words(q) for q in annotated))
        for neg in (r for r in clip_rows if r["exists"] is False):
            assert neg["task"] == "existence" and neg["windows"] == []
            assert normalize_query(neg["query"]) not in annotated
            assert not content_words(neg["query"]) & words, (neg["query"], annotated)
            checked += 1
        _check_no_absent_grounding(clip_rows)
    return checked


def _check_no_absent_grounding(clip_rows):
    """SpotSound §2.1 / App. C.1: grounding is asked only about events present in the clip."""
    present = {normalize_query(r["query"]) for r in clip_rows if r["task"] == "grounding" and r["windows"]}
    absent = {normalize_query(r["query"]) for r in clip_rows if r["exists"] is False}
    for row in (r for r in clip_rows if r["task"] == "grounding"):
        assert row["windows"] and row["exists"] is not False, row
        assert not is_absent_grounding(row)
    assert not present & absent


def test_negatives_respect_both_constraints_on_handmade_rows():
    rows = [
        _row("a", "1.wav", "a dog barking"),
        _row("b", "1.wav", "a car engine starting", windows=[[3.0, 4.0]]),
        _row("c", "2.wav", "Dogs barking in the distance"),
        _row("d", "3.wav", "rain falling on a roof"),
        _row("e", "4.wav", "a car horn honking"),
        _row("f", "5.wav", "birds singing"),
        _row("g", "6.wav", "a bird chirping"),
    ]
    for seed in range(20):
        out = add_negatives(rows, seed=seed)
        assert _check_constraints(out) == 6  # one negative existence row per clip, no negative grounding row
        assert sum(r["task"] == "grounding" for r in out) == len(rows)  # only the positives are grounded
        for neg in (r for r in out if r["audio"] == "1.wav" and r["exists"] is False):
            # neither "dog", "barking", "car" nor "engine": only rain, birds or the bird remain
            assert neg["query"] in {"rain falling on a roof", "birds singing", "a bird chirping"}
        for neg in (r for r in out if r["audio"] == "5.wav" and r["exists"] is False):
            assert "bird" not in neg["query"]  # "birds" and "bird" are the same content word


def test_negative_rows_are_paired_and_valid():
    rows = [_row("a", "1.wav", "a dog barking"), _row("b", "2.wav", "rain on a roof")]
    out, counts = add_negatives_with_report(rows, seed=0)
    assert dict(counts) == {"clips": 2, "negatives": 2, "positive_existence": 2}
    by_id = {r["id"]: r for r in out}
    assert list(by_id) == ["a", "a-exist", "a-neg0-exist", "b", "b-exist", "b-neg0-exist"]
    assert by_id["a-exist"]["task"] == "existence" and by_id["a-exist"]["exists"] is True
    negative = by_id["a-neg0-exist"]
    assert (negative["task"], negative["query"], negative["exists"], negative["windows"]) == (
        "existence",
        "rain on a roof",
        False,
        [],
    )
    assert negative["meta"]["negative_of"] == "a"
    assert render_target(by_id["a-exist"]) == "Yes." and render_target(negative) == "No."
    for row in out:
        validate_row(row)
        render_target(row)  # every row has a target: no grounding row about an absent event


def test_absent_grounding_rows_in_the_input_pass_through_and_are_counted(caplog):
    legacy = _row("old", "1.wav", "rain on a roof", windows=[], exists=False)
    rows = [_row("a", "1.wav", "a dog barking"), legacy, _row("b", "2.wav", "a bell ringing")]
    with caplog.at_level("WARNING"):
        out, counts = add_negatives_with_report(rows, seed=0)
    assert counts["absent_grounding_input"] == 1 and "1 input grounding rows have no windows" in caplog.text
    assert [r for r in out if is_absent_grounding(r)] == [legacy]  # the caller's row, and no new one
    assert {r["query"] for r in out if r["audio"] == "1.wav" and r["exists"] is False} >= {"a bell ringing"}


def test_no_valid_negative_raises_or_skips():
    rows = [_row("a", "1.wav", "a dog barking"), _row("b", "2.wav", "rain"), _row("c", "3.wav", "a dog in the rain")]
    with pytest.raises(NegativeError, match="3.wav: 0 valid negative queries"):
        add_negatives(rows, seed=0)
    out, counts = add_negatives_with_report(rows, seed=0, skip_missing=True)
    assert counts["skipped_no_negative"] == 1 and counts["negatives"] == 2
    negatives = {r["audio"]: r["query"] for r in out if r["exists"] is False}
    assert negatives == {"1.wav": "rain", "2.wav": "a dog barking"}


def test_deterministic_and_seed_dependent():
    rows = [_row(f"r{i}", f"{i}.wav", q) for i, q in enumerate(["dog", "cat", "rain", "car", "bell", "horn", "bird"])]
    first, again = add_negatives(rows, seed=1), add_negatives(rows, seed=1)
    assert first == again
    draws = {tuple(r["query"] for r in add_negatives(rows, seed=s) if r["exists"] is False) for s in range(5)}
    assert len(draws) > 1


def test_existing_existence_rows_are_not_duplicated():
    rows = [
        _row("a", "1.wav", "a dog barking"),
        validate_row(
            {
                "id": "a-e",
                "audio": "1.wav",
                "duration": 10.0,
                "task": "existence",
                "query": "a dog barking",
                "exists": True,
            }
        ),  # fmt: skip
        _row("b", "2.wav", "rain"),
    ]
    out = add_negatives(rows, seed=0)
    assert sum(r["task"] == "existence" and r["exists"] is True and r["audio"] == "1.wav" for r in out) == 1


def test_negatives_on_synthetic_manifest(tmp_path):
    config = SynthConfig(num_clips=12, seed=5, min_len=3.0, max_len=4.0, min_event=0.5, max_event=1.0)
    config.min_events, config.max_events, config.sed_rows, config.negatives = 1, 2, True, True
    rows = load_manifest(build_synthetic(tmp_path, config, progress=False))
    assert _check_constraints(rows) == 12
    clips = {r["audio"] for r in rows}
    for clip in clips:
        tasks = [(r["task"], r["exists"]) for r in rows if r["audio"] == clip]
        assert tasks.count(("grounding", False)) == 0 and tasks.count(("existence", False)) == 1
        assert tasks.count(("grounding", True)) == tasks.count(("existence", True)) >= 1
        # every grounding query names an event inserted into the clip (the sed row lists them all)
        (sed,) = [r for r in rows if r["audio"] == clip and r["task"] == "sed"]
        inserted = {e["label"] for e in sed["events"]}
        assert {r["query"] for r in rows if r["audio"] == clip and r["task"] == "grounding"} <= inserted
    assert not [r for r in rows if is_absent_grounding(r)]
