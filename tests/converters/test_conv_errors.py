"""Bad converter input: errors name the file, item and field; --skip-invalid skips and counts by reason; the
command line prints the summary (rows, skipped by reason, durations, window coverage)."""

from __future__ import annotations

import json
import re

import pytest

from rl_audio.converters import ConverterError, convert
from rl_audio.converters.__main__ import main
from rl_audio.data import load_manifest


def _cm(write, lines):
    return write("cm.jsonl", "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")


def _item(qid, vid="c1", windows=((1.0, 2.0),), **extra):
    return {
        "qid": qid,
        "query": f"sound {qid}",
        "duration": 4.0,
        "vid": vid,
        "relevant_windows": [list(w) for w in windows],
    } | extra


def test_missing_audio_names_file_item_and_field(tmp_path, wav, write):
    wav("c1.wav", 4.0)
    source = _cm(write, [_item(1), _item(2, vid="ghost")])
    with pytest.raises(ConverterError) as err:
        convert("clotho-moment", str(source), audio_dir=str(tmp_path / "audio"))
    assert re.search(
        r"cm\.jsonl: line 2 \(id 2\): field 'vid': audio file 'ghost' not found in .*audio", str(err.value)
    )
    rows, skipped = convert("clotho-moment", str(source), audio_dir=str(tmp_path / "audio"), skip_invalid=True)
    assert [r["id"] for r in rows] == ["cm-1"] and skipped == {"audio_missing": 1}


def test_invalid_windows(tmp_path, wav, write):
    wav("c1.wav", 4.0)
    source = _cm(write, [_item(1, windows=[(3.0, 2.0)]), _item(2, windows=[(1.0, 9.0)]), _item(3), "{broken"])
    with pytest.raises(
        ConverterError, match=r"line 1 \(id 1\): field 'relevant_windows': window \[3.0, 2.0\] has end < start"
    ):
        convert("clotho-moment", str(source), audio_dir=str(tmp_path / "audio"))
    rows, skipped = convert("clotho-moment", str(source), audio_dir=str(tmp_path / "audio"), skip_invalid=True)
    assert [r["id"] for r in rows] == ["cm-3"]
    assert skipped == {"bad_window": 2, "malformed_json": 1}
    # the out-of-clip window is an error of the manifest field, found by validate_row
    only_long = _cm(write, [_item(2, windows=[(1.0, 9.0)])])
    with pytest.raises(ConverterError, match=r"field 'windows': window \[1.0, 9.0\] lies outside \[0, 4.0\]"):
        convert("clotho-moment", str(only_long), audio_dir=str(tmp_path / "audio"))
    # a larger tolerance clamps instead
    rows, _ = convert("clotho-moment", str(only_long), audio_dir=str(tmp_path / "audio"), window_tolerance=5.0)
    assert rows[0]["windows"] == [[1.0, 4.0]]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("unav100", {"videos": {}}, r"expected \{\"database\": \{video_id: \{\.\.\.\}\}\}, got \['videos'\]"),
        ("audiogrounding", "[1, 2", r"not valid JSON"),
        ("audiogrounding", 42, r"expected a JSON list of AudioGrounding items, got int"),
        (
            "desed",
            "filename\tevent_labels\na.wav\tDog\n",
            r"expected a tab-separated file with columns "
            r"\['filename', 'onset', 'offset', 'event_label'\]",
        ),
        ("mmau", {"question_list": []}, r"expected a JSON list of MMAU items"),
    ],
)
def test_input_of_the_wrong_shape(tmp_path, write, name, content, message):
    source = write("input.json" if name != "desed" else "input.tsv", content)
    with pytest.raises(ConverterError, match=message):
        convert(name, str(source), audio_dir=str(tmp_path), skip_invalid=True)  # shape errors are never skipped


def test_item_level_shape_problems(tmp_path, wav, write):
    wav("Yabc.wav", 3.0)
    items = [
        {"audiocap_id": 1, "audio_id": "Yabc.wav", "tokens": "x", "phrases": [{"phrase": "a dog"}]},
        {"audiocap_id": 2, "audio_id": "Yabc.wav", "tokens": "x", "phrases": "a dog"},
        "not an object",
        {
            "audiocap_id": 3,
            "audio_id": "Yabc.wav",
            "tokens": "x",
            "phrases": [{"phrase": "a dog", "segments": [[0, "x"]]}],
        },
    ]
    source = write("ag.json", items)
    with pytest.raises(ConverterError, match=r"ag\.json: item 0 \(id 1\): field 'segments': missing required field"):
        convert("audiogrounding", str(source), audio_dir=str(tmp_path / "audio"))
    with pytest.raises(ConverterError, match=r"item 0 \(id 1\)"):
        convert("audiogrounding", str(source), audio_dir=str(tmp_path / "audio"), version="2")
    with pytest.raises(ConverterError, match=r"ag\.json: no rows converted \(skipped: "):
        convert("audiogrounding", str(source), audio_dir=str(tmp_path / "audio"), skip_invalid=True)


def test_ftar_and_mmau_item_errors(tmp_path, wav, write):
    wav("x.wav", 10.0)
    ftar = [
        {
            "audio": "x.wav",
            "question": "q 'a'",
            "answer": "somewhere in the middle",
            "duration": 10.0,
            "id": "1",
            "task": "TAG",
        },
        {"audio": "x.wav", "question": "q", "answer": "a summary", "duration": 10.0, "id": "2", "task": "TSS"},
    ]
    source = write("ftar.json", ftar)
    with pytest.raises(ConverterError, match=r"item 0 \(id '1'\): field 'answer': no '<start>-<end>' window"):
        convert("ftar", str(source), audio_dir=str(tmp_path / "audio"))
    with pytest.raises(
        ConverterError, match=r"no rows converted \(skipped: \{'bad_answer': 1, 'unsupported_task': 1\}\)"
    ):
        convert("ftar", str(source), audio_dir=str(tmp_path / "audio"), skip_invalid=True)
    mmau = [{"id": "m", "audio_id": "x.wav", "question": "?", "choices": ["a", "b"], "answer": "c"}]
    with pytest.raises(ConverterError, match=r"item 0 \(id 'm'\): field 'answer': 'c' is not one of the choices"):
        convert("mmau", str(write("mmau.json", mmau)), audio_dir=str(tmp_path / "audio"))


def test_desed_bad_times_and_duration_check(tmp_path, wav, write):
    wav("a.wav", 10.0)
    labels = write("strong.tsv", "filename\tonset\toffset\tevent_label\na.wav\t0.5\tlate\tDog\n")
    with pytest.raises(
        ConverterError, match=r"strong\.tsv: line 2 \(id 'a.wav'\): field 'offset': line 2: expected a number"
    ):
        convert("desed", str(labels), audio_dir=str(tmp_path / "audio"))
    labels = write("strong2.tsv", "filename\tonset\toffset\tevent_label\na.wav\t0.5\t1.0\tDog\n")
    durations = write("durations.tsv", "filename\tduration\na.wav\t12.0\n")
    with pytest.raises(ConverterError, match=r"field 'duration': 12.0 s but .*a.wav lasts 10.000 s"):
        convert("desed", str(labels), audio_dir=str(tmp_path / "audio"), durations=str(durations), check_audio=True)


def test_cli_writes_manifest_and_prints_summary(tmp_path, wav, write, capsys):
    wav("c1.wav", 4.0)
    wav("c2.wav", 8.0)
    source = _cm(
        write,
        [
            _item(1, windows=[(0.0, 1.0)]),
            _item(2, vid="c2", windows=[(0.0, 2.0)], duration=8.0),
            _item(3, vid="ghost"),
            _item(4, windows=[(2.0, 1.0)]),
        ],
    )
    out = tmp_path / "out" / "cm.jsonl"
    code = main(
        ["clotho-moment", str(source), "--audio-dir", str(tmp_path / "audio"), "--out", str(out), "--skip-invalid"]
    )
    printed = capsys.readouterr().out
    assert code == 0 and len(load_manifest(out)) == 2
    assert "rows: 2  clips: 2" in printed
    assert "clip duration (s): total 12.0, mean 6.0, min 4.0, max 8.0" in printed
    assert "window coverage (mean window length / duration): 0.25" in printed  # (1/4 + 2/8) / 2
    assert "skipped: audio_missing=1, bad_window=1" in printed


def test_cli_error_exit_and_help(tmp_path, wav, write, capsys, caplog):
    wav("c1.wav", 4.0)
    source = _cm(write, [_item(1, vid="ghost")])
    assert (
        main(
            ["clotho-moment", str(source), "--audio-dir", str(tmp_path / "audio"), "--out", str(tmp_path / "o.jsonl")]
        )
        == 1
    )
    assert "line 1 (id 1): field 'vid': audio file 'ghost' not found" in caplog.text
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(SystemExit):
        main(["desed", "--help"])
    assert "--durations" in capsys.readouterr().out


def test_cli_negatives_on_a_manifest(tmp_path, wav, write, capsys):
    for name in ("c1", "c2"):
        wav(f"{name}.wav", 4.0)
    source = _cm(write, [_item(1, query="water flows"), _item(2, vid="c2", query="a bell rings")])
    first = tmp_path / "m.jsonl"
    assert main(["clotho-moment", str(source), "--audio-dir", str(tmp_path / "audio"), "--out", str(first)]) == 0
    second = tmp_path / "m_neg.jsonl"
    assert main(["negatives", str(first), "--out", str(second), "--seed", "1"]) == 0
    rows = load_manifest(second)
    assert sum(r["task"] == "existence" and r["exists"] is False for r in rows) == 2
    assert all(r["windows"] for r in rows if r["task"] == "grounding")  # no grounding row about an absent event
    assert "negative queries (existence, exists false): 2" in capsys.readouterr().out


def test_cli_negatives_draw_from_a_global_pool(tmp_path, wav, write):
    # one clip alone has no negative query to draw from its own manifest; another manifest's queries supply it
    wav("c1.wav", 4.0)
    wav("c3.wav", 4.0)
    only = tmp_path / "only.jsonl"
    other = tmp_path / "other.jsonl"
    source = _cm(write, [_item(1, query="water flows")])
    assert main(["clotho-moment", str(source), "--audio-dir", str(tmp_path / "audio"), "--out", str(only)]) == 0
    source = _cm(write, [_item(3, vid="c3", query="a dog barks loudly")])
    assert main(["clotho-moment", str(source), "--audio-dir", str(tmp_path / "audio"), "--out", str(other)]) == 0
    out = tmp_path / "neg.jsonl"
    assert main(["negatives", str(only), "--out", str(out)]) == 1  # no valid negative in a pool of one query
    assert main(["negatives", str(only), "--out", str(out), "--pool-from", str(other)]) == 0
    (negative,) = [r for r in load_manifest(out) if r["task"] == "existence" and r["exists"] is False]
    assert negative["query"] == "a dog barks loudly"
