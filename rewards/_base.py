"""What every reward shares: TRL's call signature, completion text, columns, per-task dispatch, totality guard.

TRL 1.16 calls a reward as ``fn(prompts=..., completions=..., completion_ids=..., **dataset_columns,
trainer_state=..., log_extra=..., log_metric=...)`` and expects one float or None per completion (None: the reward
does not apply to that sample). Completions are plain strings or conversations (lists of ``{"role", "content"}``
messages whose content is a string or a list of ``{"type": "text", "text": ...}`` parts).

Errors split in two. Configuration and data errors (a missing column, a malformed reference) raise
:class:`RewardConfigError` naming the reward and the column. Model output never makes a reward raise: scoring a
completion is guarded, and a reward returns a finite float in its documented range or None.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

from .parsing import Event, _valid_duration, cap_text
from .tasks import TASKS, as_flag

__all__ = ["RewardConfigError", "RewardFunction", "Row", "completion_text"]

logger = logging.getLogger(__name__)


class RewardConfigError(ValueError):
    """A reward is misconfigured or its dataset lacks a column it reads."""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return ""


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or the assistant messages of a conversation joined by newlines; over
    :data:`rewards.parsing.MAX_TEXT_CHARS` characters, its head and tail (:func:`rewards.parsing.cap_text`).

    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "Yes."}]}])
    'Yes.'
    """
    if isinstance(completion, str):
        return cap_text(completion)
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, Sequence):
        messages = [message for message in completion if isinstance(message, dict)]
        replies = [message for message in messages if message.get("role") == "assistant"] or messages
        return cap_text("\n".join(_content_text(message.get("content")) for message in replies))
    return ""


class Row:
    """The dataset columns of one sample, read by name; a missing column is a :class:`RewardConfigError`."""

    __slots__ = ("_columns", "_index", "_reward", "task")

    def __init__(self, reward: str, columns: dict[str, Any], index: int, task: str):
        self._reward, self._columns, self._index, self.task = reward, columns, index, task

    @classmethod
    def of(cls, row: Mapping[str, Any], reader: str = "evaluation") -> Row:
        """One row given as a mapping (a manifest row, its ``task`` included); ``reader`` names it in errors."""
        return cls(reader, {column: [value] for column, value in row.items()}, 0, row["task"])

    def __getitem__(self, column: str) -> Any:
        if column not in self._columns:
            raise RewardConfigError(
                f"reward {self._reward!r} needs dataset column {column!r} for task {self.task!r}; "
                f"columns given: {sorted(self._columns)}"
            )
        return self._columns[column][self._index]

    def get(self, column: str, default: Any = None) -> Any:
        return self._columns[column][self._index] if column in self._columns else default

    def duration(self) -> float | None:
        return _valid_duration(self.get("duration"))

    def windows(self, column: str = "windows") -> list[tuple[float, float]] | None:
        """Reference windows ``[[s, e], ...]``; None when the row has no value."""
        value = self[column]
        if value is None:
            return None
        try:
            return [(float(window[0]), float(window[1])) for window in value]
        except (TypeError, ValueError, IndexError, KeyError) as error:
            raise RewardConfigError(
                f"reward {self._reward!r}: column {column!r} must hold [[start, end], ...], got {value!r}"
            ) from error

    def flag(self, column: str = "exists") -> bool | None:
        """A boolean (:func:`rewards.tasks.as_flag`: bools, numpy bools, 0/1, "true"/"false", ...); None stays None."""
        value = self[column]
        try:
            return as_flag(value)
        except ValueError as error:
            raise RewardConfigError(
                f"reward {self._reward!r}: column {column!r} must hold booleans, got {value!r}"
            ) from error

    def events(self, column: str = "events") -> list[Event] | None:
        """Reference events from ``[{"onset", "offset", "label"}, ...]`` (or ``(onset, offset, label)``)."""
        value = self[column]
        if value is None:
            return None
        try:
            return [
                Event(float(e["onset"]), float(e["offset"]), str(e.get("label") or ""))
                if isinstance(e, dict)
                else Event(float(e[0]), float(e[1]), str(e[2]))
                for e in value
            ]
        except (TypeError, ValueError, IndexError, KeyError) as error:
            raise RewardConfigError(
                f"reward {self._reward!r}: column {column!r} must hold [{{'onset', 'offset', 'label'}}, ...], "
                f"got {value!r}"
            ) from error


class RewardFunction:
    """Base of the configurable rewards: picklable callables with a fixed ``__name__`` (TRL's metric key).

    Subclasses set ``__name__``, ``default_tasks``, ``required_columns`` (task -> columns) and the range
    ``[low, high]``, and implement ``reference(row)`` (may raise :class:`RewardConfigError`; None: not
    applicable) and ``score(text, reference, row)`` (model output only; guarded).
    """

    __name__ = "reward"
    default_tasks: ClassVar[tuple[str, ...]] = ()
    required_columns: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType({})
    low, high = 0.0, 1.0

    def __init_subclass__(cls, **kwargs: Any):
        # class attributes are shared by every instance: keep the ones a subclass sets immutable
        super().__init_subclass__(**kwargs)
        cls.default_tasks = tuple(cls.default_tasks)
        cls.required_columns = MappingProxyType(
            {task: tuple(columns) for task, columns in cls.required_columns.items()}
        )

    def __init__(self, *, name: str | None = None, tasks: Sequence[str] | None = None):
        if name is not None:
            self.__name__ = name
        self.tasks = tuple(self.default_tasks if tasks is None else tasks)
        unknown = set(self.tasks) - set(TASKS)
        if unknown:
            raise RewardConfigError(f"reward {self.__name__!r}: unknown tasks {sorted(unknown)}; valid: {TASKS}")
        self._failures = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r}, tasks={self.tasks!r})"

    def reference(self, row: Row) -> Any:
        raise NotImplementedError

    def score(self, text: str, reference: Any, row: Row) -> float | None:
        raise NotImplementedError

    def _check_columns(self, columns: dict[str, Any], tasks: set[str], n: int) -> None:
        for task in sorted(tasks & set(self.tasks)):
            for column in self.required_columns.get(task, ()):
                if column not in columns:
                    raise RewardConfigError(
                        f"reward {self.__name__!r} needs dataset column {column!r} for task {task!r}; "
                        f"columns given: {sorted(columns)}"
                    )
                if not isinstance(columns[column], Sequence) or len(columns[column]) != n:
                    raise RewardConfigError(
                        f"reward {self.__name__!r}: column {column!r} must hold one value per completion "
                        f"({n}), got {type(columns[column]).__name__}"
                    )

    def implied_task(self, columns: dict[str, Any]) -> str:
        """The task of every row of a dataset without a ``task`` column: the first of ``self.tasks`` whose columns
        are all there (``miou`` on a dataset with ``windows`` scores grounding; ``timestamp_compaction``, which reads
        no column, scores completions alone). Build the reward with ``tasks=[...]`` to choose another."""
        for task in self.tasks:
            if all(column in columns for column in self.required_columns.get(task, ())):
                return task
        needs = {task: list(self.required_columns.get(task, ())) for task in self.tasks}
        raise RewardConfigError(
            f"reward {self.__name__!r}: the dataset has no 'task' column and lacks the columns of every task the "
            f"reward scores ({needs}); columns given: {sorted(columns)}"
        )

    def _texts_and_tasks(self, completions: Sequence[Any], columns: dict[str, Any]) -> tuple[list[str], list[Any]]:
        """Completion texts and row tasks, after checking that the columns the batch's tasks need are there."""
        texts = [completion_text(completion) for completion in completions]
        if "task" not in columns:
            task = self.implied_task(columns)
            self._check_columns(columns, {task}, len(texts))
            return texts, [task] * len(texts)
        tasks = list(columns["task"])
        if len(tasks) != len(texts):
            raise RewardConfigError(
                f"reward {self.__name__!r}: column 'task' has {len(tasks)} values for {len(texts)} completions"
            )
        self._check_columns(columns, set(tasks), len(texts))
        return texts, tasks

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        texts, tasks = self._texts_and_tasks(completions, columns)
        rewards: list[float | None] = []
        for index, (text, task) in enumerate(zip(texts, tasks)):
            if task not in self.tasks:
                rewards.append(None)
                continue
            row = Row(self.__name__, columns, index, task)
            reference = self.reference(row)  # data errors raise here, outside the guard
            rewards.append(None if reference is None else self._guarded_score(text, reference, row))
        return rewards

    def _guarded_score(self, text: str, reference: Any, row: Row) -> float | None:
        try:
            value = self.score(text, reference, row)
        except RewardConfigError:
            raise
        except (ArithmeticError, IndexError, KeyError, RecursionError, TypeError, ValueError):
            # Unreachable by design (property tests check it); if a parser bug slips through, training goes on.
            self._failures += 1
            if self._failures <= 3 or self._failures % 1000 == 0:
                logger.exception(
                    "reward %r failed on a completion (%d so far); scoring it %s",
                    self.__name__,
                    self._failures,
                    self.low,
                )
            return self.low
        if value is None:
            return None
        value = float(value)
        if not math.isfinite(value):
            logger.error("reward %r produced %r; scoring it %s", self.__name__, value, self.low)
            return self.low
        return min(self.high, max(self.low, value))
