"""Row provenance and the guard that keeps benchmark evaluation splits out of training: a converted MMAU manifest is
refused by SFT and GRPO data loading (file, line, benchmark, split and the override named), the recipe override
turns that into a warning, evaluation reads it, and manifests without provenance load as before."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rl_audio.cli import help_text, parse_recipe
from rl_audio.configs import AudioGRPOConfig, AudioSFTConfig
from rl_audio.converters import convert
from rl_audio.data import EvalSplitError, ManifestError, load_manifest, manifest_to_dataset, write_manifest
from rl_audio.data.splits import load_rows
from rl_audio.evaluate.config import AudioEvalConfig


@pytest.fixture
def mmau_manifest(tmp_path, make_wav):
    """A manifest whose line 1 is a hand-made qa row and lines 2-3 come from the MMAU converter."""
    make_wav("audio/u1.wav", 2.0)
    make_wav("audio/u2.wav", 1.5)
    items = [
        {"id": f"u{k}", "audio_id": f"./test-mini-audios/u{k}.wav", "question": "Which?", "choices": ["a", "b"]}
        | {"answer": "b", "task": "speech"}
        for k in (1, 2)
    ]
    source = tmp_path / "mmau-test-mini.json"
    source.write_text(json.dumps(items))
    rows, _ = convert("mmau", str(source), audio_dir=str(tmp_path / "audio"))
    own = {"id": "mine", "audio": str(tmp_path / "audio" / "u1.wav"), "duration": 2.0, "task": "qa"}
    own |= {"query": "Is it loud?", "choices": ["yes", "no"], "answer": "yes"}
    return write_manifest([own, *rows], tmp_path / "data" / "mmau.jsonl")


def _cfg(cls, tmp_path, manifest, *extra):
    return parse_recipe(
        cls, ["--output_dir", str(tmp_path / "out"), "--train_manifests", f"[{manifest}]", "--tasks", "[qa]", *extra]
    )


@pytest.mark.parametrize("cls", [AudioSFTConfig, AudioGRPOConfig])
def test_training_refuses_a_converted_mmau_manifest(cls, tmp_path, mmau_manifest):
    cfg = _cfg(cls, tmp_path, mmau_manifest)
    with pytest.raises(EvalSplitError) as caught:
        load_rows(cfg, "train")
    message = str(caught.value)
    assert message.startswith(f"{mmau_manifest}:2: row 'mmau-u1' is from the test-mini split of MMAU")
    assert "2 of the 3 rows" in message and "allow_eval_split_training: true" in message


def test_the_override_warns_and_evaluation_reads_the_rows(tmp_path, mmau_manifest, caplog):
    cfg = _cfg(AudioGRPOConfig, tmp_path, mmau_manifest, "--allow_eval_split_training", "true")
    with caplog.at_level(logging.WARNING, logger="rl_audio"):
        rows = load_rows(cfg, "train")
    assert len(rows) == 3
    warning = next(r.getMessage() for r in caplog.records if "evaluation split" in r.getMessage())
    assert warning.startswith(f"{mmau_manifest}:2: row 'mmau-u1' is from the test-mini split of MMAU")
    assert "allow_eval_split_training is true" in warning
    caplog.clear()
    evaluation = _cfg(AudioSFTConfig, tmp_path, mmau_manifest, "--eval_manifests", f"[{mmau_manifest}]")
    with caplog.at_level(logging.WARNING, logger="rl_audio"):
        assert len(load_rows(evaluation, "eval")) == 3
    assert "evaluation split" not in caplog.text


def test_old_manifests_without_provenance_still_load(write_lines, make_wav):
    make_wav("clip.wav", 2.0)
    row = {"id": "q", "audio": "clip.wav", "duration": 2.0, "task": "qa", "query": "Which?"}
    row |= {"choices": ["a", "b"], "answer": "a", "meta": {"source": "meld"}}
    path = write_lines([row, {**row, "id": "q2", "meta": {}}])
    assert [r["meta"] for r in load_manifest(path)] == [{"source": "meld"}, {}]
    assert len(manifest_to_dataset(path, eval_splits="refuse")) == 2


def test_mmau_rows_converted_before_provenance_are_still_refused(write_lines, make_wav):
    make_wav("clip.wav", 2.0)
    row = {"id": "mmau-1", "audio": "clip.wav", "duration": 2.0, "task": "qa", "query": "Which?"}
    row |= {"choices": ["a", "b"], "answer": "a", "meta": {"source": "mmau", "domain": "speech"}}
    path = write_lines(["", row])
    with pytest.raises(EvalSplitError, match=r"m\.jsonl:2: row 'mmau-1' is from the unrecorded split of MMAU"):
        manifest_to_dataset(path, eval_splits="refuse")
    assert len(manifest_to_dataset(path, eval_splits="warn")) == 1
    assert len(manifest_to_dataset(path)) == 1  # evaluation (the default) reads it


@pytest.mark.parametrize(
    "provenance, message",
    [
        ("MMAU", "provenance: expected an object"),
        ({"converter": "mmau", "benchmark": "MMAU"}, "provenance: unknown key 'benchmark'"),
        ({"split": 3}, "provenance.split: expected a string or null"),
    ],
)
def test_malformed_provenance_is_a_row_error(write_lines, provenance, message):
    row = {"id": "g", "audio": "clip.wav", "duration": 2.0, "task": "grounding", "query": "a dog"}
    row |= {"windows": [[0.5, 1.0]], "meta": {"provenance": provenance}}
    with pytest.raises(ManifestError, match=rf"m\.jsonl:1: field 'meta': {message}"):
        load_manifest(write_lines([row]))


def test_the_override_is_a_training_key(tmp_path):
    assert "--allow_eval_split_training:" in help_text(AudioGRPOConfig)
    assert "--allow_eval_split_training:" in help_text(AudioSFTConfig)
    assert "--allow_eval_split_training:" not in help_text(AudioEvalConfig)  # accepted there, and ignored
    assert _cfg(AudioSFTConfig, tmp_path, "x.jsonl").allow_eval_split_training is False


def test_the_tgsr_recipe_trains_on_meld_and_keeps_mmau_for_evaluation(tmp_path):
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "tgsr.yaml"
    cfg = parse_recipe(AudioGRPOConfig, [str(recipe), "--output_dir", str(tmp_path)])
    assert any("meld" in path for path in cfg.train_manifests)
    assert not any("mmau" in path.lower() for path in cfg.train_manifests)
    assert cfg.allow_eval_split_training is False
