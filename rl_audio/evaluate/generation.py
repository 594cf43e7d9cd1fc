"""Batched generation and the resumable prediction file.

`ModelGenerator` turns manifest rows into answers with the same prompt the model was trained on
(`PromptBuilder`: chat template, audio placeholders, interleaved timestamps) and greedy decoding by default.
`PredictionStore` appends one JSON line per answer to ``predictions.jsonl`` as soon as a batch is done; a rerun
reads it back and generates only the rows that are missing, so an interrupted evaluation resumes where it stopped.

Every prompt is rendered from its own row alone and no answer feeds another prompt; this is what lets
:mod:`rl_audio.evaluate.metrics` compute SpotSound's cascade (grounding only after a "yes") from these answers.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..data import load_audio, render_question
from ..models.loading import check_positions, load_model_for
from ..models.prompting import PromptBuilder, pad_left

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"
SETTINGS_FILE = "generation.json"


class PredictionStore:
    """``predictions.jsonl``: ``{"id", "task", "manifest", "prediction", "parsed"}`` per line, appended as produced.

    A last line cut short by a crash (no newline, not valid JSON) is dropped on load; an unreadable line anywhere
    else is an error naming the file and line.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        text = self.path.read_text(encoding="utf-8")
        lines = text.split("\n")
        records: dict[str, dict] = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                    raise ValueError("not a prediction record")
                if not isinstance(record.get("prediction"), str):
                    raise ValueError("'prediction' is not a string")
            except ValueError as err:
                if number == len(lines) and not text.endswith("\n"):
                    logger.warning("%s: dropping a truncated last line (interrupted write)", self.path)
                    self.path.write_text(text[: len(text) - len(line)], encoding="utf-8")
                    break
                raise ValueError(f"{self.path}:{number}: unreadable prediction line ({err})") from err
            records[record["id"]] = record
        else:
            if text and not text.endswith("\n"):  # a complete last record without its newline: end the line
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write("\n")
        return records

    def append(self, records: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def generation_settings(cfg, model_path: str) -> dict:
    """What decides the answers; a rerun with other settings must not mix its answers with these."""
    return {
        "model": model_path,
        "preset_seed": cfg.preset_seed,
        "model_dtype": cfg.model_dtype,
        "timestamps": cfg.timestamp_spec().__dict__,
        "answer_style": cfg.answer_style,
        "system_prompt": cfg.system_prompt,
        "max_new_tokens": cfg.max_new_tokens,
        "do_sample": cfg.do_sample,
        "temperature": cfg.temperature if cfg.do_sample else None,
        "seed": cfg.seed if cfg.do_sample else None,
    }


def check_settings(output_dir: Path, settings: dict, overwrite: bool) -> None:
    """Record the settings; refuse to resume predictions made with different ones (unless ``overwrite``)."""
    path = output_dir / SETTINGS_FILE
    predictions = output_dir / PREDICTIONS_FILE
    if path.exists() and predictions.exists():
        previous = json.loads(path.read_text())
        if previous != settings:
            if not overwrite:
                changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
                raise ValueError(
                    f"{predictions} holds answers generated with other settings (changed: {', '.join(changed)}); "
                    "use another output_dir, or --overwrite true to discard them"
                )
            logger.warning("overwrite: discarding %s (settings changed)", predictions)
            predictions.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2, sort_keys=True))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class ModelGenerator:
    """Answers for manifest rows from a loaded model: ``generate(rows) -> list[str]``."""

    def __init__(self, cfg):
        self.cfg = cfg
        lm = load_model_for(cfg)
        self.device = pick_device(cfg.device)
        self.model = lm.model.to(self.device).eval()
        self.adapter, self.path = lm.adapter, lm.path
        self.tokenizer = lm.adapter.tokenizer
        self.builder = PromptBuilder(lm.adapter, cfg.timestamp_spec(), cfg.system_prompt)
        self.dtype = next(self.model.parameters()).dtype
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.stop_ids = sorted({i for i in (self.tokenizer.eos_token_id, self.builder.turn_end_id) if i is not None})

    def _check_length(self, rows: list[dict], prompt_ids: list[list[int]]) -> None:
        for row, ids in zip(rows, prompt_ids):
            what = f"row {row['id']!r}: prompt of {len(ids)} tokens plus max_new_tokens {self.cfg.max_new_tokens}"
            check_positions(self.model, len(ids) + self.cfg.max_new_tokens, what)

    @torch.inference_mode()
    def generate(self, rows: list[dict]) -> list[str]:
        wavs = [load_audio(row["audio"]) for row in rows]
        questions = [render_question(row, self.cfg.answer_style) for row in rows]
        encoded = self.builder.encode_prompts(wavs, questions)
        self._check_length(rows, encoded.prompt_ids)
        input_ids, attention_mask = pad_left(encoded.prompt_ids, self.pad_id)  # (B, T), (B, T)
        audio_kwargs = self.adapter.model_audio_kwargs(encoded.audio.to(self.device), self.dtype)
        sampling = (
            {"do_sample": True, "temperature": self.cfg.temperature} if self.cfg.do_sample else {"do_sample": False}
        )
        output = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            **audio_kwargs,
            max_new_tokens=self.cfg.max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=self.stop_ids,
            suppress_tokens=self.adapter.reserved_token_ids(),  # never emit audio placeholders
            **sampling,
        )  # (B, T + new)
        return self.tokenizer.batch_decode(output[:, input_ids.shape[1] :], skip_special_tokens=True)
