"""Helpers for the evaluation tests: manifest rows and a scripted stand-in for the model."""

from __future__ import annotations

from rl_audio.data import validate_row
from rl_audio.evaluate import AudioEvalConfig


def config_factory(tmp_path):
    """``make(**overrides)`` -> an AudioEvalConfig writing under ``tmp_path/eval`` unless told otherwise."""

    def make(**overrides):
        overrides.setdefault("output_dir", str(tmp_path / "eval"))
        return AudioEvalConfig(**overrides)

    return make


def make_row(row_id: str, task: str, **fields) -> dict:
    """A validated manifest row (audio path is never opened by the metric tests)."""
    base = {"id": row_id, "audio": f"/nonexistent/{row_id}.wav", "duration": 10.0, "task": task}
    if task in ("grounding", "existence", "sta", "qa") and "query" not in fields:
        base["query"] = "a dog barking"
    return validate_row({**base, **fields})


class ScriptedGenerator:
    """Answers from ``answer(row)``; records every row it was asked for; can stop after some batches."""

    def __init__(self, answer, fail_after_batches: int | None = None):
        self.answer, self.fail_after = answer, fail_after_batches
        self.calls, self.rows = 0, []

    def generate(self, rows):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.rows += [r["id"] for r in rows]
        return [self.answer(r) for r in rows]
