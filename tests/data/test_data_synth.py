import hashlib
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rl_audio.data.audio import load_audio, write_wav
from rl_audio.data.manifest import load_manifest
from rl_audio.data.negatives import content_words
from rl_audio.data.sounds import SOUND_CLASSES
from rl_audio.data.synth import SynthConfig, build_synthetic, place_events

SHORT = {"min_len": 4.0, "max_len": 6.0, "min_event": 0.5, "max_event": 1.0}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def _digest(folder) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.*")}


def test_event_is_where_the_manifest_says(tmp_path):
    # high SNR: background 30 dB under the foreground, so the window must hold nearly all the energy
    config = SynthConfig(num_clips=6, seed=1, bg_rel_db=-30, bg_jitter_db=0, min_events=1, max_events=2, **SHORT)
    rows = load_manifest(build_synthetic(tmp_path, config, progress=False))
    grounding = [r for r in rows if r["task"] == "grounding"]
    assert {r["task"] for r in rows} == {"grounding", "existence"}
    for clip in {r["audio"] for r in grounding}:
        wav, sr = load_audio(clip), config.sample_rate
        inside = np.zeros(wav.size, dtype=bool)
        for row in (r for r in grounding if r["audio"] == clip):
            for start, end in row["windows"]:
                inside[round(start * sr) : round(end * sr)] = True
                assert _rms(wav[round(start * sr) : round(end * sr)]) > 0.02
        ratio = _rms(wav[inside]) / _rms(wav[~inside])
        assert ratio > 10, f"{clip}: window RMS only {ratio:.1f}x the rest"


def test_window_is_not_elsewhere(tmp_path):
    """A shifted window must not pass the same energy check: the test above can fail."""
    config = SynthConfig(num_clips=1, seed=2, bg_rel_db=-30, bg_jitter_db=0, **SHORT)
    (row,) = [r for r in load_manifest(build_synthetic(tmp_path, config, progress=False)) if r["task"] == "grounding"]
    wav, sr = load_audio(row["audio"]), config.sample_rate
    (start, end), length = row["windows"][0], row["windows"][0][1] - row["windows"][0][0]
    shifted = start + length + 0.1 if end + length + 0.1 < row["duration"] else start - length - 0.1
    inside = wav[round(start * sr) : round(end * sr)]
    outside = wav[round(shifted * sr) : round((shifted + length) * sr)]
    assert _rms(inside) > 10 * _rms(outside)


def test_same_seed_gives_identical_files(tmp_path):
    config = SynthConfig(num_clips=3, seed=7, negatives=True, sed_rows=True, **SHORT)
    build_synthetic(tmp_path / "a", config, progress=False)
    build_synthetic(tmp_path / "b", config, progress=False)
    build_synthetic(tmp_path / "c", SynthConfig(num_clips=3, seed=8, negatives=True, sed_rows=True, **SHORT))
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert a == b and len(a) == 4  # 3 wavs and the manifest
    assert all(a[name] != c[name] for name in a)


def test_shifted_events_move_and_nothing_else_changes(tmp_path):
    """SpotSound App. B.3: the same clip with its event elsewhere (same waveform, gain and background)."""
    kw = {"num_clips": 8, "seed": 3, "bg_rel_db": -30, "bg_jitter_db": 0, "negatives": True, **SHORT}
    plain = load_manifest(build_synthetic(tmp_path / "a", SynthConfig(**kw), progress=False))
    moved = load_manifest(build_synthetic(tmp_path / "b", SynthConfig(**kw, shift_events=True), progress=False))
    assert [r["id"] for r in plain] == [r["id"] for r in moved]
    sr = SynthConfig().sample_rate
    for a, b in zip(plain, moved):
        assert {k: v for k, v in a.items() if k not in ("windows", "audio")} == {
            k: v for k, v in b.items() if k not in ("windows", "audio")
        }
        if a["task"] != "grounding" or not a["windows"]:
            continue
        ((s0, e0),), ((s1, e1),) = a["windows"], b["windows"]
        assert abs((e0 - s0) - (e1 - s1)) < 1e-9 and (e1 <= s0 or s1 >= e0)  # same length, no overlap
        wa, wb = load_audio(a["audio"]), load_audio(b["audio"])
        ev_a, ev_b = wa[round(s0 * sr) : round(e0 * sr)], wb[round(s1 * sr) : round(e1 * sr)]
        assert np.corrcoef(ev_a, ev_b)[0, 1] > 0.99  # the event itself, moved (background 30 dB under it)
        assert _rms(wb[round(s0 * sr) : round(e0 * sr)]) < 0.2 * _rms(ev_a)  # its old place is background now


def test_multiple_events_do_not_overlap(tmp_path):
    config = SynthConfig(
        num_clips=8,
        seed=3,
        min_events=2,
        max_events=3,
        min_gap=0.3,
        min_len=5.0,
        max_len=6.0,
        min_event=0.5,
        max_event=1.2,
    )
    config.sed_rows = True
    rows = load_manifest(build_synthetic(tmp_path, config, progress=False))
    sed = [r for r in rows if r["task"] == "sed"]
    assert len(sed) == 8
    counts = set()
    for row in sed:
        events = row["events"]
        counts.add(len(events))
        for before, after in zip(events, events[1:]):
            assert after["onset"] >= before["offset"] + 0.3 - 1e-9
        assert all(0 <= e["onset"] < e["offset"] <= row["duration"] for e in events)
        # distinct classes by default; each grounding row carries exactly its event's window
        labels = [e["label"] for e in events]
        assert len(set(labels)) == len(labels)
        for g in (r for r in rows if r["audio"] == row["audio"] and r["task"] == "grounding"):
            assert g["windows"] == [[e["onset"], e["offset"]] for e in events if e["label"] == g["query"]]
    assert counts == {2, 3}


def test_repeated_class_gives_several_windows(tmp_path):
    config = SynthConfig(num_clips=6, seed=0, min_events=3, max_events=3, allow_repeats=True, **SHORT)
    config.min_len = 5.0
    rows = load_manifest(build_synthetic(tmp_path, config, progress=False))
    assert any(len(r["windows"]) > 1 for r in rows if r["task"] == "grounding")


def test_levels_follow_config(tmp_path):
    config = SynthConfig(num_clips=5, seed=4, **SHORT)
    rows = load_manifest(build_synthetic(tmp_path, config, progress=False))
    snrs = [s for r in rows if r["task"] == "grounding" for s in r["meta"]["snr_db"]]
    assert all(5 - 1e-6 <= s <= 15 + 1e-6 for s in snrs)  # background at -10 +- 5 dB re the foreground


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"min_len": 8.0, "max_len": 5.0}, "min_len <= max_len"),
        ({"max_events": 3, "max_event": 2.0, "min_len": 5.0}, "max_events * max_event"),
        ({"min_events": 0}, "min_events"),
    ],
)
def test_invalid_config(tmp_path, change, text):
    with pytest.raises(ValueError, match=re.escape(text)):
        build_synthetic(tmp_path, SynthConfig(num_clips=1, **{**SHORT, **change}), progress=False)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(100, 6000),
    st.lists(st.integers(1, 300), min_size=1, max_size=5),
    st.integers(0, 50),
    st.integers(0, 2**32 - 1),
)
def test_place_events_property(clip, durations, gap, seed):
    needed = sum(durations) + gap * (len(durations) - 1)
    if needed > clip:
        with pytest.raises(ValueError):
            place_events(np.random.default_rng(seed), clip, durations, gap)
        return
    starts = place_events(np.random.default_rng(seed), clip, durations, gap)
    ends = [s + d for s, d in zip(starts, durations)]
    assert starts[0] >= 0 and ends[-1] <= clip
    assert all(nxt >= end + gap for end, nxt in zip(ends, starts[1:]))


def test_single_event_start_is_uniform():
    rng = np.random.default_rng(0)
    starts = [place_events(rng, 1000, [200], 0)[0] for _ in range(4000)]
    assert min(starts) <= 10 and max(starts) >= 790
    counts, _ = np.histogram(starts, bins=4, range=(0, 801))
    assert counts.min() > 0.8 * counts.max()


def test_sound_classes_are_many_and_distinct():
    assert len(SOUND_CLASSES) >= 8
    for name, cls in SOUND_CLASSES.items():
        assert len(cls.captions) >= 2, name
        wav = cls.render(np.random.default_rng(0), 8000, 16000)
        assert wav.shape == (8000,) and np.isfinite(wav).all()
        assert _rms(wav) == pytest.approx(1.0)
    # every caption shares no content word with the captions of at least 5 other classes: negatives exist
    for name, cls in SOUND_CLASSES.items():
        words = set().union(*(content_words(c) for c in cls.captions))
        clean = [o for o in SOUND_CLASSES.values() if all(not content_words(c) & words for c in o.captions)]
        assert len(clean) >= 5, name


def test_real_foreground_and_background_folders(tmp_path):
    sr, rng = 16000, np.random.default_rng(0)
    t = np.arange(sr) / sr
    silence = np.zeros(sr // 2)
    for caption, freq in (("a_dog_barking", 500), ("a_car_horn", 2000)):
        tone = 0.5 * np.sin(2 * np.pi * freq * t)
        write_wav(tmp_path / "fg" / caption / "x.wav", np.concatenate([silence, tone, silence]), sr)
    write_wav(tmp_path / "bg" / "street.wav", 0.05 * rng.standard_normal(3 * sr), sr)
    config = SynthConfig(
        num_clips=3, seed=0, min_len=4.0, max_len=5.0, min_event=1.0, max_event=1.5, bg_rel_db=-30, bg_jitter_db=0
    )
    config.foreground_dir, config.background_dir = str(tmp_path / "fg"), str(tmp_path / "bg")
    rows = load_manifest(build_synthetic(tmp_path / "out", config, progress=False))
    grounding = [r for r in rows if r["task"] == "grounding"]
    assert {r["query"] for r in grounding} <= {"a dog barking", "a car horn"}
    for row in grounding:
        ((start, end),) = row["windows"]
        assert end - start == pytest.approx(1.0, abs=0.03)  # the quiet edges were trimmed off the 2 s file
        wav = load_audio(row["audio"])
        inside = wav[round(start * sr) : round(end * sr)]
        before, after = wav[: round(start * sr)], wav[round(end * sr) :]
        assert _rms(inside) > 5 * _rms(before if before.size > after.size else after)


def _real_folders(tmp_path, lengths: dict[str, list[float]]):
    """``fg/<caption>/<k>.wav`` tones of the given lengths (seconds) between 0.3 s of silence, and one background."""
    sr, rng = 16000, np.random.default_rng(0)
    for caption, seconds in lengths.items():
        for k, length in enumerate(seconds):
            tone = 0.5 * np.sin(2 * np.pi * 700 * np.arange(int(length * sr)) / sr)
            write_wav(
                tmp_path / "fg" / caption / f"{k}.wav", np.concatenate([np.zeros(4800), tone, np.zeros(4800)]), sr
            )
    write_wav(tmp_path / "bg" / "street.wav", 0.05 * rng.standard_normal(3 * sr), sr)
    return str(tmp_path / "fg"), str(tmp_path / "bg")


def test_short_real_foregrounds_are_skipped_so_min_event_holds(tmp_path):
    fg, bg = _real_folders(tmp_path, {"a_bell": [0.1, 0.3, 1.6], "a_horn": [0.005, 1.8]})
    config = SynthConfig(num_clips=12, seed=0, min_len=4.0, max_len=5.0, min_event=1.0, max_event=2.0)
    config.foreground_dir, config.background_dir = fg, bg
    rows = load_manifest(build_synthetic(tmp_path / "out", config, progress=False))
    lengths = [end - start for r in rows if r["task"] == "grounding" for start, end in r["windows"]]
    assert len(lengths) == 12 and min(lengths) >= 1.0 - 1e-9  # before: 0.1 s and 5 ms events were kept


def test_a_class_without_long_enough_files_fails_and_leaves_nothing_behind(tmp_path):
    fg, bg = _real_folders(tmp_path, {"a_bell": [1.6], "a_click": [0.2, 0.005]})
    # seed 5: clips 0-2 draw the bell and are written before clip 3 draws the click
    config = SynthConfig(num_clips=40, seed=5, min_len=4.0, max_len=5.0, min_event=1.0, max_event=2.0)
    config.foreground_dir, config.background_dir = fg, bg
    out = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        build_synthetic(out, config, progress=False)
    message = str(info.value)
    assert "a_click" in message and "minimum event length of 1.000 s" in message and "0.200 s" in message
    assert message.startswith("clip synth-000003:")  # the clip it failed on, after three were written
    assert not list(out.rglob("*.wav")) and not (out / "manifest.jsonl").exists()


def test_no_negative_is_a_paraphrase_of_a_sound_in_the_clip(tmp_path):
    config = SynthConfig(num_clips=60, seed=3, min_len=5.0, max_len=6.0, min_event=0.5, max_event=1.0, max_events=2)
    config.negatives = True
    rows = load_manifest(build_synthetic(tmp_path, config, progress=False))
    class_of = {caption: name for name, cls in SOUND_CLASSES.items() for caption in cls.captions}
    present: dict[str, set[str]] = {}
    for row in rows:
        if row["task"] == "grounding":
            present.setdefault(row["audio"], set()).add(class_of[row["query"]])
    negatives = [r for r in rows if r["task"] == "existence" and r["exists"] is False]
    assert len(negatives) == 60
    for row in negatives:
        assert class_of[row["query"]] not in present[row["audio"]], row
    assert all(row["meta"]["aliases"] for row in rows if row["task"] == "grounding")
