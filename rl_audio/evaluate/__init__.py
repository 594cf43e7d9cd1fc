"""Evaluation of audio-language models on the papers' metrics.

    python -m rl_audio.evaluate RECIPE.yaml [--key value ...]

Python API: :func:`run_evaluation` (alias :func:`evaluate`) takes an :class:`AudioEvalConfig` and returns the
metrics dict it also writes to ``output_dir/metrics.json``. Modules:

- :mod:`~rl_audio.evaluate.config`: the recipe dataclass; timestamp mode and answer style from the checkpoint.
- :mod:`~rl_audio.evaluate.generation`: batched generation and the resumable ``predictions.jsonl``.
- :mod:`~rl_audio.evaluate.scoring`: one answer against one row, through the rewards' parser and graders.
- :mod:`~rl_audio.evaluate.metrics`: per-task aggregation (SpotSound, TimePro-RL, TGSR definitions).
- :mod:`~rl_audio.evaluate.behaviour`: audiology verification and the consistency judge (TGSR Table 3).
- :mod:`~rl_audio.evaluate.report`, :mod:`~rl_audio.evaluate.plots`: report.md and figures.

See ``docs/evaluation.md``.
"""

from .config import AudioEvalConfig
from .metrics import compute_metrics
from .runner import evaluate, load_eval_rows, run_evaluation
from .scoring import parse_prediction, score_row

__all__ = [
    "AudioEvalConfig",
    "compute_metrics",
    "evaluate",
    "load_eval_rows",
    "parse_prediction",
    "run_evaluation",
    "score_row",
]
