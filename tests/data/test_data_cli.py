import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rl_audio.data.__main__ import main
from rl_audio.data.default import build_default_dataset
from rl_audio.data.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "rl_audio.data", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_synth_help_and_tiny_run(tmp_path):
    help_ = _run("synth", "--help")
    assert help_.returncode == 0
    for flag in (
        "--num-clips",
        "--seed",
        "--min-len",
        "--max-len",
        "--events-per-clip",
        "--negatives",
        "--sed",
        "--shift-events",
    ):
        assert flag in help_.stdout
    out = tmp_path / "synth"
    result = _run(
        "--quiet", "synth", "--out", str(out), "--num-clips", "3", "--seed", "1", "--min-len", "3",
        "--max-len", "4", "--min-event", "0.5", "--max-event", "1", "--negatives", "--sed",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "rows: 12  clips: 3" in result.stdout
    assert "per task: existence=6, grounding=3, sed=3" in result.stdout  # negatives: existence rows only
    assert "negative queries (existence, exists false): 3" in result.stdout
    assert "grounding rows without windows" not in result.stdout
    assert "window coverage" in result.stdout and "skipped: none" in result.stdout
    rows = load_manifest(out / "manifest.jsonl", check_audio=True)
    assert len(rows) == 12 and len(list((out / "audio").glob("*.wav"))) == 3
    assert all(r["windows"] for r in rows if r["task"] == "grounding")


@pytest.mark.parametrize("command", ["sta", "negatives", "validate", "default"])
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"usage: python -m rl_audio.data {command}" in capsys.readouterr().out


def test_validate_fails_with_file_line_field_then_skips(tmp_path, make_wav, capsys, caplog):
    make_wav("clip.wav", seconds=2.0)
    good = {"id": "a", "audio": "clip.wav", "duration": 2.0, "task": "grounding", "query": "q", "windows": [[0, 1]]}
    bad = {**good, "id": "b", "windows": [[1.5, 0.5]]}
    missing = {**good, "id": "c", "audio": "nope.wav"}
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (good, bad, missing)) + "\n")
    assert main(["--quiet", "validate", str(path)]) == 1
    assert f"{path}:2: field 'windows': window [1.5, 0.5] has end < start" in caplog.text
    clean = tmp_path / "clean.jsonl"
    assert main(["--quiet", "validate", str(path), "--skip-invalid", "--check-audio", "--out", str(clean)]) == 0
    out = capsys.readouterr().out
    assert "rows: 1" in out and "skipped: audio_missing=1, bad_window=1" in out
    assert [r["id"] for r in load_manifest(clean)] == ["a"]


def test_negatives_and_sta_commands(tmp_path, make_wav, capsys):
    base = {"duration": 5.0, "task": "grounding", "windows": [[1, 2]]}
    rows = [
        {**base, "id": "a", "audio": "1.wav", "query": "a dog barking"},
        {**base, "id": "b", "audio": "2.wav", "query": "rain"},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["negatives", str(src), str(tmp_path / "out.jsonl"), "--seed", "3"]) == 0
    assert "per task: existence=4, grounding=2" in capsys.readouterr().out
    make_wav("audio/talk.wav", seconds=3.0)
    (tmp_path / "w").mkdir()
    words = [{"text": t, "start": 0.2 * i, "end": 0.2 * i + 0.15, "confidence": 0.9} for i, t in enumerate("abcdef")]
    seg = {"id": 0, "start": 0.0, "end": 1.2, "text": " a b c d e f", "words": words}
    (tmp_path / "w" / "talk.words.json").write_text(json.dumps({"text": "a b c d e f", "segments": [seg]}))
    args = ["--quiet", "sta", "--whisper-dir", str(tmp_path / "w"), "--audio-dir", str(tmp_path / "audio")]
    assert (
        main(
            [
                *args,
                "--out",
                str(tmp_path / "sta.jsonl"),
                "--spans-per-file",
                "2",
                "--min-words",
                "2",
                "--max-words",
                "2",
            ]
        )
        == 0
    )
    assert "per task: sta=2" in capsys.readouterr().out


def test_default_dataset_is_cached(tmp_path, caplog):
    kwargs = {"num_train": 3, "num_test": 2, "progress": False}
    paths = build_default_dataset(tmp_path, **kwargs)
    assert set(paths) == {"train", "test"}
    train, test = load_manifest(paths["train"], check_audio=True), load_manifest(paths["test"], check_audio=True)
    assert len({r["audio"] for r in train}) == 3 and len({r["audio"] for r in test}) == 2
    assert all(5.0 <= r["duration"] <= 8.0 for r in train + test)
    assert {r["task"] for r in train} == {"grounding", "existence"}
    assert sum(r["exists"] is False for r in train) == 3  # one negative per clip, as an existence row
    assert all(r["windows"] and r["exists"] is True for r in train if r["task"] == "grounding")
    assert not {r["audio"] for r in train} & {r["audio"] for r in test}
    stamp = paths["train"].stat().st_mtime_ns
    assert build_default_dataset(tmp_path, **kwargs) == paths
    assert paths["train"].stat().st_mtime_ns == stamp, "same parameters must not rebuild"
    with caplog.at_level("WARNING", logger="rl_audio.data.default"):
        build_default_dataset(tmp_path, **{**kwargs, "num_train": 2})
    assert "built with other parameters" in caplog.text and "'train': 2" in caplog.text  # said, not silent
    assert len({r["audio"] for r in load_manifest(paths["train"])}) == 2
    assert len(list((tmp_path / "train" / "audio").glob("*.wav"))) == 2  # stale clips removed
