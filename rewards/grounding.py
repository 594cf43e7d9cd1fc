"""Temporal rewards: Eb-F1 and mIoU (TimePro-RL), existence (SpotSound negatives), and the answer-format reward.

Each reward reads the answer region of a completion (:func:`rewards.parsing.answer_region`), parses it with the
shared parser and scores it with the shared metrics of :mod:`rewards.temporal`, so training and evaluation agree.

Degenerate predictions (our rule, not a paper's). A predicted window or event shorter than ``min_duration``
(default :data:`MIN_DURATION` = 0.1 s) gets no credit: it is a prediction that hits nothing. For Eb-F1 it stays
in ``N_est`` as a false positive (it does not vanish, so an answer made only of such windows scores 0.0, and never
counts as a statement of absence); for IoU it adds nothing to the union of predicted windows, and an answer whose
windows are all too short scores 0.0 (also against an empty reference). Without the rule, "From 1.3 seconds to
1.3 seconds." scores Eb-F1 1.0 against the reference [1.2, 1.5] (collar 0.2 s: both boundaries are within 0.2 s)
while its IoU is 0; GRPO learned to answer that way. Why 0.1 s: it is half the 0.2 s collar, two and a half steps
of TimePro-RL's 0.04 s timestamp grid (one 25 Hz encoder frame; a window must span at least three grid steps), and
shorter than the events of the data here (generated events last at least 0.8 s). Lower it for data with shorter
annotated events. ``min_duration=0.0`` gives the paper-literal values exactly (normalised windows are never
shorter than 0). The comparison allows 1e-9 s of float error, so [1.1, 1.2] (length 0.09999999999999987) is
exactly 0.1 s long and counts. :func:`scored_window_iou`, :func:`scored_event_counts` and
:func:`scored_event_f1` implement the rule; evaluation (``rl_audio.evaluate.scoring``) calls them too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._base import RewardConfigError, RewardFunction, Row
from .parsing import (
    Event,
    answer_region,
    normalise_text,
    parse_choice,
    parse_event_answer,
    parse_grounding,
    parse_windows,
    parse_yes_no,
)
from .temporal import event_f1, event_true_positives, window_iou

__all__ = [
    "MIN_DURATION",
    "EventF1Reward",
    "ExistenceReward",
    "FormatReward",
    "MIoUReward",
    "check_min_duration",
    "is_too_short",
    "scored_event_counts",
    "scored_event_f1",
    "scored_window_iou",
]

MIN_DURATION = 0.1
"""Default shortest predicted window/event that can earn credit, seconds (our choice; see the module docstring)."""

# float slack of the length comparison: parsed decimals such as [1.1, 1.2] are 0.1 s long up to rounding
_LENGTH_EPS = 1e-9

_WINDOW_TASKS = ("grounding", "sta")
_EVENT_TASKS = ("sed", "dac")


def _predicted(task: str, region: str, duration: float | None) -> list[Event] | None:
    """Predicted events of a row; for window tasks each window is an event with an empty label."""
    if task in _WINDOW_TASKS:
        windows = parse_grounding(region, duration)
        return None if windows is None else [Event(start, end, "") for start, end in windows]
    return parse_event_answer(region, duration)


def _reference(row: Row) -> list[Event] | None:
    if row.task in _WINDOW_TASKS:
        windows = row.windows("windows")
        return None if windows is None else [Event(start, end, "") for start, end in windows]
    return row.events("events")


def check_min_duration(min_duration: float, reward: str) -> float:
    """``min_duration`` as a float; a :class:`RewardConfigError` unless it is finite and >= 0."""
    try:
        value = float(min_duration)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise RewardConfigError(
            f"reward {reward!r}: min_duration must be a number >= 0 (seconds), got {min_duration!r}"
        )
    return value


def is_too_short(onset: float, offset: float, min_duration: float) -> bool:
    """True when the window ``[onset, offset]`` is shorter than ``min_duration`` (1e-9 s of float slack).

    >>> is_too_short(1.3, 1.3, 0.1), is_too_short(1.2, 1.3, 0.1), is_too_short(1.3, 1.3, 0.0)
    (True, False, False)
    """
    return min_duration > 0 and abs(offset - onset) < min_duration - _LENGTH_EPS


def scored_window_iou(
    reference: Sequence[Sequence[float]], predicted: Sequence[Sequence[float]], *, min_duration: float = MIN_DURATION
) -> float:
    """:func:`rewards.temporal.window_iou` with windows shorter than ``min_duration`` giving no credit.

    Short windows are left out of the predicted union; when every predicted window is short the score is 0.0 (a
    claim that hits nothing, not a statement of absence, even when ``reference`` is empty).

    >>> scored_window_iou([(1.2, 1.5)], [(1.3, 1.3)]), scored_window_iou([], [(1.3, 1.3)])
    (0.0, 0.0)
    >>> scored_window_iou([(1.0, 3.0)], [(1.0, 3.0), (5.0, 5.0)])
    1.0
    """
    kept = [w for w in predicted if not is_too_short(float(w[0]), float(w[1]), min_duration)]
    if predicted and not kept:
        return 0.0
    return window_iou(reference, kept)


def scored_event_counts(
    reference: Sequence[Sequence],
    predicted: Sequence[Sequence],
    *,
    min_duration: float = MIN_DURATION,
    t_collar: float = 0.2,
    percentage_of_length: float = 0.5,
    evaluate_onset: bool = True,
    evaluate_offset: bool = True,
) -> tuple[int, int, int]:
    """``(TP, N_ref, N_est)`` of one clip under :func:`rewards.temporal.event_f1`'s matching, short events missing.

    Predicted events shorter than ``min_duration`` are matched against nothing but stay in ``N_est`` (false
    positives); ``TP`` is :func:`rewards.temporal.event_true_positives` on the kept events.

    >>> scored_event_counts([(1.2, 1.5, "")], [(1.3, 1.3, ""), (1.25, 1.5, "")])
    (1, 1, 2)
    """
    kept = [e for e in predicted if not is_too_short(float(e[0]), float(e[1]), min_duration)]
    tp = event_true_positives(
        reference,
        kept,
        t_collar=t_collar,
        percentage_of_length=percentage_of_length,
        evaluate_onset=evaluate_onset,
        evaluate_offset=evaluate_offset,
    )
    return tp, len(reference), len(predicted)


def scored_event_f1(
    reference: Sequence[Sequence],
    predicted: Sequence[Sequence],
    *,
    min_duration: float = MIN_DURATION,
    t_collar: float = 0.2,
    percentage_of_length: float = 0.5,
    evaluate_onset: bool = True,
    evaluate_offset: bool = True,
) -> float:
    """Eb-F1 of one clip with predicted events shorter than ``min_duration`` counted as false positives.

    Equal to :func:`rewards.temporal.event_f1` (the same float) when no predicted event is short, in particular
    always with ``min_duration=0.0``; otherwise ``2 TP / (N_ref + N_est)`` from :func:`scored_event_counts`.

    >>> scored_event_f1([(1.2, 1.5, "")], [(1.3, 1.3, "")]), scored_event_f1([(1.2, 1.5, "")], [(1.3, 1.3, "")],
    ...                                                                       min_duration=0.0)
    (0.0, 1.0)
    """
    settings = {
        "t_collar": t_collar,
        "percentage_of_length": percentage_of_length,
        "evaluate_onset": evaluate_onset,
        "evaluate_offset": evaluate_offset,
    }
    if not any(is_too_short(float(e[0]), float(e[1]), min_duration) for e in predicted):
        return event_f1(reference, predicted, **settings)
    tp, n_ref, n_est = scored_event_counts(reference, predicted, min_duration=min_duration, **settings)
    return 2 * tp / (n_ref + n_est)  # n_est > 0 here


def _relabel(events: list[Event], task: str) -> list[Event]:
    """SED compares normalised labels; DAC descriptions are free text, so DAC Eb-F1 compares timing only."""
    if task == "sed":
        return [Event(e.onset, e.offset, normalise_text(e.label)) for e in events]
    return [Event(e.onset, e.offset, "") for e in events]


class EventF1Reward(RewardFunction):
    """Event-based F1 of the parsed answer, TimePro-RL's main reward ``r_main`` (§2.2; §3.1 collar 0.2 s).

    Formula: ``event_f1(reference, predicted)`` of :func:`rewards.temporal.event_f1` (sed_eval's optimal-matching
    overall F: onset within ``t_collar``, offset within ``max(t_collar, percentage_of_length * length)``, one-to-one
    matching, ``F = 2PR / (P + R)``). Grounding and STA rows compare the parsed windows with ``windows`` under one
    shared label (the query: only timing decides); SED rows compare labels after lower-casing and dropping
    punctuation; DAC rows compare timing only (descriptions are free text). Empty reference and an answer stating
    absence: 1.0; an answer with no parsable window/event and no statement of absence: 0.0. Range [0, 1].

    ``t_collar`` (default 0.2 s) is TimePro-RL's boundary tolerance (§3.1, stated for SED; §2.2 gives none for the
    reward). ``percentage_of_length`` (default 0.5) is sed_eval's own default, not the paper's: TimePro-RL gives no
    length-relative offset tolerance (the TimePro-RL recipes set it in ``reward_kwargs``; DESED evaluates with 0.2).

    ``min_duration`` (seconds, default :data:`MIN_DURATION` = 0.1; our setting, not the paper's): a predicted
    window/event shorter than this is a false positive that matches nothing (it stays in ``N_est``; see the module
    docstring for why and for the value). ``min_duration=0.0`` is the paper-literal reward, equal to sed_eval.

    Source: TimePro-RL §2.2 (eq. 2, r_main = Eb-F1) and §3.1; Mesaros et al. 2016. Columns: ``task``; ``windows``
    (grounding, sta); ``events`` (sed, dac); ``duration`` (optional: predictions are clipped to it).

    >>> eb_f1 = EventF1Reward()
    >>> eb_f1(["From 1.1 seconds to 3.1 seconds.", "From 5 seconds to 6 seconds."],
    ...       task=["grounding", "grounding"], windows=[[[1.0, 3.0]], [[1.0, 3.0]]])
    [1.0, 0.0]

    A zero-length answer is within the 0.2 s collar of both boundaries of a 0.3 s event; it earns nothing by
    default, and 1.0 with the paper-literal setting:

    >>> degenerate = dict(task=["grounding"], windows=[[[1.2, 1.5]]])
    >>> eb_f1(["From 1.3 seconds to 1.3 seconds."], **degenerate)
    [0.0]
    >>> EventF1Reward(min_duration=0.0)(["From 1.3 seconds to 1.3 seconds."], **degenerate)
    [1.0]
    """

    __name__ = "eb_f1"
    default_tasks = _WINDOW_TASKS + _EVENT_TASKS
    required_columns = {"grounding": ("windows",), "sta": ("windows",), "sed": ("events",), "dac": ("events",)}

    def __init__(
        self,
        *,
        t_collar: float = 0.2,
        percentage_of_length: float = 0.5,
        evaluate_onset: bool = True,
        evaluate_offset: bool = True,
        min_duration: float = MIN_DURATION,
        name: str | None = None,
        tasks: tuple[str, ...] | None = None,
    ):
        super().__init__(name=name, tasks=tasks)
        self.min_duration = check_min_duration(min_duration, self.__name__)
        if not (math.isfinite(t_collar) and t_collar >= 0):
            raise RewardConfigError(f"reward {self.__name__!r}: t_collar must be >= 0, got {t_collar}")
        if not 0.0 <= percentage_of_length <= 1.0:
            raise RewardConfigError(
                f"reward {self.__name__!r}: percentage_of_length must be in [0, 1], got {percentage_of_length}"
            )
        if not (evaluate_onset or evaluate_offset):
            raise RewardConfigError(f"reward {self.__name__!r}: evaluate_onset and evaluate_offset are both False")
        self.t_collar, self.percentage_of_length = float(t_collar), float(percentage_of_length)
        self.evaluate_onset, self.evaluate_offset = evaluate_onset, evaluate_offset

    def reference(self, row: Row) -> list[Event] | None:
        events = _reference(row)
        return None if events is None else _relabel(events, row.task)

    def score(self, text: str, reference: list[Event], row: Row) -> float:
        predicted = _predicted(row.task, answer_region(text), row.duration())
        if predicted is None:
            return 0.0
        return scored_event_f1(
            reference,
            _relabel(predicted, row.task),
            min_duration=self.min_duration,
            t_collar=self.t_collar,
            percentage_of_length=self.percentage_of_length,
            evaluate_onset=self.evaluate_onset,
            evaluate_offset=self.evaluate_offset,
        )


class MIoUReward(RewardFunction):
    """IoU of the parsed windows with the reference windows, TimePro-RL's auxiliary reward for AG and SED (§3.2).

    Formula: grounding and STA rows: ``|∪W ∩ ∪Ŵ| / |∪W ∪ ∪Ŵ|`` (:func:`rewards.temporal.window_iou`, the IoU of
    SpotSound §4.1 over several windows); SED rows: the mean of that IoU over the labels of reference and answer
    (windows grouped by normalised label); DAC rows: the IoU of all event windows, descriptions ignored. Empty
    reference and an answer stating absence: 1.0; an unparsable answer: 0.0. Range [0, 1]. The batch mean of this
    reward is the mIoU of SpotSound §4.1.

    ``min_duration`` (seconds, default :data:`MIN_DURATION` = 0.1; our setting, not a paper's): predicted windows
    shorter than this add nothing to the predicted union, and a label (or answer) whose predicted windows are all
    that short scores 0.0 (:func:`scored_window_iou`). ``min_duration=0.0`` gives the paper-literal values.

    Source: TimePro-RL §3.2 (r_aux = mIoU for AG and SED); SpotSound §4.1. Columns: ``task``; ``windows``
    (grounding, sta); ``events`` (sed, dac); ``duration`` (optional).

    >>> miou = MIoUReward()
    >>> miou(['{"query": [2.0, 4.0]}'], task=["grounding"], windows=[[[1.0, 3.0]]])
    [0.3333333333333333]
    """

    __name__ = "miou"
    default_tasks = _WINDOW_TASKS + _EVENT_TASKS
    required_columns = EventF1Reward.required_columns

    def __init__(
        self, *, min_duration: float = MIN_DURATION, name: str | None = None, tasks: tuple[str, ...] | None = None
    ):
        super().__init__(name=name, tasks=tasks)
        self.min_duration = check_min_duration(min_duration, self.__name__)

    reference = EventF1Reward.reference

    def score(self, text: str, reference: list[Event], row: Row) -> float:
        predicted = _predicted(row.task, answer_region(text), row.duration())
        if predicted is None:
            return 0.0
        predicted = _relabel(predicted, row.task)
        labels = {event.label for event in reference} | {event.label for event in predicted}
        if len(labels) <= 1:
            return scored_window_iou(
                [e[:2] for e in reference], [e[:2] for e in predicted], min_duration=self.min_duration
            )
        ious = [
            scored_window_iou(
                [e[:2] for e in reference if e.label == label],
                [e[:2] for e in predicted if e.label == label],
                min_duration=self.min_duration,
            )
            for label in sorted(labels)
        ]
        return math.fsum(ious) / len(ious)


def _as_bool(value: Any, reward: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "1", "false", "no", "0"}:
        return value.strip().lower() in {"true", "yes", "1"}
    if isinstance(value, (int, float, np.bool_, np.integer)):
        return bool(value)
    raise RewardConfigError(f"reward {reward!r}: column 'exists' must hold booleans, got {value!r}")


class ExistenceReward(RewardFunction):
    """Presence answer correctness on SpotSound's existence questions (§2.1, §3.2 negatives, §4.2).

    Formula: ``1.0 if parse_yes_no(answer) == exists else 0.0`` (an undecidable answer scores 0.0). Range {0, 1};
    the batch mean is SpotSound's existence accuracy. Rows whose task is not ``existence``, or whose ``exists`` is
    None, get None.

    Source: SpotSound §2.1 (B ∈ {yes, no}) and §4.2. Columns: ``task``, ``exists``.

    >>> existence = ExistenceReward()
    >>> existence(["Yes.", "No.", "Yes."], task=["existence", "existence", "sed"], exists=[True, True, True])
    [1.0, 0.0, None]
    """

    __name__ = "existence"
    default_tasks = ("existence",)
    required_columns = {"existence": ("exists",)}

    def reference(self, row: Row) -> bool | None:
        return _as_bool(row["exists"], self.__name__)

    def score(self, text: str, reference: bool, row: Row) -> float:
        return 1.0 if parse_yes_no(text) is reference else 0.0


class FormatReward(RewardFunction):
    """1.0 when the answer parses in the format its task expects, else 0.0.

    Formats: grounding: windows (``From s seconds to e seconds.``, ``{"query": [s, e]}``, ``s-e``, timestamp
    tokens) or a statement of absence; existence: yes/no; sed: at least one event (``{"label": [on, off]}`` lines)
    or an explicit empty answer; dac: at least one ``on-off, description`` line with a description, or an explicit
    empty answer; sta: a window (``starts at s seconds and ends at e seconds``); qa: a choice in the final line
    (a letter within the number of ``choices`` when that column is given, or a choice text). Range {0, 1}.

    Source: the answer formats of SpotSound §2.2, TimePro-RL §3.1 and TGSR §3.2 / App. B.1. Columns: ``task``;
    ``choices`` (optional, qa rows).

    >>> format_reward = FormatReward()
    >>> format_reward(["Yes.", "maybe", "1.2-3.4, a dog barks"], task=["existence", "existence", "dac"])
    [1.0, 0.0, 1.0]
    """

    __name__ = "format_reward"
    default_tasks = ("grounding", "existence", "sed", "dac", "sta", "qa")

    def reference(self, row: Row) -> str:
        return row.task

    def score(self, text: str, reference: str, row: Row) -> float:
        region = answer_region(text)
        task = row.task
        if task == "grounding":
            ok = parse_grounding(region) is not None
        elif task == "existence":
            ok = parse_yes_no(text) is not None
        elif task == "sta":
            ok = bool(parse_windows(region))
        elif task == "qa":
            ok = parse_choice(text, row.get("choices")) is not None
        else:
            events = parse_event_answer(region, None)
            ok = events is not None and (task == "sed" or all(event.label for event in events))
        return 1.0 if ok else 0.0
