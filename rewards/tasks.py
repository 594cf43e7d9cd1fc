"""The tasks, each with one grader: how a row's reference is read, how an answer is parsed, and how it is graded.

A :class:`Task` reads the reference of a row (:meth:`Task.reference`), parses a model answer
(:meth:`Task.parse`: None when nothing in the task's format is there) and grades the answer against the reference
(:meth:`Task.grade`). The grade holds the counts that both sides compute their numbers from: the reward classes
of :mod:`rewards.grounding`, :mod:`rewards.reasoning` and :mod:`rewards.text` take one value of one grade per
completion, and evaluation (``rl_audio.evaluate``) aggregates the same grades over a corpus, so the number trained
on is the number reported.

==============  ==========================  ====================================  =============================
task            reference (columns)         answer                                grade
==============  ==========================  ====================================  =============================
``grounding``   windows (``windows``)       windows, ``[]`` when absence stated   :class:`EventGrade`
``sta``         one window (``windows``)    windows (at least one)                :class:`EventGrade`
``sed``         events (``events``)         events, ``[]`` for "no events"        :class:`EventGrade`
``dac``         events (``events``)         events, ``[]`` for "no events"        :class:`EventGrade`
``existence``   present? (``exists``)       yes / no                              :class:`AnswerGrade`
``qa``          answer (``answer``)         choice index                          :class:`AnswerGrade`
==============  ==========================  ====================================  =============================

Rows are read through the interface of :class:`rewards._base.Row` (``row[column]``, ``row.get``,
``row.windows()``, ``row.events()``, ``row.flag()``, ``row.duration()``), which raises
:class:`rewards.RewardConfigError` on malformed data; ``Row.of(mapping)`` wraps one manifest row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np

from .matching import Counts, Matching
from .parsing import (
    Event,
    answer_region,
    final_line,
    normalise_text,
    parse_choice,
    parse_event_answer,
    parse_grounding,
    parse_windows,
    parse_yes_no,
)

__all__ = [
    "EVENT_TASKS",
    "MATCHING",
    "TASKS",
    "WINDOW_TASKS",
    "AnswerGrade",
    "EventGrade",
    "Task",
    "as_flag",
    "get",
    "grade",
    "is_positive",
    "presence",
]

TASKS = ("grounding", "existence", "sed", "dac", "sta", "qa")
WINDOW_TASKS = ("grounding", "sta")
EVENT_TASKS = ("sed", "dac")
MATCHING = Matching()
"""The default matching settings (0.2 s collar, 0.5 of the length, 0.1 s shortest credited prediction)."""

_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})


def as_flag(value: Any) -> bool | None:
    """A boolean column value (``exists``): bools, numpy bools and integers, and the strings true/false, yes/no,
    1/0; None stays None; anything else is a ``ValueError``.

    >>> as_flag("false"), as_flag(1), as_flag(None)
    (False, True, None)
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, (int, float, np.bool_, np.integer)):
        return bool(value)
    raise ValueError(f"expected a boolean, got {value!r}")


def presence(exists: bool | None, windows: Sequence | None) -> bool | None:
    """Whether the queried event is in the clip: ``exists`` when set, else whether the row has reference windows
    (the rule of the SFT target ``rl_audio.data.templates.existence_target``); None when neither is known.

    >>> presence(False, None), presence(None, [[1, 2]]), presence(None, []), presence(None, None)
    (False, True, False, None)
    """
    if exists is not None:
        return bool(exists)
    return None if windows is None else bool(windows)


def is_positive(row: Mapping) -> bool:
    """A manifest row (a dict) asks about an event that is present: :func:`presence` of its columns."""
    return bool(presence(as_flag(row.get("exists")), row.get("windows")))


def _compared(task: str, items: Sequence) -> tuple[Event, ...]:
    """Events as the grader compares them: windows (grounding, sta) share one label, so only timing decides; SED
    labels compare lower-cased without punctuation; DAC descriptions are free text, so DAC compares timing only."""
    if task == "sed":
        return tuple(Event(float(e[0]), float(e[1]), normalise_text(str(e[2]))) for e in items)
    return tuple(Event(float(e[0]), float(e[1]), "") for e in items)


@dataclass(frozen=True)
class AnswerGrade:
    """An existence or QA answer: ``reference`` (present? / ``(answer, choices)``), ``answer`` (what the model
    said: True/False, or the chosen index; None when undecidable) and whether it is ``correct``."""

    task: str
    reference: Any
    answer: Any
    correct: bool

    @property
    def parsed(self) -> bool:
        return self.answer is not None


@dataclass(frozen=True)
class EventGrade:
    """A windows or events answer: ``reference`` and ``answer`` as read (windows ``(start, end)`` or
    :class:`~rewards.parsing.Event`; ``answer`` None when nothing in the task's format was found), compared under
    ``matching``. Values are computed on first use."""

    task: str
    reference: tuple
    answer: tuple | None
    matching: Matching = MATCHING

    @property
    def parsed(self) -> bool:
        return self.answer is not None

    @property
    def said_present(self) -> bool | None:
        """The answer gave a window/event (True) or stated absence (False); None when unparseable."""
        return None if self.answer is None else bool(self.answer)

    @cached_property
    def compared(self) -> tuple[tuple[Event, ...], tuple[Event, ...]]:
        """``(reference, answer)`` as compared (labels as in :func:`_compared`); an unparseable answer: ``()``."""
        return _compared(self.task, self.reference), _compared(self.task, self.answer or ())

    @cached_property
    def counts(self) -> Counts:
        """``(TP, N_ref, N_est)``: one-to-one collar matching, short predictions unmatched (:mod:`rewards.matching`)."""
        return self.matching.event_counts(*self.compared)

    @property
    def f1(self) -> float:
        """Eb-F1 of the clip: the F of :attr:`counts`; 0.0 for an unparseable answer."""
        return 0.0 if self.answer is None else self.counts.f1

    def per_label(self) -> dict[str, Counts]:
        """:attr:`counts` per compared label (sorted), over the labels of reference and answer."""
        reference, answer = self.compared
        labels = sorted({e.label for e in reference} | {e.label for e in answer})
        return {
            label: self.matching.event_counts(
                [e for e in reference if e.label == label], [e for e in answer if e.label == label]
            )
            for label in labels
        }

    @cached_property
    def iou(self) -> float:
        """IoU of the unions of reference and predicted windows; with several compared labels (SED), the mean over
        labels of the per-label IoU. 0.0 for an unparseable answer."""
        if self.answer is None:
            return 0.0
        reference, answer = self.compared
        labels = sorted({e.label for e in reference} | {e.label for e in answer})
        if len(labels) <= 1:
            return self.matching.window_iou([e[:2] for e in reference], [e[:2] for e in answer])
        ious = [
            self.matching.window_iou(
                [e[:2] for e in reference if e.label == label], [e[:2] for e in answer if e.label == label]
            )
            for label in labels
        ]
        return math.fsum(ious) / len(ious)


class Task:
    """One task's grader. Subclasses set ``name`` and ``columns`` (what :meth:`reference` reads)."""

    name: str = ""
    columns: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"rewards.tasks.get({self.name!r})"

    def reference(self, row) -> Any:
        """The row's reference; None when the row has none (the task's rewards then do not apply)."""
        raise NotImplementedError

    def parse(self, text: str, row) -> Any:
        """What ``text`` answers; None when nothing in the task's format is there."""
        raise NotImplementedError

    def well_formed(self, answer: Any) -> bool:
        """The parsed answer has the task's format (the ``format_reward``)."""
        return answer is not None

    def grade(self, reference: Any, text: str, row, matching: Matching = MATCHING) -> EventGrade | AnswerGrade:
        """Grade ``text`` against ``reference`` (from :meth:`reference`; not None)."""
        raise NotImplementedError


class _WindowTask(Task):
    columns = ("windows",)

    def reference(self, row) -> tuple | None:
        windows = row.windows("windows")
        return None if windows is None else tuple(windows)

    def parse(self, text: str, row) -> tuple | None:
        windows = parse_grounding(answer_region(text), row.duration())
        return None if windows is None else tuple(windows)

    def grade(self, reference: tuple, text: str, row, matching: Matching = MATCHING) -> EventGrade:
        return EventGrade(self.name, reference, self.parse(text, row), matching)


class _Grounding(_WindowTask):
    """Windows; a statement of absence is the answer ``[]`` (SpotSound §2.2)."""

    name = "grounding"


class _Sta(_WindowTask):
    """TGSR STA answers a window ("starts at s seconds and ends at e seconds"); absence is no STA answer."""

    name = "sta"

    def parse(self, text: str, row) -> tuple | None:
        # Unparseable without a window, as evaluation always read STA answers. The eb_f1 and miou rewards used to
        # read a statement of absence as the answer []: that differs only on a row whose reference has no window
        # (never an STA manifest row: those have exactly one), where such an answer scored 1.0 and now scores 0.0.
        return tuple(parse_windows(answer_region(text), row.duration())) or None


class _EventTask(Task):
    columns = ("events",)

    def reference(self, row) -> tuple | None:
        events = row.events("events")
        return None if events is None else tuple(events)

    def parse(self, text: str, row) -> tuple | None:
        events = parse_event_answer(answer_region(text), row.duration())
        return None if events is None else tuple(events)

    def grade(self, reference: tuple, text: str, row, matching: Matching = MATCHING) -> EventGrade:
        return EventGrade(self.name, reference, self.parse(text, row), matching)


class _Sed(_EventTask):
    """``{"label": [onset, offset]}`` lines (TimePro-RL §3.1); labels compared normalised."""

    name = "sed"


class _Dac(_EventTask):
    """``onset-offset, description`` lines (TimePro-RL §3.1); Eb-F1 on timing only, METEOR on the descriptions."""

    name = "dac"

    def well_formed(self, answer: tuple | None) -> bool:
        # the format asks for a description on every line; grading still scores the timing of bare windows
        return answer is not None and all(event.label for event in answer)


class _Existence(Task):
    """SpotSound §2.1: B ∈ {yes, no}."""

    name = "existence"
    columns = ("exists",)

    def reference(self, row) -> bool | None:
        # exists when set, else whether windows are given (a row with neither: no reference)
        return presence(row.flag("exists"), row.get("windows"))

    def parse(self, text: str, row) -> bool | None:
        return parse_yes_no(text)

    def grade(self, reference: bool, text: str, row, matching: Matching = MATCHING) -> AnswerGrade:
        said = self.parse(text, row)
        return AnswerGrade(self.name, reference, said, said is not None and said == reference)


def _answer_index(answer: str, choices: Sequence[str] | None) -> int | None:
    """Index of the correct choice: by its text, or by a letter answer such as ``b`` or ``(b)``."""
    norm = normalise_text(answer)
    if choices:
        for index, choice in enumerate(choices):
            if normalise_text(str(choice)) == norm:
                return index
        if len(norm) == 1 and "a" <= norm <= "z" and ord(norm) - ord("a") < len(choices):
            return ord(norm) - ord("a")
    return None


def _strip_letter(line: str) -> str:
    """``(b) a cat`` -> ``a cat``: the choice text of a final answer line."""
    norm = normalise_text(line)
    head, _, rest = norm.partition(" ")
    return rest if len(head) == 1 and rest and line.lstrip().startswith(("(", head)) else norm


class _Qa(Task):
    """Multiple choice (TGSR eq. 1): the choice read from the final line must be the correct one."""

    name = "qa"
    columns = ("answer",)

    def reference(self, row) -> tuple[str, tuple[str, ...] | None] | None:
        answer = row["answer"]
        if answer is None:
            return None
        choices = row.get("choices")
        return str(answer), None if choices is None else tuple(str(choice) for choice in choices)

    def parse(self, text: str, row) -> int | None:
        return parse_choice(text, row.get("choices"))

    def grade(self, reference: tuple, text: str, row, matching: Matching = MATCHING) -> AnswerGrade:
        answer, choices = reference
        said = parse_choice(text, choices)
        target = _answer_index(answer, choices)
        if target is not None:
            correct = said == target
        else:  # no choice list to index (or the answer is none of them): the final line must say the answer
            line = final_line(answer_region(text))
            correct = bool(line) and _strip_letter(line) == normalise_text(answer)
        return AnswerGrade(self.name, reference, said, correct)


_BY_NAME: Mapping[str, Task] = MappingProxyType(
    {task.name: task for task in (_Grounding(), _Existence(), _Sed(), _Dac(), _Sta(), _Qa())}
)


def get(name: str) -> Task:
    """The grader of task ``name``; a ``ValueError`` naming the valid tasks otherwise.

    >>> get("sed").columns
    ('events',)
    """
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}") from None


def grade(row, text: str, matching: Matching = MATCHING) -> EventGrade | AnswerGrade | None:
    """Grade ``text`` against the reference of ``row`` (a :class:`rewards._base.Row`); None when it has none.

    >>> from rewards._base import Row
    >>> row = Row.of({"task": "grounding", "windows": [[1.0, 3.0]], "duration": 10.0})
    >>> g = grade(row, "From 1.1 seconds to 3.3 seconds.")
    >>> g.counts, g.f1, round(g.iou, 3)
    (Counts(tp=1, n_ref=1, n_est=1), 1.0, 0.826)
    """
    task = get(row.task)
    reference = task.reference(row)
    return None if reference is None else task.grade(reference, text, row, matching)
