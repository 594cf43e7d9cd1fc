"""Temporal metrics: interval IoU, multi-window IoU, R1@theta, mIoU, two-stage F1, existence accuracy, Eb-F1.

Pure functions over plain Python numbers, shared by rewards and evaluation. Windows are ``(start, end)`` pairs in
seconds and are normalised as in :mod:`rewards.parsing` (non-finite windows dropped, negative ends clipped to 0,
reversed pairs swapped). Events are ``(onset, offset, label)`` tuples.

Formulas
--------
* ``interval_iou(a, b) = |a ∩ b| / |a ∪ b|`` for two intervals.
* ``window_iou(W, Ŵ) = |∪W ∩ ∪Ŵ| / |∪W ∪ ∪Ŵ|``: the IoU of the unions of two window sets, the per-sample
  IoU of SpotSound §4.1 when an answer has several windows. Both empty: 1.0 (nothing to find, nothing claimed);
  a zero-measure union otherwise: 0.0.
* ``recall_at(ious, θ) = (1/N) Σ 1[IoU_i ≥ θ]`` and ``mean_iou(ious) = (1/N) Σ IoU_i`` (SpotSound §4.1, R1@θ, mIoU).
* ``two_stage_f1 = 2TP / (2TP + FP + FN)`` (SpotSound §4.3): a negative query is TN when absence is detected and FP
  otherwise; a positive query is TP when presence is detected and IoU > 0.3, FN when presence is not detected, FP
  when presence is detected but IoU <= 0.3.
* ``existence_accuracy = (1/N) Σ 1[predicted_i == exists_i]`` (SpotSound §4.2); an unparsed answer (None) is wrong.
* ``event_f1``: the event-based F-measure of Mesaros et al. (2016), TimePro-RL's Eb-F1 (§2.2, §3.1, collar 0.2 s),
  equal to sed_eval 0.2.1 ``EventBasedMetrics(..., event_matching_type='optimal').overall_f_measure()`` (see its
  docstring for the exact conditions).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "event_f1",
    "event_true_positives",
    "existence_accuracy",
    "f_measure",
    "interval_iou",
    "mean_iou",
    "recall_at",
    "two_stage_f1",
    "window_iou",
]

# Inputs with at least this many (reference, estimate) pairs compute their hit matrix with numpy; smaller ones in
# plain Python, which is faster below about a thousand pairs (numpy's per-call overhead dominates there).
_NUMPY_MIN_PAIRS = 1024


# --- windows ----------------------------------------------------------------------------------------------------
def _clean(windows: Iterable[Sequence[float]]) -> list[tuple[float, float]]:
    cleaned = []
    for window in windows:
        start, end = float(window[0]), float(window[1])
        if not (math.isfinite(start) and math.isfinite(end)):
            continue
        start, end = max(start, 0.0), max(end, 0.0)
        cleaned.append((start, end) if start <= end else (end, start))
    return cleaned


def _merge(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, disjoint union of windows (touching windows merge)."""
    merged: list[list[float]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def _measure(merged: list[tuple[float, float]]) -> float:
    return math.fsum(end - start for start, end in merged)


def _intersection(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Measure of the intersection of two merged (sorted, disjoint) window lists, by a two-pointer sweep."""
    i = j = 0
    parts = []
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if high > low:
            parts.append(high - low)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return math.fsum(parts)


def window_iou(reference: Iterable[Sequence[float]], estimate: Iterable[Sequence[float]]) -> float:
    """IoU of the unions of two window sets, ``|∪W ∩ ∪Ŵ| / |∪W ∪ ∪Ŵ|`` in [0, 1] (SpotSound §4.1).

    >>> window_iou([(0, 2), (4, 6)], [(1, 2), (4, 5)])
    0.5
    >>> window_iou([], []), window_iou([(0, 1)], [])
    (1.0, 0.0)
    """
    ref, est = _clean(reference), _clean(estimate)
    if not ref and not est:
        return 1.0
    ref_union, est_union = _merge(ref), _merge(est)
    # the union is measured on the merged windows, never as |A| + |B| - |A ∩ B|, which can overflow to inf
    union = _measure(_merge(ref_union + est_union))
    if not union > 0.0:
        return 0.0
    return min(1.0, max(0.0, _intersection(ref_union, est_union) / union))


def interval_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two intervals ``(start, end)``, in [0, 1]; 0.0 when both have zero length.

    >>> interval_iou((0.0, 2.0), (1.0, 3.0))
    0.3333333333333333
    """
    return window_iou([a], [b])


def recall_at(ious: Sequence[float], theta: float) -> float:
    """R1@θ of SpotSound §4.1: the fraction of samples whose IoU is at least ``theta``.

    >>> recall_at([0.2, 0.5, 0.9], 0.5)
    0.6666666666666666
    """
    if not len(ious):
        raise ValueError("recall_at needs at least one IoU")
    return sum(1 for iou in ious if iou >= theta) / len(ious)


def mean_iou(ious: Sequence[float]) -> float:
    """mIoU of SpotSound §4.1: the mean of per-sample IoUs.

    >>> mean_iou([0.2, 0.4])
    0.30000000000000004
    """
    if not len(ious):
        raise ValueError("mean_iou needs at least one IoU")
    return math.fsum(ious) / len(ious)


def two_stage_f1(
    exists: Sequence[bool],
    predicted: Sequence[bool | None],
    ious: Sequence[float | None],
    threshold: float = 0.3,
) -> float:
    """Two-stage joint F1 of SpotSound §4.3, ``2TP / (2TP + FP + FN)``.

    ``exists[i]``: the query is positive; ``predicted[i]``: the model said present (None: no parsable answer, which
    counts as "absence not detected" on a negative and "presence not detected" on a positive); ``ious[i]``: the
    localisation IoU of a positive sample (None counts as 0). With no TP, FP or FN at all the score is 1.0.

    >>> two_stage_f1([True, True, False, False], [True, True, False, True], [0.8, 0.2, None, None])
    0.5
    """
    if not (len(exists) == len(predicted) == len(ious)):
        raise ValueError("two_stage_f1 needs exists, predicted and ious of equal length")
    tp = fp = fn = 0
    for positive, said_present, iou in zip(exists, predicted, ious):
        if not positive:
            fp += said_present is not False  # TN only when absence is detected
        elif said_present is not True:
            fn += 1
        elif iou is not None and iou > threshold:
            tp += 1
        else:
            fp += 1
    denominator = 2 * tp + fp + fn
    return 1.0 if denominator == 0 else 2 * tp / denominator


def existence_accuracy(exists: Sequence[bool], predicted: Sequence[bool | None]) -> float:
    """Presence accuracy of SpotSound §4.2; an unparsed answer (None) counts as wrong.

    >>> existence_accuracy([True, False, True], [True, False, None])
    0.6666666666666666
    """
    if len(exists) != len(predicted) or not len(exists):
        raise ValueError("existence_accuracy needs non-empty exists and predicted of equal length")
    return sum(1 for truth, said in zip(exists, predicted) if said is not None and bool(truth) == said) / len(exists)


# --- event-based F1 ---------------------------------------------------------------------------------------------
def _canonical_label(label: object) -> object:
    """Labels as dcase_util stores them: strings stripped, and '' or 'none' (any case) become None."""
    if isinstance(label, str):
        label = label.strip()
        if label == "" or label.lower() == "none":
            return None
    return label


def _adjacency_python(reference, estimate, t_collar, percentage_of_length, use_onset, use_offset):
    """Reference -> hitting estimates (small inputs: plain Python, estimates grouped by label)."""
    canonical: dict[object, object] = {}  # labels repeat: canonicalise each distinct one once

    def label_of(event):
        raw = event[2]
        if raw not in canonical:
            canonical[raw] = _canonical_label(raw)
        return canonical[raw]

    by_label: dict[object, list[tuple[int, float, float]]] = {}
    for j, e in enumerate(estimate):
        by_label.setdefault(label_of(e), []).append((j, float(e[0]), float(e[1])))
    adjacency = []
    for r in reference:
        r_on, r_off = float(r[0]), float(r[1])
        candidates = by_label.get(label_of(r), ())
        # sed_eval: onset hit |Δon| <= t_collar; offset hit |Δoff| <= max(t_collar, percentage_of_length * length),
        # where Python's max keeps t_collar unless the other value is greater (so NaN lengths give t_collar)
        scaled = percentage_of_length * (r_off - r_on)
        tolerance = scaled if scaled > t_collar else t_collar
        if use_onset and use_offset:
            row = [
                j for j, e_on, e_off in candidates if abs(r_on - e_on) <= t_collar and abs(r_off - e_off) <= tolerance
            ]
        elif use_onset:
            row = [j for j, e_on, _ in candidates if abs(r_on - e_on) <= t_collar]
        else:
            row = [j for j, _, e_off in candidates if abs(r_off - e_off) <= tolerance]
        adjacency.append(row)
    return adjacency


def _adjacency_numpy(reference, estimate, t_collar, percentage_of_length, use_onset, use_offset):
    """Adjacency of the smaller side (rows) to the larger one, from one vectorised hit matrix over all labels."""
    label_ids: dict[object, int] = {}

    def columns(events):
        times = np.array([(float(e[0]), float(e[1])) for e in events], dtype=np.float64).reshape(-1, 2)  # (N, 2)
        labels = np.array([label_ids.setdefault(_canonical_label(e[2]), len(label_ids)) for e in events])  # (N,)
        return times[:, 0], times[:, 1], labels

    ref_on, ref_off, ref_label = (column[:, None] for column in columns(reference))  # (R, 1)
    est_on, est_off, est_label = (column[None, :] for column in columns(estimate))  # (1, E)
    hits = ref_label == est_label  # (R, E)
    if use_onset:
        hits &= np.abs(ref_on - est_on) <= t_collar
    if use_offset:
        # np.fmax ignores NaN like Python's max(t_collar, nan) in sed_eval does
        tolerance = np.fmax(t_collar, percentage_of_length * (ref_off - ref_on))  # (R, 1)
        hits &= np.abs(ref_off - est_off) <= tolerance
    rows = hits if hits.shape[0] <= hits.shape[1] else hits.T  # (L, M), L <= M
    row_index, column_index = np.nonzero(rows)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(row_index, minlength=rows.shape[0]))]).tolist()
    flat = column_index.tolist()
    return [flat[offsets[i] : offsets[i + 1]] for i in range(rows.shape[0])], rows.shape[1]


def _max_matching(adjacency: list[list[int]], n_right: int) -> int:
    """Size of a maximum bipartite matching (Kuhn's augmenting paths, iterative, after a greedy start).

    Each left vertex keeps at most ``len(adjacency)`` neighbours: with L left vertices, a maximum matching never
    needs more, since at most L - 1 of a vertex's neighbours can be taken by the others. This bounds the work on
    answers that repeat one event thousands of times.
    """
    limit = len(adjacency)
    if n_right > limit:
        adjacency = [neighbours if len(neighbours) <= limit else neighbours[:limit] for neighbours in adjacency]
    match_right = [-1] * n_right
    size, unmatched = 0, []
    for u, neighbours in enumerate(adjacency):
        for v in neighbours:
            if match_right[v] < 0:
                match_right[v] = u
                size += 1
                break
        else:
            if neighbours:
                unmatched.append(u)
    # augmenting a path only re-pairs vertices already matched, so the greedy leftovers stay the roots to try
    for root in unmatched:
        seen = bytearray(n_right)
        stack_u, stack_i, path_v = [root], [0], []
        while stack_u:
            u, i = stack_u[-1], stack_i[-1]
            if i == len(adjacency[u]):
                stack_u.pop()
                stack_i.pop()
                if path_v:
                    path_v.pop()
                continue
            stack_i[-1] = i + 1
            v = adjacency[u][i]
            if seen[v]:
                continue
            seen[v] = 1
            path_v.append(v)
            if match_right[v] < 0:  # free vertex: flip the alternating path root -> ... -> v
                for left, right in zip(stack_u, path_v):
                    match_right[right] = left
                size += 1
                break
            stack_u.append(match_right[v])
            stack_i.append(0)
    return size


def event_f1(
    reference: Sequence[Sequence],
    estimate: Sequence[Sequence],
    *,
    t_collar: float = 0.2,
    percentage_of_length: float = 0.5,
    evaluate_onset: bool = True,
    evaluate_offset: bool = True,
) -> float:
    """Event-based F1 (Mesaros et al. 2016) of one clip; TimePro-RL's Eb-F1 main reward (§2.2, collar 0.2 s).

    An estimate hits a reference when the labels are equal, ``|onset_est - onset_ref| <= t_collar`` and
    ``|offset_est - offset_ref| <= max(t_collar, percentage_of_length * (offset_ref - onset_ref))`` (inclusive, no
    rounding, as sed_eval 0.2.1). Labels compare as dcase_util stores them (stripped; '' and 'none' are one label).
    TP is the size of a maximum one-to-one matching of hits; ``P = TP / N_est``, ``R = TP / N_ref``,
    ``F = 2PR / (P + R)`` (0 when ``P = R = 0``). This equals sed_eval's overall F-measure with
    ``event_matching_type='optimal'`` wherever that is defined; where sed_eval gives NaN, both lists empty
    gives 1.0 and exactly one empty gives 0.0. Result in [0, 1].

    >>> ref = [(1.0, 3.0, "dog"), (5.0, 6.0, "speech")]
    >>> event_f1(ref, [(1.1, 3.3, "dog"), (5.0, 6.0, "dog")])
    0.5
    >>> event_f1([], []), event_f1(ref, [])
    (1.0, 0.0)
    """
    true_positives = event_true_positives(  # also refuses evaluate_onset = evaluate_offset = False
        reference,
        estimate,
        t_collar=t_collar,
        percentage_of_length=percentage_of_length,
        evaluate_onset=evaluate_onset,
        evaluate_offset=evaluate_offset,
    )
    return f_measure(true_positives, len(reference), len(estimate))


def f_measure(tp: int, n_ref: int, n_est: int) -> float:
    """``F = 2PR / (P + R)`` from counts, ``P = TP / N_est``, ``R = TP / N_ref`` (0 when ``P = R = 0``), computed as
    sed_eval computes it; both counts 0 gives 1.0 and exactly one 0 gives 0.0 (where sed_eval gives NaN).

    The one F of the package: :func:`event_f1` of a clip, and evaluation's corpus F of counts summed over clips.

    >>> f_measure(1, 2, 1), f_measure(0, 0, 0), f_measure(0, 3, 0)
    (0.6666666666666666, 1.0, 0.0)
    """
    if n_ref == 0 or n_est == 0:
        return 1.0 if n_ref == n_est else 0.0
    precision, recall = tp / n_est, tp / n_ref
    if precision == 0 and recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def event_true_positives(
    reference: Sequence[Sequence],
    estimate: Sequence[Sequence],
    *,
    t_collar: float = 0.2,
    percentage_of_length: float = 0.5,
    evaluate_onset: bool = True,
    evaluate_offset: bool = True,
) -> int:
    """TP of :func:`event_f1`: the size of a maximum one-to-one matching of hits (same hit rule).

    >>> event_true_positives([(1.0, 3.0, "dog"), (5.0, 6.0, "speech")], [(1.1, 3.3, "dog"), (5.0, 6.0, "dog")])
    1
    """
    if not (evaluate_onset or evaluate_offset):
        raise ValueError("event_f1: evaluate_onset and evaluate_offset cannot both be False")
    n_ref, n_est = len(reference), len(estimate)
    if n_ref == 0 or n_est == 0:
        return 0
    if n_ref * n_est < _NUMPY_MIN_PAIRS:
        adjacency = _adjacency_python(
            reference, estimate, t_collar, percentage_of_length, evaluate_onset, evaluate_offset
        )
        n_right = n_est
    else:
        adjacency, n_right = _adjacency_numpy(
            reference, estimate, t_collar, percentage_of_length, evaluate_onset, evaluate_offset
        )
    return _max_matching(adjacency, n_right)  # labels never match across, so one graph holds them all
