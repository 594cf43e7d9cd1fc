"""Temporal rewards: Eb-F1 and mIoU (TimePro-RL), existence (SpotSound negatives), and the answer-format reward.

Each reward reads the answer region of a completion (:func:`rewards.parsing.answer_region`), parses it with the
shared parser and scores it with the shared metrics of :mod:`rewards.temporal`, so training and evaluation agree.
"""

from __future__ import annotations

import math
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
from .temporal import event_f1, window_iou

__all__ = ["EventF1Reward", "ExistenceReward", "FormatReward", "MIoUReward"]

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

    Source: TimePro-RL §2.2 (eq. 2, r_main = Eb-F1) and §3.1; Mesaros et al. 2016. Columns: ``task``; ``windows``
    (grounding, sta); ``events`` (sed, dac); ``duration`` (optional: predictions are clipped to it).

    >>> eb_f1 = EventF1Reward()
    >>> eb_f1(["From 1.1 seconds to 3.1 seconds.", "From 5 seconds to 6 seconds."],
    ...       task=["grounding", "grounding"], windows=[[[1.0, 3.0]], [[1.0, 3.0]]])
    [1.0, 0.0]
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
        name: str | None = None,
        tasks: tuple[str, ...] | None = None,
    ):
        super().__init__(name=name, tasks=tasks)
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
        return event_f1(
            reference,
            _relabel(predicted, row.task),
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

    Source: TimePro-RL §3.2 (r_aux = mIoU for AG and SED); SpotSound §4.1. Columns: ``task``; ``windows``
    (grounding, sta); ``events`` (sed, dac); ``duration`` (optional).

    >>> miou = MIoUReward()
    >>> miou(['{"query": [2.0, 4.0]}'], task=["grounding"], windows=[[[1.0, 3.0]]])
    [0.3333333333333333]
    """

    __name__ = "miou"
    default_tasks = _WINDOW_TASKS + _EVENT_TASKS
    required_columns = EventF1Reward.required_columns

    reference = EventF1Reward.reference

    def score(self, text: str, reference: list[Event], row: Row) -> float:
        predicted = _predicted(row.task, answer_region(text), row.duration())
        if predicted is None:
            return 0.0
        predicted = _relabel(predicted, row.task)
        labels = {event.label for event in reference} | {event.label for event in predicted}
        if len(labels) <= 1:
            return window_iou([e[:2] for e in reference], [e[:2] for e in predicted])
        ious = [
            window_iou([e[:2] for e in reference if e.label == label], [e[:2] for e in predicted if e.label == label])
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
