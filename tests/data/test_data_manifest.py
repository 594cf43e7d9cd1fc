import logging
import math
import os

import numpy as np
import pytest

from rl_audio.data.manifest import (
    FIELDS,
    ManifestError,
    RowError,
    load_manifest,
    load_manifest_with_report,
    manifest_to_dataset,
    validate_row,
    write_manifest,
)


def _error(path, **kw) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_manifest(path, **kw)
    return info.value


def test_validate_row_fills_defaults_and_sorts(grounding_row):
    row = validate_row(grounding_row(windows=[[1.5, 1.9], [0.1, 0.2]]))
    assert list(row) == list(FIELDS)
    assert row["windows"] == [[0.1, 0.2], [1.5, 1.9]]
    assert row["events"] == [] and row["exists"] is None and row["choices"] == [] and row["answer"] == ""
    assert row["meta"] == {}


def test_validate_row_clamps_within_tolerance(grounding_row):
    row = validate_row(grounding_row(windows=[[-0.03, 2.04]]))
    assert row["windows"] == [[0.0, 2.0]]
    with pytest.raises(RowError, match="outside"):
        validate_row(grounding_row(windows=[[-0.03, 2.04]]), duration_tolerance=0.01)


@pytest.mark.parametrize(
    ("line", "field", "text"),
    [
        ({"windows": [[1.5, 0.5]]}, "windows", "window [1.5, 0.5] has end < start"),
        ({"windows": [[0.5, 2.5]]}, "windows", "window [0.5, 2.5] lies outside [0, 2.0]"),
        ({"windows": [[-1.0, 0.5]]}, "windows", "lies outside"),
        ({"windows": [[0.5, 0.5]]}, "windows", "zero length"),
        ({"windows": [[0.5]]}, "windows", "expected a [start, end] pair"),
        ({"windows": [[0.5, math.nan]]}, "windows", "non-finite number nan"),
        ({"duration": math.inf}, "duration", "non-finite"),
        ({"duration": 0}, "duration", "must be > 0"),
        ({"duration": "2"}, "duration", "expected a number"),
        ({"task": "captioning"}, "task", "unknown task 'captioning' (valid tasks: grounding, existence"),
        ({"query": ""}, "query", "must be a non-empty string"),
        ({"window": [[0.1, 0.2]]}, "window", "unknown field (valid fields: id, audio"),
        ({"exists": "yes"}, "exists", "expected true, false or null"),
        ({"exists": False}, "windows", "exists is false but windows are given"),
        ({"events": [{"onset": 1.0, "offset": 0.5, "label": "x"}]}, "events", "event [1.0, 0.5] has end < start"),
        ({"events": [{"onset": 0.1, "offset": 0.5}]}, "events", "expected {'onset', 'offset', 'label'}"),
    ],
)
def test_bad_row_names_file_line_and_field(write_lines, grounding_row, line, field, text):
    path = write_lines([grounding_row(id="ok"), grounding_row(**line)])
    err = _error(path)
    assert str(err).startswith(f"{path}:2: field '{field}': ")
    assert text in str(err)
    assert (err.path, err.line, err.field) == (str(path), 2, field)


@pytest.mark.parametrize("missing", ["id", "audio", "duration", "task", "query"])
def test_missing_field(write_lines, grounding_row, missing):
    row = grounding_row()
    del row[missing]
    err = _error(write_lines([row]))
    assert f":1: field '{missing}': missing required field" in str(err)


def test_query_may_be_absent_for_sed(write_lines):
    path = write_lines([{"id": "s", "audio": "a.wav", "duration": 3, "task": "sed"}])
    assert load_manifest(path)[0]["query"] == ""


def test_malformed_json_names_file_and_line(write_lines, grounding_row):
    path = write_lines([grounding_row(), "", '{"id": "x", "audio": ', grounding_row(id="r3")])
    err = _error(path)
    assert str(err).startswith(f"{path}:3: malformed JSON")
    assert err.kind == "malformed_json"


def test_non_object_line(write_lines):
    assert "expected a JSON object, got list" in str(_error(write_lines(["[1, 2]"])))


def test_duplicate_id(write_lines, grounding_row):
    err = _error(write_lines([grounding_row(), grounding_row(), grounding_row()]))
    assert str(err).endswith(":2: field 'id': duplicate id 'r1' (first on line 1)")


@pytest.mark.parametrize(
    ("row", "field", "text"),
    [
        ({"task": "existence", "query": "q", "windows": []}, "exists", "existence rows need exists"),
        ({"task": "sta", "query": "q", "windows": [[0.1, 0.2], [0.3, 0.4]]}, "windows", "exactly one window"),
        ({"task": "qa", "query": "q?", "windows": [], "choices": ["a"], "answer": "a"}, "choices", "2 to 26"),
        ({"task": "qa", "query": "q?", "windows": [], "choices": ["a", "b"], "answer": "c"}, "answer", "not one of"),
        ({"task": "grounding", "query": "q", "windows": [], "exists": True}, "windows", "exists is true but no"),
    ],
)
def test_task_consistency(write_lines, grounding_row, row, field, text):
    err = _error(write_lines([grounding_row(**row)]))
    assert f":1: field '{field}': " in str(err) and text in str(err)


def test_audio_resolved_relative_to_manifest(tmp_path, write_lines, grounding_row):
    path = write_lines([grounding_row(audio="sub/a.wav"), grounding_row(id="r2", audio="/abs/b.wav")], "m.jsonl")
    rows = load_manifest(path)
    assert rows[0]["audio"] == os.path.join(str(tmp_path), "sub", "a.wav")
    assert rows[1]["audio"] == "/abs/b.wav"


@pytest.mark.parametrize(
    ("setup", "kind", "text"),
    [
        ("missing", "audio_missing", "audio file not found"),
        ("garbage", "audio_unreadable", "audio file is unreadable"),
        ("empty", "audio_empty", "empty (0 samples)"),
    ],
)
def test_check_audio_header(tmp_path, make_wav, write_lines, grounding_row, setup, kind, text):
    make_wav("good.wav", seconds=2.0)
    if setup == "garbage":
        (tmp_path / "bad.wav").write_bytes(b"\x00garbage" * 50)
    elif setup == "empty":
        make_wav("bad.wav", data=np.zeros(0))
    path = write_lines([grounding_row(audio="good.wav"), grounding_row(id="r2", audio="bad.wav")])
    assert len(load_manifest(path)) == 2  # without check_audio, files are not touched
    err = _error(path, check_audio=True)
    assert str(err).startswith(f"{path}:2: field 'audio': {tmp_path / 'bad.wav'}: ")
    assert text in str(err) and err.kind == kind


@pytest.mark.parametrize(("name", "text"), [("silent", "silent"), ("nan", "NaN/inf samples")])
def test_check_audio_decode(make_wav, write_lines, grounding_row, name, text):
    data = np.zeros(32000) if name == "silent" else np.full(32000, 0.1)
    data[10] = np.nan if name == "nan" else 0.0
    make_wav(f"{name}.wav", data=data, subtype="FLOAT")
    path = write_lines([grounding_row(audio=f"{name}.wav")])
    assert load_manifest(path, check_audio="header")  # the header is fine
    err = _error(path, check_audio="decode")
    assert str(err).startswith(f"{path}:1: field 'audio': ") and text in str(err)


def test_check_audio_duration_mismatch(make_wav, write_lines, grounding_row):
    make_wav("clip.wav", seconds=1.0)
    err = _error(write_lines([grounding_row(duration=2.0)]), check_audio=True)
    assert ":1: field 'duration': 2.0 s but the audio file lasts 1.000 s" in str(err)


def test_skip_invalid_counts_by_reason_and_logs(tmp_path, make_wav, write_lines, grounding_row, caplog):
    make_wav("clip.wav", seconds=2.0)
    lines = [
        grounding_row(id="good1"),
        grounding_row(id="w1", windows=[[1.5, 0.5]]),
        grounding_row(id="w2", windows=[[0.5, 9.0]]),
        "{not json",
        grounding_row(id="t", task="bogus"),
        grounding_row(id="a", audio="gone.wav"),
        grounding_row(id="good1"),
        grounding_row(id="good2", windows=[]),
    ]
    path = write_lines(lines)
    with caplog.at_level(logging.WARNING, logger="rl_audio.data.manifest"):
        rows, report = load_manifest_with_report(path, skip_invalid=True, check_audio=True)
    assert [r["id"] for r in rows] == ["good1", "good2"]
    assert dict(report.skipped) == {
        "bad_window": 2,
        "malformed_json": 1,
        "unknown_task": 1,
        "audio_missing": 1,
        "duplicate_id": 1,
    }
    assert (report.total, report.kept, report.num_skipped) == (8, 2, 6)
    assert "kept 2 of 8 rows" in caplog.text and "bad_window: 2" in caplog.text
    assert f"{path}:2: field 'windows'" in caplog.text


def test_write_then_load_round_trip(tmp_path, grounding_row):
    rows = [
        grounding_row(audio=str(tmp_path / "audio" / "a.wav"), meta={"snr": 3}),
        grounding_row(id="r2", audio="/elsewhere/b.wav", windows=[]),
    ]
    path = write_manifest(rows, tmp_path / "m.jsonl")
    text = path.read_text()
    assert '"audio": "audio/a.wav"' in text and '"audio": "/elsewhere/b.wav"' in text
    loaded = load_manifest(path)
    assert loaded[0]["audio"] == str(tmp_path / "audio" / "a.wav")
    assert loaded[0]["meta"] == {"snr": 3} and loaded[1]["windows"] == []


def test_write_manifest_rejects_invalid_rows(tmp_path, grounding_row):
    with pytest.raises(ValueError, match=r"row 1 \(id 'bad'\).*field 'windows'"):
        write_manifest([grounding_row(), grounding_row(id="bad", windows=[[3, 1]])], tmp_path / "m.jsonl")
    assert not (tmp_path / "m.jsonl").exists()


def test_manifest_to_dataset_mixed_empty_lists(tmp_path, write_lines, grounding_row):
    first = write_lines(
        [
            grounding_row(id="g0", windows=[]),  # the first row has every list empty
            grounding_row(id="g1", windows=[[0.1, 0.4], [1.0, 1.5]], exists=True),
            {"id": "s0", "audio": "clip.wav", "duration": 2.0, "task": "sed", "events": []},
        ],
        "a.jsonl",
    )
    events = [{"onset": 0.2, "offset": 0.9, "label": "dog"}, {"onset": 1.0, "offset": 1.9, "label": "cat"}]
    qa = {"task": "qa", "query": "What?", "windows": [], "choices": ["x", "y"], "answer": "y"}
    second = write_lines(
        [
            {"id": "s1", "audio": "clip.wav", "duration": 2.0, "task": "sed", "events": events, "meta": {"k": 1}},
            grounding_row(id="q0", **qa),
        ],
        "b.jsonl",
    )
    ds = manifest_to_dataset([first, second])
    assert ds.num_rows == 5
    assert ds.features["windows"].feature.length == 2
    by_id = {row["id"]: row for row in ds}
    assert by_id["g0"]["windows"] == [] and by_id["g0"]["exists"] is None
    assert by_id["g1"]["windows"] == [[0.1, 0.4], [1.0, 1.5]] and by_id["g1"]["exists"] is True
    assert by_id["s0"]["events"] == [] and by_id["s1"]["events"] == events
    assert by_id["q0"]["choices"] == ["x", "y"] and by_id["q0"]["answer"] == "y"
    assert by_id["s1"]["meta"] == '{"k": 1}'
    assert by_id["g0"]["audio"] == str(tmp_path / "clip.wav")


def test_manifest_to_dataset_rejects_ids_shared_across_files(write_lines, grounding_row):
    a, b = write_lines([grounding_row()], "a.jsonl"), write_lines([grounding_row()], "b.jsonl")
    with pytest.raises(ValueError, match="appears in both"):
        manifest_to_dataset([a, b])
