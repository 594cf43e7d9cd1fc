"""`run_evaluation(cfg)`: manifests -> resumable batched generation -> metrics.json, report.md, plots/."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm

from ..data import load_manifest_with_report
from ..data.splits import manifests_for
from .behaviour import behaviour_scores
from .config import AudioEvalConfig, resolve_from_checkpoint
from .generation import PREDICTIONS_FILE, ModelGenerator, PredictionStore, check_settings, generation_settings
from .metrics import compute_metrics
from .plots import write_plots
from .report import render_report
from .scoring import parse_prediction, score_row

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"


class Generator(Protocol):
    def generate(self, rows: list[dict]) -> list[str]: ...


def _manifest_names(paths: list[str]) -> list[str]:
    """Short unique names: the file stem, else ``parent/stem``, else the path."""
    for name_of in (lambda p: Path(p).stem, lambda p: f"{Path(p).parent.name}/{Path(p).stem}", str):
        names = [name_of(p) for p in paths]
        if len(set(names)) == len(names) and "manifest" not in names:
            return names
    return [str(p) for p in paths]


def load_eval_rows(cfg: AudioEvalConfig) -> tuple[list[dict], dict[str, str], list[str]]:
    """Rows of the evaluation manifests (filtered to ``cfg.tasks``), the manifest name of each id, the paths."""
    paths = manifests_for(cfg, "eval")
    rows, manifest_of = [], {}
    for path, name in zip(paths, _manifest_names(paths)):  # manifests_for has checked that every path exists
        loaded, _ = load_manifest_with_report(path, skip_invalid=cfg.skip_invalid)
        missing_audio = 0
        for row in loaded:
            if cfg.tasks and row["task"] not in cfg.tasks:
                continue
            if not os.path.isfile(row["audio"]):  # found now, not after the model is loaded and half the rows ran
                if not cfg.skip_invalid:
                    raise FileNotFoundError(f"{path}: row {row['id']!r}: audio file {row['audio']} not found")
                missing_audio += 1
                continue
            if row["id"] in manifest_of:
                raise ValueError(f"id {row['id']!r} appears in both {manifest_of[row['id']]} and {name} ({path})")
            if row["duration"] > cfg.max_audio_seconds:
                raise ValueError(
                    f"{path}: row {row['id']!r} lasts {row['duration']} s, more than max_audio_seconds="
                    f"{cfg.max_audio_seconds}"
                )
            manifest_of[row["id"]] = name
            rows.append(row)
        if missing_audio:
            logger.warning("%s: skipped %d rows whose audio file is missing", path, missing_audio)
    if not rows:
        raise ValueError(f"no rows to evaluate in {paths} (tasks filter: {cfg.tasks or 'none'})")
    logger.info("evaluating %d rows from %s", len(rows), ", ".join(paths))
    return rows, manifest_of, paths


def _model_key(name_or_path: str) -> str:
    expanded = os.path.expanduser(name_or_path)
    return os.path.abspath(expanded) if os.path.isdir(expanded) else name_or_path


def generate_missing(
    rows: list[dict],
    store: PredictionStore,
    make_generator: Callable[[], Generator],
    cfg: AudioEvalConfig,
    manifest_of: dict[str, str],
) -> int:
    """Generate and append answers for the rows ``store`` lacks; returns how many were generated."""
    done = store.load()
    pending = [r for r in rows if r["id"] not in done or done[r["id"]].get("task") != r["task"]]
    if not pending:
        logger.info("all %d answers are in %s", len(rows), store.path)
        return 0
    if len(pending) < len(rows):
        logger.info("resuming: %d of %d answers already in %s", len(rows) - len(pending), len(rows), store.path)
    pending.sort(key=lambda r: (r["duration"], r["id"]))  # similar lengths share a batch: less padding
    generator = make_generator()
    torch.manual_seed(cfg.seed)
    with tqdm(total=len(rows), initial=len(rows) - len(pending), desc="evaluate", unit="row") as bar:
        for start in range(0, len(pending), cfg.batch_size):
            batch = pending[start : start + cfg.batch_size]
            texts = generator.generate(batch)
            if len(texts) != len(batch):
                raise RuntimeError(f"the generator returned {len(texts)} answers for {len(batch)} rows")
            store.append(
                [
                    {
                        "id": row["id"],
                        "task": row["task"],
                        "manifest": manifest_of[row["id"]],
                        "prediction": text,
                        "parsed": parse_prediction(row, text),
                    }
                    for row, text in zip(batch, texts)
                ]
            )
            bar.update(len(batch))
    return len(pending)


def run_evaluation(
    cfg: AudioEvalConfig,
    *,
    generator: Generator | None = None,
    audiology=None,
    judge: Callable | None = None,
) -> dict:
    """Evaluate ``cfg.model_name_or_path`` on ``cfg.eval_manifests`` and return the metrics (also metrics.json).

    Writes ``output_dir/predictions.jsonl`` (appended as answers are produced; a rerun generates only what is
    missing), ``metrics.json``, ``report.md`` and ``plots/``. ``generator`` (anything with
    ``generate(rows) -> list[str]``), ``audiology`` and ``judge`` replace the model, the Whisper verifier and the
    judge named in ``cfg`` (tests, or a model already in memory).
    """
    resolve_from_checkpoint(cfg)
    output_dir = Path(cfg.output_dir)
    rows, manifest_of, paths = load_eval_rows(cfg)
    check_settings(output_dir, generation_settings(cfg, _model_key(cfg.model_name_or_path)), cfg.overwrite)
    store = PredictionStore(output_dir / PREDICTIONS_FILE)
    generate_missing(rows, store, lambda: generator or ModelGenerator(cfg), cfg, manifest_of)
    records = store.load()
    texts = {row["id"]: records[row["id"]]["prediction"] for row in rows}
    scores = {row["id"]: score_row(row, texts[row["id"]], cfg) for row in rows}
    extra = behaviour_scores(rows, texts, cfg, output_dir, audiology=audiology, judge=judge)
    metrics = compute_metrics(rows, texts, cfg, manifest_of=manifest_of, extra=extra, scores=scores)
    metrics = {"model": cfg.model_name_or_path, "manifests": [str(p) for p in paths], **metrics}
    (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    figures = write_plots(rows, records, scores, cfg, output_dir / PLOTS_DIR)
    report = render_report(metrics, cfg, [str(p) for p in paths], figures, output_dir)
    (output_dir / REPORT_FILE).write_text(report, encoding="utf-8")
    logger.info("metrics: %s; report: %s", output_dir / METRICS_FILE, output_dir / REPORT_FILE)
    return metrics


evaluate = run_evaluation
