"""One prediction against one manifest row: parse it with the rewards' parser, score it with the rewards' graders.

Evaluation never parses model text itself. Every answer goes through :mod:`rewards.parsing` (the parser the GRPO
rewards use) and is scored by :mod:`rewards.temporal`, :class:`rewards.text.MeteorReward` and
:class:`rewards.reasoning.AnswerCorrectness`, so the number trained on is the number reported.

:func:`parse_prediction` gives a JSON-able record of what was read from an answer (stored in predictions.jsonl);
:func:`score_row` gives the per-row values that :mod:`rl_audio.evaluate.metrics` aggregates. An answer is
*unparseable* when the parser finds nothing of the task's format in it (for grounding: neither a window nor a
statement of absence); it then scores as a miss (IoU 0, wrong answer, no events).

Predicted windows/events shorter than ``min_duration`` get no credit, by the rule of the ``eb_f1`` and ``miou``
rewards (:mod:`rewards.grounding`): they add nothing to an IoU and are unmatched events (false positives) in Eb-F1.
The value is ``cfg.min_duration`` when the config has one, else the rewards' default
:data:`rewards.grounding.MIN_DURATION` (0.1 s); ``0.0`` gives the paper-literal metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

from rewards.grounding import MIN_DURATION, scored_event_counts, scored_event_f1, scored_window_iou
from rewards.parsing import (
    answer_region,
    normalise_text,
    parse_absence,
    parse_choice,
    parse_events,
    parse_grounding,
    parse_windows,
    parse_yes_no,
)
from rewards.reasoning import AnswerCorrectness
from rewards.text import MeteorReward

_ANSWER_CORRECTNESS = AnswerCorrectness()
_METEOR = MeteorReward()


def is_positive(row: dict) -> bool:
    """A grounding/existence query whose event is present (``exists`` when set, else: it has windows)."""
    return bool(row["exists"]) if row.get("exists") is not None else bool(row.get("windows"))


def _events(region: str, duration: float) -> list[list] | None:
    """Parsed events; ``[]`` for an explicit "nothing there"; None when neither (same rule as the Eb-F1 reward)."""
    events = parse_events(region, duration)
    if events:
        return [[e.onset, e.offset, e.label] for e in events]
    return [] if parse_absence(region) else None


def parse_prediction(row: dict, text: str) -> dict:
    """What the shared parser reads from ``text`` for ``row``'s task; ``ok`` is False when nothing was readable.

    Keys by task: grounding ``windows`` (``[]`` = stated absent, None = unparseable); sta ``windows``; existence
    ``present`` (True/False/None); sed and dac ``events`` (``[[onset, offset, label], ...]``, ``[]`` = "no events",
    None = unparseable); qa ``choice`` (index or None).
    """
    task, duration = row["task"], row["duration"]
    region = answer_region(text)
    if task == "grounding":
        windows = parse_grounding(region, duration)
        parsed = {"windows": None if windows is None else [list(w) for w in windows]}
        ok = windows is not None
    elif task == "sta":
        windows = parse_windows(region, duration)
        parsed = {"windows": [list(w) for w in windows] if windows else None}
        ok = bool(windows)
    elif task == "existence":
        present = parse_yes_no(text)
        parsed, ok = {"present": present}, present is not None
    elif task in ("sed", "dac"):
        events = _events(region, duration)
        parsed, ok = {"events": events}, events is not None
    elif task == "qa":
        choice = parse_choice(text, row["choices"])
        parsed, ok = {"choice": choice}, choice is not None
    else:
        raise ValueError(f"row {row['id']!r}: no evaluation for task {row['task']!r}")
    return {"ok": bool(ok and text.strip()), **parsed}


def event_counts(
    reference: Sequence[Sequence],
    estimate: Sequence[Sequence],
    *,
    t_collar: float,
    percentage_of_length: float,
    min_duration: float = 0.0,
) -> tuple[int, int, int]:
    """``(TP, N_ref, N_est)`` of one clip under :func:`rewards.temporal.event_f1`'s matching.

    ``TP`` is the matching that ``event_f1`` scores (:func:`rewards.temporal.event_true_positives`): the counts
    that sed_eval accumulates over files for its overall (micro) F come from the same grader as the reward.
    Estimates shorter than ``min_duration`` match nothing and stay in ``N_est``
    (:func:`rewards.grounding.scored_event_counts`).

    >>> event_counts([(1.0, 3.0, "dog"), (5.0, 6.0, "cat")], [(1.1, 3.2, "dog")], t_collar=0.2, percentage_of_length=0.5)
    (1, 2, 1)
    """
    return scored_event_counts(
        reference, estimate, min_duration=min_duration, t_collar=t_collar, percentage_of_length=percentage_of_length
    )


def _min_duration(cfg) -> float:
    """The shortest predicted window that earns credit: the config's ``min_duration``, else the rewards' default."""
    value = getattr(cfg, "min_duration", None)
    return MIN_DURATION if value is None else float(value)


def _relabel(events: Sequence[Sequence], task: str) -> list[tuple[float, float, str]]:
    """As the Eb-F1 reward compares them: SED labels normalised (case, punctuation); DAC timing only."""
    if task == "sed":
        return [(float(e[0]), float(e[1]), normalise_text(str(e[2]))) for e in events]
    return [(float(e[0]), float(e[1]), "") for e in events]


def _reference_events(row: dict) -> list[tuple[float, float, str]]:
    return [(e["onset"], e["offset"], e["label"]) for e in row["events"]]


def _event_scores(row: dict, parsed: dict, text: str, cfg) -> dict:
    task = row["task"]
    reference = _relabel(_reference_events(row), task)
    estimate = _relabel(parsed["events"] or [], task)
    kwargs = {
        "t_collar": cfg.t_collar,
        "percentage_of_length": cfg.sed_percentage_of_length,
        "min_duration": _min_duration(cfg),
    }
    tp, n_ref, n_est = event_counts(reference, estimate, **kwargs)
    per_label = {}
    for label in sorted({e[2] for e in reference} | {e[2] for e in estimate}):
        ref_l = [e for e in reference if e[2] == label]
        est_l = [e for e in estimate if e[2] == label]
        per_label[label] = event_counts(ref_l, est_l, **kwargs)
    # the clip's F, as the eb_f1 reward computes it (an unparseable answer: 0)
    clip_f1 = scored_event_f1(reference, estimate, **kwargs) if parsed["events"] is not None else 0.0
    scores = {"tp": tp, "n_ref": n_ref, "n_est": n_est, "per_label": per_label, "eb_f1": clip_f1}
    if task == "dac":
        events = [{"onset": e[0], "offset": e[1], "label": e[2]} for e in _reference_events(row)]
        scores["meteor"] = _METEOR([text], task=["dac"], events=[events], duration=[row["duration"]])[0]
    return scores


def score_row(row: dict, text: str, cfg) -> dict:
    """Per-row values for :mod:`rl_audio.evaluate.metrics`: ``ok`` (parseable), ``parsed``, and by task
    grounding/sta ``iou`` (positives), ``rejected`` (grounding negatives: absence stated); existence ``correct``;
    sed/dac event counts, ``eb_f1`` and (dac) ``meteor``; qa ``correct``."""
    parsed = parse_prediction(row, text)
    out = {"ok": parsed["ok"], "parsed": parsed}
    task = row["task"]
    if task in ("grounding", "sta"):
        predicted = parsed["windows"] or []
        if task == "sta" or is_positive(row):
            if parsed["windows"] is None:
                out["iou"] = 0.0
            else:
                out["iou"] = scored_window_iou(row["windows"], predicted, min_duration=_min_duration(cfg))
        else:
            out["rejected"] = parsed["windows"] == []
        out["said_present"] = None if parsed["windows"] is None else bool(parsed["windows"])
    elif task == "existence":
        present = parsed["present"]
        out["correct"] = present is not None and present == is_positive(row)
    elif task in ("sed", "dac"):
        out.update(_event_scores(row, parsed, text, cfg))
    elif task == "qa":
        value = _ANSWER_CORRECTNESS([text], task=["qa"], answer=[row["answer"]], choices=[row["choices"]])[0]
        out["correct"] = bool(value)
    return out
