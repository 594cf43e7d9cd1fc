"""One prediction against one manifest row: graded by the task's grader of the rewards (:mod:`rewards.tasks`).

Evaluation never parses or grades model text itself. Every answer is graded by the task grader that the GRPO
rewards call (the same parser, the same matching, the same counts): a row's ``eb_f1`` is the ``eb_f1`` reward's
value, its ``iou`` the ``miou`` reward's, its ``correct`` the ``existence`` / ``answer_correctness`` reward's, its
``meteor`` the ``meteor`` reward's, and the corpus metrics of :mod:`rl_audio.evaluate.metrics` sum the grades'
counts. So the number trained on is the number reported.

:func:`parse_prediction` gives a JSON-able record of what was read from an answer (stored in predictions.jsonl);
:func:`score_row` gives the per-row values that :mod:`rl_audio.evaluate.metrics` aggregates. An answer is
*unparseable* when the parser finds nothing of the task's format in it (for grounding: neither a window nor a
statement of absence); it then scores as a miss (IoU 0, wrong answer, no events).

Predicted windows/events shorter than ``min_duration`` get no credit, by the rule of the ``eb_f1`` and ``miou``
rewards (:mod:`rewards.matching`): they add nothing to an IoU and are unmatched events (false positives) in Eb-F1.
The value is ``cfg.min_duration`` when the config has one, else the rewards' default
:data:`rewards.matching.MIN_DURATION` (0.1 s); ``0.0`` gives the paper-literal metrics.
"""

from __future__ import annotations

from rewards._base import Row
from rewards.matching import MIN_DURATION, Matching
from rewards.tasks import TASKS, AnswerGrade, EventGrade, is_positive
from rewards.tasks import get as get_task
from rewards.text import caption_meteor


def matching(cfg) -> Matching:
    """The matching settings of an evaluation config: its collar, offset tolerance and ``min_duration`` (when the
    config has none, the rewards' default)."""
    min_duration = getattr(cfg, "min_duration", None)
    return Matching(
        t_collar=cfg.t_collar,
        percentage_of_length=cfg.sed_percentage_of_length,
        min_duration=MIN_DURATION if min_duration is None else float(min_duration),
    )


def _record(task: str, answer) -> dict:
    """The JSON-able form of a parsed answer (see :func:`parse_prediction`)."""
    if task in ("grounding", "sta"):
        return {"windows": None if answer is None else [list(w) for w in answer]}
    if task == "existence":
        return {"present": answer}
    if task in ("sed", "dac"):
        return {"events": None if answer is None else [[e.onset, e.offset, e.label] for e in answer]}
    return {"choice": answer}


def _checked(row: dict) -> str:
    if row["task"] not in TASKS:
        raise ValueError(f"row {row['id']!r}: no evaluation for task {row['task']!r}")
    return row["task"]


def parse_prediction(row: dict, text: str) -> dict:
    """What the shared parser reads from ``text`` for ``row``'s task; ``ok`` is False when nothing was readable.

    Keys by task: grounding ``windows`` (``[]`` = stated absent, None = unparseable); sta ``windows``; existence
    ``present`` (True/False/None); sed and dac ``events`` (``[[onset, offset, label], ...]``, ``[]`` = "no events",
    None = unparseable); qa ``choice`` (index or None).
    """
    task = _checked(row)
    answer = get_task(task).parse(text, Row.of(row))
    return {"ok": bool(answer is not None and text.strip()), **_record(task, answer)}


def grade_row(row: dict, text: str, cfg) -> EventGrade | AnswerGrade:
    """The task grader's grade of ``text`` against ``row`` under the config's matching settings."""
    task = get_task(_checked(row))
    view = Row.of(row)
    reference = task.reference(view)
    if reference is None:
        raise ValueError(f"row {row['id']!r}: a {row['task']} row needs a reference ({', '.join(task.columns)})")
    return task.grade(reference, text, view, matching(cfg))


def score_row(row: dict, text: str, cfg) -> dict:
    """Per-row values for :mod:`rl_audio.evaluate.metrics`: ``ok`` (parseable), ``parsed``, and by task
    grounding/sta ``iou`` (positives), ``rejected`` (grounding negatives: absence stated); existence ``correct``;
    sed/dac event counts ``tp``, ``n_ref``, ``n_est``, ``per_label``, the clip's ``eb_f1`` and (dac) ``meteor``;
    qa ``correct``. Each value is one of the grade's (:mod:`rewards.tasks`)."""
    grade = grade_row(row, text, cfg)
    task = row["task"]
    ok = bool(grade.parsed and text.strip())
    out = {"ok": ok, "parsed": {"ok": ok, **_record(task, grade.answer)}}
    if task in ("grounding", "sta"):
        if task == "sta" or is_positive(row):
            out["iou"] = grade.iou
        else:
            out["rejected"] = grade.said_present is False
        out["said_present"] = grade.said_present
    elif task in ("sed", "dac"):
        counts = grade.counts
        out.update({"tp": counts.tp, "n_ref": counts.n_ref, "n_est": counts.n_est, "eb_f1": grade.f1})
        out["per_label"] = grade.per_label()
        if task == "dac":
            out["meteor"] = caption_meteor(grade)
    else:  # existence, qa
        out["correct"] = grade.correct
    return out
