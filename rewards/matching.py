"""When a prediction earns credit: the collar settings of event matching and the rule for degenerate predictions.

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
exactly 0.1 s long and counts.

:class:`Matching` holds the settings; :func:`scored_window_iou` and :func:`scored_event_counts` apply the rule.
The task graders of :mod:`rewards.tasks` call them, for the rewards and for evaluation alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .temporal import event_true_positives, f_measure, window_iou

__all__ = [
    "MIN_DURATION",
    "Counts",
    "Matching",
    "is_too_short",
    "scored_event_counts",
    "scored_event_f1",
    "scored_window_iou",
]

MIN_DURATION = 0.1
"""Default shortest predicted window/event that can earn credit, seconds (our choice; see the module docstring)."""

# float slack of the length comparison: parsed decimals such as [1.1, 1.2] are 0.1 s long up to rounding
_LENGTH_EPS = 1e-9


class Counts(NamedTuple):
    """``(TP, N_ref, N_est)`` of event matching; sums over clips give the corpus (micro) counts.

    >>> Counts.total([Counts(1, 2, 1), Counts(0, 1, 1)]), Counts(1, 2, 1).f1
    (Counts(tp=1, n_ref=3, n_est=2), 0.6666666666666666)
    """

    tp: int
    n_ref: int
    n_est: int

    @property
    def f1(self) -> float:
        """:func:`rewards.temporal.f_measure` of the counts."""
        return f_measure(self.tp, self.n_ref, self.n_est)

    @classmethod
    def total(cls, counts: Iterable[Sequence[int]]) -> Counts:
        tp = n_ref = n_est = 0
        for one in counts:
            tp, n_ref, n_est = tp + one[0], n_ref + one[1], n_est + one[2]
        return cls(tp, n_ref, n_est)


@dataclass(frozen=True)
class Matching:
    """How predictions are matched with references (defaults: TimePro-RL's 0.2 s collar, sed_eval's 0.5).

    ``t_collar``: onset tolerance, seconds; ``percentage_of_length``: the offset tolerance is
    ``max(t_collar, percentage_of_length * reference length)``; ``evaluate_onset`` / ``evaluate_offset``: which
    boundaries must hit (:func:`rewards.temporal.event_f1`); ``min_duration``: shorter predictions earn no credit.
    """

    t_collar: float = 0.2
    percentage_of_length: float = 0.5
    evaluate_onset: bool = True
    evaluate_offset: bool = True
    min_duration: float = MIN_DURATION

    def event_counts(self, reference: Sequence[Sequence], predicted: Sequence[Sequence]) -> Counts:
        """:func:`scored_event_counts` under these settings."""
        return scored_event_counts(
            reference,
            predicted,
            min_duration=self.min_duration,
            t_collar=self.t_collar,
            percentage_of_length=self.percentage_of_length,
            evaluate_onset=self.evaluate_onset,
            evaluate_offset=self.evaluate_offset,
        )

    def window_iou(self, reference: Sequence[Sequence[float]], predicted: Sequence[Sequence[float]]) -> float:
        """:func:`scored_window_iou` under these settings."""
        return scored_window_iou(reference, predicted, min_duration=self.min_duration)


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
) -> Counts:
    """``(TP, N_ref, N_est)`` of one clip under :func:`rewards.temporal.event_f1`'s matching, short events missing.

    Predicted events shorter than ``min_duration`` are matched against nothing but stay in ``N_est`` (false
    positives); ``TP`` is :func:`rewards.temporal.event_true_positives` on the kept events.

    >>> scored_event_counts([(1.2, 1.5, "")], [(1.3, 1.3, ""), (1.25, 1.5, "")])
    Counts(tp=1, n_ref=1, n_est=2)
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
    return Counts(tp, len(reference), len(predicted))


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
    """Eb-F1 of one clip with predicted events shorter than ``min_duration`` counted as false positives: the F of
    :func:`scored_event_counts`.

    Equal to :func:`rewards.temporal.event_f1` (the same float) when no predicted event is short, in particular
    always with ``min_duration=0.0``.

    >>> scored_event_f1([(1.2, 1.5, "")], [(1.3, 1.3, "")]), scored_event_f1([(1.2, 1.5, "")], [(1.3, 1.3, "")],
    ...                                                                       min_duration=0.0)
    (0.0, 1.0)
    """
    matching = Matching(t_collar, percentage_of_length, evaluate_onset, evaluate_offset, min_duration)
    return matching.event_counts(reference, predicted).f1
