"""Hostile manifest lines: each is refused with its file, line and field, is counted under its own
reason by ``skip_invalid``, and never raises anything but :class:`ManifestError`."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rl_audio.data import ManifestError, load_manifest, load_manifest_with_report
from rl_audio.data.__main__ import main as data_main

GOOD = {"id": "ok", "audio": "a.wav", "duration": 3.0, "task": "grounding", "query": "a bell", "windows": [[0.5, 1.5]]}
GOOD_LINE = json.dumps(GOOD)


def _row_text(**fields) -> str:
    return json.dumps({**GOOD, "id": "bad", **fields})


HOSTILE = {
    "repeated_windows": (
        GOOD_LINE[:-1] + ', "windows": []}',  # the second `windows` would relabel the row as a negative
        r":1: field 'windows': appears twice",
        "repeated_key",
    ),
    "repeated_exists": (
        _row_text(exists=True)[:-1] + ', "exists": false}',
        r":1: field 'exists': appears twice",
        "repeated_key",
    ),
    "deep": ("[" * 50_000 + "]" * 50_000, r":1: JSON nested too deeply", "too_deep"),
    "401_digits": (_row_text(duration=int("9" * 401)), r":1: field 'duration': a number too large", "bad_number"),
    "5001_digits": ('{"id": "bad", "duration": ' + "9" * 5001 + "}", r":1: unreadable number", "bad_number"),
    "surrogate": (GOOD_LINE.replace('"ok"', '"bad\\ud800"'), r":1: text that is not valid Unicode", "bad_encoding"),
    "long_line": (
        _row_text(query="x" * (1 << 20)),
        r":1: line of 1,048,\d+ bytes, longer than the limit",
        "line_too_long",
    ),
    "many_windows": (
        _row_text(duration=3000.0, windows=[[k, k + 0.5] for k in range(1001)]),
        r":1: field 'windows': 1001 items, more than the limit of 1000",
        "too_many_items",
    ),
    "many_events": (
        _row_text(task="sed", query="", windows=[], events=[{"onset": 0, "offset": 1, "label": "x"}] * 1001),
        r":1: field 'events': 1001 items",
        "too_many_items",
    ),
}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_line_is_named_and_skippable(folder, case):
    line, message, kind = HOSTILE[case]
    path = folder / f"{case}.jsonl"
    path.write_text(line + "\n" + GOOD_LINE.replace('"ok"', '"ok2"') + "\n")
    with pytest.raises(ManifestError, match=message) as err:
        load_manifest(path)
    assert str(err.value).startswith(str(path)) and err.value.kind == kind
    rows, report = load_manifest_with_report(path, skip_invalid=True)
    assert [r["id"] for r in rows] == ["ok2"] and report.skipped == {kind: 1}


def test_bytes_that_are_not_utf8_name_their_line(folder):
    path = folder / "latin1.jsonl"
    path.write_bytes(
        GOOD_LINE.encode()
        + b"\n"
        + json.dumps({**GOOD, "id": "bad", "query": "caf\xe9"}, ensure_ascii=False).encode("latin-1")
        + b"\n"
    )
    with pytest.raises(ManifestError, match=r"latin1.jsonl:2: not UTF-8 text \(byte 0xe9"):
        load_manifest(path)
    rows, report = load_manifest_with_report(path, skip_invalid=True)
    assert len(rows) == 1 and report.skipped == {"bad_encoding": 1}


def test_a_byte_order_mark_is_accepted(folder):
    path = folder / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_LINE.encode() + b"\n")
    assert [r["id"] for r in load_manifest(path)] == ["ok"]


def test_an_empty_manifest_is_an_error(folder):
    path = folder / "empty.jsonl"
    path.write_text("\n  \n")
    with pytest.raises(ManifestError, match=r"empty.jsonl: the manifest has no rows"):
        load_manifest(path)


def test_validate_names_a_missing_file_or_a_directory(folder, caplog):
    assert data_main(["validate", str(folder / "nope.jsonl")]) == 1
    assert data_main(["validate", str(folder)]) == 1
    assert "nope.jsonl: not found" in caplog.text and "is a directory, not a manifest file" in caplog.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=60),
            st.sampled_from([b"{", b"}", b"[", b'"', b":", b",", b"\\u", b"\xff", b"\xef\xbb\xbf", b"9" * 30]),
            st.just(GOOD_LINE.encode()),
        ),
        max_size=12,
    )
)
def test_fuzzed_bytes_load_or_raise_a_manifest_error(folder, chunks):
    path = folder / "fuzz.jsonl"
    data = b"".join(chunks)
    path.write_bytes(data)
    try:
        load_manifest(path)
    except ManifestError as err:
        assert str(err).startswith(f"{path}:") or str(err).startswith(f"{path}: the manifest has no rows")


def test_write_manifest_with_a_lone_surrogate_writes_nothing(tmp_path):
    from rl_audio.data import write_manifest

    (tmp_path / "a.wav").write_bytes(b"")
    rows = [dict(GOOD, audio=str(tmp_path / "a.wav")), dict(GOOD, id="bad\ud800", audio=str(tmp_path / "a.wav"))]
    with pytest.raises(ValueError, match="cannot write row 1 .*not valid Unicode"):
        write_manifest(rows, tmp_path / "out.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]  # no manifest, no .tmp
