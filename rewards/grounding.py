"""Temporal rewards: Eb-F1 and mIoU (TimePro-RL), existence (SpotSound negatives), and the answer-format reward.

Each reward grades a completion with its row's task grader (:mod:`rewards.tasks`: the shared parser, the shared
metrics of :mod:`rewards.temporal`) and returns one value of the grade; evaluation aggregates the same grades, so
training and evaluation agree by construction.

Predicted windows/events shorter than ``min_duration`` (default :data:`MIN_DURATION` = 0.1 s) get no credit; see
:mod:`rewards.matching` for the rule and the value. :func:`scored_window_iou`, :func:`scored_event_counts`,
:func:`scored_event_f1`, :func:`is_too_short` and :data:`MIN_DURATION` live there and are re-exported here.
"""

from __future__ import annotations

import math

from ._base import RewardConfigError, RewardFunction, Row
from .matching import MIN_DURATION, Matching, is_too_short, scored_event_counts, scored_event_f1, scored_window_iou
from .tasks import EVENT_TASKS, TASKS, WINDOW_TASKS, EventGrade
from .tasks import get as get_task

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
    default_tasks = WINDOW_TASKS + EVENT_TASKS
    required_columns = {task: get_task(task).columns for task in default_tasks}

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
        self.matching = Matching(
            self.t_collar, self.percentage_of_length, evaluate_onset, evaluate_offset, self.min_duration
        )

    def reference(self, row: Row) -> tuple | None:
        return get_task(row.task).reference(row)

    def grade(self, text: str, reference: tuple, row: Row) -> EventGrade:
        """The task's grade of ``text`` (:class:`rewards.tasks.EventGrade`) under this reward's settings."""
        return get_task(row.task).grade(reference, text, row, self.matching)

    def score(self, text: str, reference: tuple, row: Row) -> float:
        return self.grade(text, reference, row).f1


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
    default_tasks = WINDOW_TASKS + EVENT_TASKS
    required_columns = EventF1Reward.required_columns

    def __init__(
        self, *, min_duration: float = MIN_DURATION, name: str | None = None, tasks: tuple[str, ...] | None = None
    ):
        super().__init__(name=name, tasks=tasks)
        self.min_duration = check_min_duration(min_duration, self.__name__)
        self.matching = Matching(min_duration=self.min_duration)

    reference, grade = EventF1Reward.reference, EventF1Reward.grade

    def score(self, text: str, reference: tuple, row: Row) -> float:
        return self.grade(text, reference, row).iou


class ExistenceReward(RewardFunction):
    """Presence answer correctness on SpotSound's existence questions (§2.1, §3.2 negatives, §4.2).

    Formula: ``1.0 if parse_yes_no(answer) == present else 0.0`` (an undecidable answer scores 0.0), where
    ``present`` is ``exists``, or, when that is None, whether the row has ``windows`` (the rule of the SFT target
    and of evaluation: :func:`rewards.tasks.presence`). Range {0, 1}; the batch mean is SpotSound's existence
    accuracy. Rows whose task is not ``existence``, or with neither ``exists`` nor ``windows``, get None.

    Source: SpotSound §2.1 (B ∈ {yes, no}) and §4.2. Columns: ``task``, ``exists``, ``windows`` (optional).

    >>> existence = ExistenceReward()
    >>> existence(["Yes.", "No.", "Yes."], task=["existence", "existence", "sed"], exists=[True, True, True])
    [1.0, 0.0, None]
    """

    __name__ = "existence"
    default_tasks = ("existence",)
    required_columns = {"existence": get_task("existence").columns}

    def reference(self, row: Row) -> bool | None:
        return get_task("existence").reference(row)

    def score(self, text: str, reference: bool, row: Row) -> float:
        return 1.0 if get_task("existence").grade(reference, text, row).correct else 0.0


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
    default_tasks = TASKS

    def reference(self, row: Row) -> str:
        return row.task

    def score(self, text: str, reference: str, row: Row) -> float:
        task = get_task(row.task)
        return 1.0 if task.well_formed(task.parse(text, row)) else 0.0
