"""TGSR Table 3 behaviour scores that need a model: audiology verification (Whisper) and a consistency judge.

``regions_explored`` needs no model and is computed in :mod:`rl_audio.evaluate.metrics`. The two scores here are
costly (ASR of every referenced region; an LLM call per answer), so each per-row score is cached in
``output_dir/behaviour.jsonl``, keyed by score name, scorer (the ASR model and backend, or the judge), row id and a
hash of the answer: a resumed evaluation does not recompute them, and one with another ASR model or judge does. (An
injected judge is known by its qualified name: two lambdas of one scope look the same.)

* ``audiology_verify`` (TGSR App. C.4): :class:`rewards.audiology.AudiologyVerify`, the same grader as the reward,
  on ``cfg.audiology_model`` with ``cfg.audiology_asr_backend`` (transformers Whisper, or CTranslate2 through
  faster-whisper; ``auto`` tells them apart by the directory's files).
* ``consistency`` (TGSR §5.4, App. C.4): any callable ``judge(question, prediction, row) -> float`` named by a
  dotted path (``package.module.attribute``; a class or zero-argument factory is called first). TGSR's judge is an
  LLM (Qwen3-32B) answering 1 when the reasoning supports the final answer and 0 otherwise.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

from ..data import render_question

logger = logging.getLogger(__name__)

BEHAVIOUR_FILE = "behaviour.jsonl"


def load_callable(dotted: str, what: str = "judge") -> Callable:
    """Import ``package.module.attribute`` (or ``package.module:attribute``); call it first if it is a class or a
    factory without parameters that returns a callable."""
    module_name, sep, attribute = dotted.replace(":", ".").rpartition(".")
    if not sep or not module_name:
        raise ValueError(f"{what} {dotted!r}: expected a dotted path 'package.module.attribute'")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{what} {dotted!r}: cannot import it ({err})") from err
    if isinstance(found, type):
        found = found()
    if not callable(found):
        raise ValueError(f"{what} {dotted!r} is not callable")
    return found


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class ScoreCache:
    """Per-row scores by (name, id, answer hash), persisted as JSON lines."""

    def __init__(self, path: Path):
        self.path = path
        self.values: dict[tuple[str, str, str], float | None] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    item = json.loads(line)
                    self.values[(item["name"], item["id"], item["hash"])] = item["score"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    logger.warning("%s: ignoring an unreadable line", path)

    def get(self, name: str, row_id: str, text: str):
        return self.values.get((name, row_id, _digest(text)), ...)

    def add(self, name: str, items: list[tuple[str, str, float | None]]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            for row_id, text, score in items:
                self.values[(name, row_id, _digest(text))] = score
                handle.write(json.dumps({"name": name, "id": row_id, "hash": _digest(text), "score": score}) + "\n")


def _finite_or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _name_of(fn) -> str:
    """A stable name for an injected scorer: its qualified name (a function), else its class's."""
    owner = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(owner, '__module__', '?')}.{owner.__qualname__}"


def audiology_scores(
    rows: list[dict], texts: dict[str, str], verify, cache: ScoreCache, batch: int = 16, scorer: str | None = None
) -> dict:
    """``{id: score}`` of :class:`rewards.audiology.AudiologyVerify` for ``rows`` (cached per ``scorer``: by default
    the transcriber's name, its padding and step limit)."""
    model = getattr(verify.transcriber, "model_name", "")  # both Whisper transcribers record their checkpoint
    scorer = scorer or f"{_name_of(verify.transcriber)}|{model}|padding={verify.padding}|max_steps={verify.max_steps}"
    name = f"audiology_verify@{scorer}"
    out, todo = {}, []
    for row in rows:
        cached = cache.get(name, row["id"], texts[row["id"]])
        if cached is ...:
            todo.append(row)
        else:
            out[row["id"]] = cached
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        # the reward scores qa and sta rows by default; evaluation asks for these rows whatever their task
        values = verify(
            [texts[r["id"]] for r in chunk], task=[verify.tasks[0]] * len(chunk), audio=[r["audio"] for r in chunk]
        )
        items = [(r["id"], texts[r["id"]], _finite_or_none(v)) for r, v in zip(chunk, values)]
        cache.add(name, items)
        out.update({row_id: v for row_id, _, v in items})
    return out


def judge_scores(
    rows: list[dict],
    texts: dict[str, str],
    judge: Callable,
    answer_style: str,
    cache: ScoreCache,
    scorer: str | None = None,
):
    """``{id: judge(question, prediction, row)}`` for ``rows`` (cached per ``scorer``, by default the judge's
    name); a non-number is an error."""
    name = f"consistency@{scorer or _name_of(judge)}"
    out = {}
    for row in rows:
        text = texts[row["id"]]
        cached = cache.get(name, row["id"], text)
        if cached is ...:
            value = judge(render_question(row, answer_style), text, row)
            if value is not None and not isinstance(value, (int, float)):
                raise TypeError(f"judge returned {value!r} for row {row['id']!r}; expected a number or None")
            cached = _finite_or_none(value)
            cache.add(name, [(row["id"], text, cached)])
        out[row["id"]] = cached
    return out


def behaviour_scores(rows, texts, cfg, output_dir: Path, *, audiology=None, judge=None) -> dict[str, dict]:
    """The configured model-based behaviour scores of the rows of ``cfg.behaviour_tasks``.

    ``audiology`` (an :class:`~rewards.audiology.AudiologyVerify`) and ``judge`` (a callable) override
    ``cfg.audiology_model`` (with ``cfg.audiology_asr_backend``) and ``cfg.judge``.
    """
    rows = [r for r in rows if r["task"] in cfg.behaviour_tasks]
    if not rows:
        return {}
    judge_scorer = None
    if audiology is None and cfg.audiology_model:
        from rewards.audiology import AudiologyVerify

        audiology = AudiologyVerify(
            model=cfg.audiology_model, asr_backend=cfg.audiology_asr_backend, local_files_only=True
        )
    if judge is None and cfg.judge:
        judge, judge_scorer = load_callable(cfg.judge), cfg.judge
    cache = ScoreCache(Path(output_dir) / BEHAVIOUR_FILE)
    out = {}
    if audiology is not None:
        logger.info("audiology verification of %d answers", len(rows))
        out["audiology_verify"] = audiology_scores(rows, texts, audiology, cache)
    if judge is not None:
        logger.info("consistency judge on %d answers", len(rows))
        out["consistency"] = judge_scores(rows, texts, judge, cfg.answer_style, cache, scorer=judge_scorer)
    return out
