"""Evaluate a model on manifests.

    python -m rl_audio.evaluate [RECIPE.yaml] [--key value ...]
    python -m rl_audio.evaluate --help

Writes output_dir/{predictions.jsonl, metrics.json, report.md, plots/}; rerunning resumes an interrupted run.
"""

from __future__ import annotations

import json
import logging

from ..cli import parse_recipe, run_entry
from ..runs import setup_logging
from .config import AudioEvalConfig
from .report import HEADLINE
from .runner import METRICS_FILE, REPORT_FILE, run_evaluation

logger = logging.getLogger("rl_audio.evaluate")


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_recipe(AudioEvalConfig, argv)
    setup_logging()
    metrics = run_evaluation(cfg)
    headline = {
        f"{t}/{k}": round(metrics[t][k], 4) for t, k in HEADLINE.items() if metrics.get(t, {}).get(k) is not None
    }
    logger.info("%s", json.dumps(headline))
    logger.info("wrote %s/%s and %s/%s", cfg.output_dir, METRICS_FILE, cfg.output_dir, REPORT_FILE)
    return metrics


if __name__ == "__main__":
    run_entry(main)
