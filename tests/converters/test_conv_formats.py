"""Each converter on a small hand-written file in its release's format, with tiny wav files."""

from __future__ import annotations

import json

import pytest

from rl_audio.converters import convert
from rl_audio.data import load_manifest, write_manifest


def _by_id(rows):
    return {r["id"]: r for r in rows}


def test_audiogrounding_v2(tmp_path, wav, write):
    wav("Yabc.wav", 3.0)
    wav("Ydef.wav", 2.5)
    labels = write(
        "test.json",
        [
            {
                "audiocap_id": 11,
                "audio_id": "Yabc.wav",
                "tokens": "a dog barks while a man speaks",
                "phrases": [
                    {"phrase": "a dog barks", "start_index": 0, "end_index": 2, "segments": [[0.5, 1.0], [2.0, 2.5]]},
                    {"phrase": "a man speaks", "start_index": 4, "end_index": 6, "segments": [[0.0, 3.0]]},
                ],
            },
            {
                "audiocap_id": 12,
                "audio_id": "Ydef.wav",
                "tokens": ["birds", "chirp"],
                "phrases": [{"phrase": "birds chirp", "start_index": 0, "end_index": 1, "segments": [[1.0, 2.5]]}],
            },
        ],
    )
    rows, skipped = convert("audiogrounding", str(labels), audio_dir=str(tmp_path / "audio"))
    assert not skipped and len(rows) == 3
    rows = _by_id(rows)
    dog = rows["ag-11-0"]
    assert (dog["task"], dog["query"], dog["windows"], dog["exists"]) == (
        "grounding",
        "a dog barks",
        [[0.5, 1.0], [2.0, 2.5]],
        True,
    )
    assert dog["duration"] == 3.0  # from the wav header
    assert dog["meta"]["caption"] == "a dog barks while a man speaks" and dog["meta"]["source"] == "audiogrounding-v2"
    assert rows["ag-12-0"]["meta"]["caption"] == "birds chirp" and rows["ag-12-0"]["duration"] == 2.5
    assert dog["audio"] == str((tmp_path / "audio" / "Yabc.wav").resolve())


def test_audiogrounding_v1_list_and_pandas_columns(tmp_path, wav, write):
    wav("abc_10_20.wav", 2.0)
    items = [
        {
            "audiocap_id": 5,
            "filename": "abc_10_20.wav",
            "tokens": "a car passes by",
            "phrase": "a car",
            "start_word": 0,
            "timestamps": [[0.2, 1.8]],
        },
        {
            "audiocap_id": 6,
            "filename": "abc_10_20.wav",
            "caption": "Engine idling",
            "soundtag": "engine idling",
            "start_word": 0,
            "timestamps": [[0.0, 0.5], [1.0, 1.5]],
        },
    ]
    rows, _ = convert("audiogrounding", str(write("v1.json", items)), audio_dir=str(tmp_path / "audio"))
    assert [(r["query"], r["windows"]) for r in rows] == [
        ("a car", [[0.2, 1.8]]),
        ("engine idling", [[0.0, 0.5], [1.0, 1.5]]),
    ]
    columns = {key: {str(i): item.get(key) for i, item in enumerate(items)} for key in items[0]}
    columns["phrase"] = {"0": "a car", "1": "engine idling"}
    rows_pd, _ = convert(
        "audiogrounding", str(write("v1_pd.json", columns)), audio_dir=str(tmp_path / "audio"), version="1"
    )
    assert [r["windows"] for r in rows_pd] == [r["windows"] for r in rows]


def test_clotho_moment_jsonl(tmp_path, wav, write):
    wav("clip_a.wav", 4.0)
    lines = [
        {"qid": 1, "query": "water flows", "duration": 4.0, "vid": "clip_a", "relevant_windows": [[0, 1.5], [2, 3]]},
        {"qid": 2, "query": "a bell rings", "duration": 4.0, "vid": "clip_a", "relevant_windows": [[3.5, 4.0]]},
    ]
    source = write("cm.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    rows, _ = convert("clotho-moment", str(source), audio_dir=str(tmp_path / "audio"))
    assert [(r["id"], r["query"], r["windows"], r["duration"]) for r in rows] == [
        ("cm-1", "water flows", [[0.0, 1.5], [2.0, 3.0]], 4.0),
        ("cm-2", "a bell rings", [[3.5, 4.0]], 4.0),
    ]
    assert rows[0]["audio"].endswith("clip_a.wav")  # the extension is found


def test_unav100_grounding_per_label_and_sed(tmp_path, wav, write):
    wav("v1.wav", 5.0)
    wav("v2.wav", 3.0)
    database = {
        "database": {
            "v1": {
                "duration": 5.0,
                "subset": "test",
                "annotations": [
                    {"segment": [0.0, 1.0], "label": "dog barking", "label_id": 3},
                    {"segment": [3.0, 4.5], "label": "dog barking", "label_id": 3},
                    {"segment": [1.0, 2.0], "label": "man speaking", "label_id": 7},
                ],
            },
            "v2": {"duration": 3.0, "subset": "train", "annotations": [{"segment": [0.5, 1.0], "label": "car horn"}]},
        }
    }
    source = write("unav.json", database)
    rows, _ = convert(
        "unav100", str(source), audio_dir=str(tmp_path / "audio"), subset="test", tasks=("grounding", "sed")
    )
    rows = _by_id(rows)
    assert set(rows) == {"unav100-v1-dog_barking", "unav100-v1-man_speaking", "unav100-v1-sed"}
    assert rows["unav100-v1-dog_barking"]["windows"] == [[0.0, 1.0], [3.0, 4.5]]
    assert [e["label"] for e in rows["unav100-v1-sed"]["events"]] == ["dog barking", "man speaking", "dog barking"]
    all_rows, _ = convert("unav100", str(source), audio_dir=str(tmp_path / "audio"))
    assert len(all_rows) == 3 and {r["task"] for r in all_rows} == {"grounding"}


def test_desed_strong_labels_with_durations_and_empty_files(tmp_path, wav, write):
    wav("a.wav", 10.0)
    wav("b.wav", 10.0)
    wav("c.wav", 10.0)
    labels = write(
        "strong.tsv",
        "filename\tonset\toffset\tevent_label\n"
        "a.wav\t0.5\t2.0\tDog\n"
        "a.wav\t3.0\t9.5\tAlarm_bell_ringing\n"
        "a.wav\t6.0\t7.0\tDog\n"
        "b.wav\t\t\t\n",
    )
    durations = write("durations.tsv", "filename\tduration\na.wav\t10.0\nb.wav\t10.0\nc.wav\t9.98\n")
    rows, _ = convert(
        "desed", str(labels), audio_dir=str(tmp_path / "audio"), durations=str(durations), tasks=("sed", "grounding")
    )
    rows = _by_id(rows)
    assert rows["desed-a"]["events"] == [
        {"onset": 0.5, "offset": 2.0, "label": "Dog"},
        {"onset": 3.0, "offset": 9.5, "label": "Alarm bell ringing"},
        {"onset": 6.0, "offset": 7.0, "label": "Dog"},
    ]
    assert rows["desed-b"]["events"] == [] and rows["desed-c"]["events"] == [] and rows["desed-c"]["duration"] == 9.98
    assert rows["desed-a-dog"]["windows"] == [[0.5, 2.0], [6.0, 7.0]]
    assert rows["desed-a-alarm_bell_ringing"]["query"] == "Alarm bell ringing"
    assert {r["task"] for r in rows.values()} == {"sed", "grounding"}


def test_ftar_grounding_and_dense_captioning(tmp_path, wav, write):
    wav("x.wav", 10.0)
    items = [
        {
            "audio": "x.wav",
            "question": "What are the start and end times of audio matching 'dogs barking'?",
            "answer": "3.2-5.6",
            "duration": 10.0,
            "id": "x",
            "task": "TAG",
        },
        {
            "audio": "x.wav",
            "question": "What are the start and end times of audio matching 'a car horn'?",
            "answer": "1.0-2.0, 7.5-8.25",
            "duration": 10.0,
            "id": "x2",
            "task": "Temporal_Audio_Grounding",
        },
        {
            "audio": "x.wav",
            "question": "What are the sound events? Provide their time intervals and brief descriptions.",
            "answer": "0.00-1.50, a man speaks\n2.10-4.00, a dog barks twice",
            "duration": 10.0,
            "id": "x",
            "task": "DAC",
        },
    ]
    rows, _ = convert("ftar", str(write("ftar.json", items)), audio_dir=str(tmp_path / "audio"))
    rows = _by_id(rows)
    tag = rows["ftar-grounding-x"]
    assert (tag["query"], tag["windows"], tag["exists"]) == ("dogs barking", [[3.2, 5.6]], True)
    assert rows["ftar-grounding-x2"]["windows"] == [[1.0, 2.0], [7.5, 8.25]]
    dac = rows["ftar-dac-x"]
    assert dac["events"] == [
        {"onset": 0.0, "offset": 1.5, "label": "a man speaks"},
        {"onset": 2.1, "offset": 4.0, "label": "a dog barks twice"},
    ]
    assert dac["query"].startswith("What are the sound events?")
    # an item whose answer states absence is a presence question answered "No.", not a grounding row
    absent = {**items[0], "id": "x3", "answer": "The sound is not present in the audio."}
    (row,), _ = convert("ftar", str(write("absent.json", [absent])), audio_dir=str(tmp_path / "audio"))
    assert (row["id"], row["task"], row["query"], row["exists"]) == (
        "ftar-existence-x3",
        "existence",
        "dogs barking",
        False,
    )
    # --task overrides a missing task field
    plain = [{k: v for k, v in items[0].items() if k != "task"}]
    rows2, _ = convert("ftar", str(write("tag.json", plain)), audio_dir=str(tmp_path / "audio"), task="grounding")
    assert rows2[0]["windows"] == [[3.2, 5.6]]


def test_mmau_test_mini(tmp_path, wav, write):
    wav("test-mini-audios/u1.wav", 2.0)
    wav("u2.wav", 1.5)
    items = [
        {
            "id": "u1",
            "audio_id": "./test-mini-audios/u1.wav",
            "question": "Which instrument plays?",
            "choices": ["Piano", "Guitar", "Drums", "Violin"],
            "answer": "Guitar",
            "dataset": "MusicCaps",
            "task": "music",
            "split": "test-mini",
            "category": "Instrument",
            "sub-category": "Solo",
            "difficulty": "easy",
        },
        {
            "id": "u2",
            "audio_id": "./test-mini-audios/u2.wav",
            "question": "How many speakers?",
            "choices": ["one", "two"],
            "answer": "Two ",
            "task": "speech",
        },
    ]
    rows, _ = convert("mmau", str(write("mmau.json", items)), audio_dir=str(tmp_path / "audio"))
    rows = _by_id(rows)
    u1 = rows["mmau-u1"]
    assert (u1["task"], u1["query"], u1["answer"], u1["choices"][1]) == (
        "qa",
        "Which instrument plays?",
        "Guitar",
        "Guitar",
    )
    assert u1["meta"] == {
        "source": "mmau",
        "mmau_id": "u1",
        "domain": "music",
        "category": "Instrument",
        "sub_category": "Solo",
        "difficulty": "easy",
        "dataset": "MusicCaps",
        "provenance": {"converter": "mmau", "dataset": "MMAU", "split": "test-mini", "eval_benchmark": "MMAU"},
    }
    assert rows["mmau-u2"]["answer"] == "two" and rows["mmau-u2"]["audio"].endswith("u2.wav")  # basename fallback


def test_spotsound_bench_both_assumed_layouts(tmp_path, wav, write):
    wav("long1.wav", 6.0)
    items = [
        {"id": "s1", "audio": "long1.wav", "query": "church bell ringing", "timestamps": [[4.0, 4.5]]},
        {"audio_id": "long1.wav", "label": "dog barking", "windows": [1.0, 1.5], "duration": 6.0},
    ]
    rows, _ = convert("spotsound-bench", str(write("spot.json", items)), audio_dir=str(tmp_path / "audio"))
    assert [(r["id"], r["query"], r["windows"]) for r in rows] == [
        ("spot-s1", "church bell ringing", [[4.0, 4.5]]),
        ("spot-long1-1", "dog barking", [[1.0, 1.5]]),
    ]
    database = {"database": {"long1": {"duration": 6.0, "annotations": [{"segment": [2, 3], "label": "car horn"}]}}}
    rows, _ = convert("spotsound-bench", str(write("spot_db.json", database)), audio_dir=str(tmp_path / "audio"))
    assert [(r["id"], r["windows"]) for r in rows] == [("spotsound-long1-car_horn", [[2.0, 3.0]])]


def test_negatives_for_a_grounding_conversion(tmp_path, wav, write):
    for name in ("c1", "c2", "c3"):
        wav(f"{name}.wav", 4.0)
    lines = [
        {"qid": k, "query": q, "duration": 4.0, "vid": v, "relevant_windows": [[1, 2]]}
        for k, (q, v) in enumerate([("water flows", "c1"), ("a bell rings", "c2"), ("a dog barks", "c3")])
    ]
    source = write("cm.jsonl", "\n".join(json.dumps(x) for x in lines))
    rows, _ = convert("clotho-moment", str(source), audio_dir=str(tmp_path / "audio"), negatives=1, seed=3)
    assert all(r["windows"] for r in rows if r["task"] == "grounding")  # grounding rows only for present events
    negatives = [r for r in rows if r["exists"] is False]
    assert len(negatives) == 3 and all(r["task"] == "existence" and not r["windows"] for r in negatives)
    assert sum(r["task"] == "existence" for r in rows) == 6  # one positive and one negative existence row per clip
    for negative in negatives:
        positive = next(r for r in rows if r["audio"] == negative["audio"] and r["windows"])
        assert negative["query"] != positive["query"]
    written = write_manifest(rows, tmp_path / "out" / "m.jsonl")
    assert len(load_manifest(written)) == len(rows)


@pytest.mark.parametrize(
    "name", ["audiogrounding", "clotho-moment", "unav100", "desed", "ftar", "mmau", "spotsound-bench"]
)
def test_every_converter_rejects_a_missing_input_file(tmp_path, name):
    from rl_audio.converters import ConverterError

    with pytest.raises(ConverterError, match="input file not found"):
        convert(name, str(tmp_path / "nope.json"), audio_dir=str(tmp_path))
