"""TGSR rewards for timestamp-grounded reasoning: answer correctness (eq. 1) and timestamp compaction (eq. 2).

TGSR ("Listen First, Then Answer", §3.2) trains with ``R = R_answer + R_tg`` (eq. 3); in TRL the sum is the
default combination of the two reward functions (``reward_weights`` = [1, 1]).
"""

from __future__ import annotations

from ._base import RewardConfigError, RewardFunction, Row
from .grounding import check_min_duration
from .matching import MIN_DURATION, is_too_short
from .parsing import parse_windows
from .tasks import get as get_task

__all__ = ["AnswerCorrectness", "TimestampCompaction", "count_grounded_units"]


class AnswerCorrectness(RewardFunction):
    """Multiple-choice answer correctness, TGSR eq. 1: ``R_answer = 1.0 if pred matches GT else 0.0``.

    The prediction is read from the final non-empty line of the answer (TGSR §3.2 says "from the final line";
    skipping empty lines is ours): a letter such as ``(b)`` (TGSR's released reward matches ``\\(([a-d])\\)``; the
    paper names no pattern), else the choice text it contains (:func:`rewards.parsing.parse_choice`; our
    addition). It is correct when it picks the choice equal to ``answer`` (the correct
    choice text, compared lower-cased without punctuation; a letter answer also works). Without a ``choices`` value
    the final line, less a leading option letter, must equal ``answer``. Range {0, 1}.

    Source: TGSR §3.2 eq. 1; MMAU answers are choice texts. Columns: ``task`` (``qa`` rows), ``answer``,
    ``choices`` (optional).

    >>> answer_correctness = AnswerCorrectness()
    >>> answer_correctness(["Reasoning...\\n(b) a cat", "(a) a dog"], task=["qa", "qa"],
    ...                    answer=["a cat", "a cat"], choices=[["a dog", "a cat"], ["a dog", "a cat"]])
    [1.0, 0.0]
    """

    __name__ = "answer_correctness"
    default_tasks = ("qa",)
    required_columns = {"qa": get_task("qa").columns}

    def reference(self, row: Row) -> tuple[str, tuple[str, ...] | None] | None:
        return get_task("qa").reference(row)

    def score(self, text: str, reference: tuple[str, tuple[str, ...] | None], row: Row) -> float:
        return 1.0 if get_task("qa").grade(reference, text, row).correct else 0.0


def count_grounded_units(text: str, min_duration: float = 0.0) -> int:
    """Number of distinct timestamp-grounded units: distinct ``(start, end)`` intervals the text references.

    TGSR's "Regions Explored" (App. C.4) counts unique intervals; its released reward counted regex hits, so
    "from 1.2 to 3.4 seconds" counted twice. Here it is one unit. With ``min_duration`` > 0 only intervals at least
    that long count (the default 0.0 counts every interval, zero-length ones included).

    >>> count_grounded_units("From 1.2 to 3.4 seconds a man speaks; from 1.2 to 3.4 seconds again; then 5-6s.")
    2
    >>> count_grounded_units("[1.0s - 1.0s] and [2.0s - 3.0s]", min_duration=0.1)
    1
    """
    return sum(1 for start, end in set(parse_windows(text)) if not is_too_short(start, end, min_duration))


class TimestampCompaction(RewardFunction):
    """Timestamp reasoning compaction, TGSR eq. 2 (``R_tg``).

    With ``k`` = :func:`count_grounded_units` of the whole completion::

        R_tg = 0                                                  if k = 0
             = C_max                                              if k <= k_ref
             = C_min                                              if k >= k_max
             = C_max - (k - k_ref) (C_max - C_min) / (k_max - k_ref)   otherwise

    Defaults ``k_ref = 1, C_max = 0.5, C_min = 0.1`` (TGSR §3.2) and ``k_max = 5`` (our choice: eq. 2 uses
    ``k_max`` but the paper gives no value). Range ``[min(0, C_min), C_max]``.

    ``min_duration`` (seconds, default :data:`rewards.grounding.MIN_DURATION` = 0.1; our setting, not TGSR's): an
    interval shorter than this grounds nothing, so a completion whose intervals are all that short scores 0 (as
    ``k = 0``); otherwise ``k`` counts every distinct interval, short ones included, so they never raise the
    reward (they cost like any other unit). ``min_duration=0.0`` gives TGSR's eq. 2 exactly.

    Source: TGSR §3.2 eq. 2 and App. C.4 (distinct intervals). Columns: ``task`` (``qa`` rows by default).

    >>> compaction = TimestampCompaction()
    >>> compaction(["no timestamps", "[0.0s-1.0s] hi", "0-1, 1-2, 2-3 said"], task=["qa", "qa", "qa"])
    [0.0, 0.5, 0.3]
    >>> literal = TimestampCompaction(min_duration=0.0)
    >>> compaction(["[1.3s-1.3s] hi"], task=["qa"]), literal(["[1.3s-1.3s] hi"], task=["qa"])
    ([0.0], [0.5])
    """

    __name__ = "timestamp_compaction"
    default_tasks = ("qa",)

    def __init__(
        self,
        *,
        k_ref: int = 1,
        c_max: float = 0.5,
        c_min: float = 0.1,
        k_max: int = 5,
        min_duration: float = MIN_DURATION,
        name: str | None = None,
        tasks: tuple[str, ...] | None = None,
    ):
        super().__init__(name=name, tasks=tasks)
        self.min_duration = check_min_duration(min_duration, self.__name__)
        if not 0 <= k_ref < k_max:
            raise RewardConfigError(f"reward {self.__name__!r}: need 0 <= k_ref < k_max, got {k_ref}, {k_max}")
        if not c_min <= c_max:
            raise RewardConfigError(f"reward {self.__name__!r}: need c_min <= c_max, got {c_min}, {c_max}")
        self.k_ref, self.c_max, self.c_min, self.k_max = k_ref, float(c_max), float(c_min), k_max
        self.low, self.high = min(0.0, self.c_min), self.c_max

    def reference(self, row: Row) -> str:
        return row.task

    def value(self, k: int) -> float:
        """``R_tg`` for ``k`` units (TGSR eq. 2)."""
        if k == 0:
            return 0.0
        if k <= self.k_ref:
            return self.c_max
        if k >= self.k_max:
            return self.c_min
        return self.c_max - (k - self.k_ref) * (self.c_max - self.c_min) / (self.k_max - self.k_ref)

    def score(self, text: str, reference: str, row: Row) -> float:
        units = set(parse_windows(text))
        if not any(not is_too_short(start, end, self.min_duration) for start, end in units):
            return 0.0  # no unit at least min_duration long: nothing grounded (k = 0 when min_duration is 0)
        return self.value(len(units))
