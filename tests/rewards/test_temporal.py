"""Temporal metrics: hand-written cases with the papers' formulas, and parity with sed_eval 0.2.1."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rewards.temporal as temporal
from rewards.temporal import (
    event_f1,
    existence_accuracy,
    interval_iou,
    mean_iou,
    recall_at,
    two_stage_f1,
    window_iou,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # dcase_util imports pkg_resources
    import sed_eval

# modest budgets keep the rewards suite fast on two cores
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sed_eval_f1(reference, estimate, **kwargs):
    """The oracle: sed_eval's overall event-based F-measure with optimal matching (NaN where undefined)."""
    labels = sorted({str(e[2]) for e in list(reference) + list(estimate)})
    metric = sed_eval.sound_event.EventBasedMetrics(event_label_list=labels, event_matching_type="optimal", **kwargs)
    as_dicts = [
        [{"event_onset": on, "event_offset": off, "event_label": label} for on, off, label in events]
        for events in (reference, estimate)
    ]
    metric.evaluate(*as_dicts)
    return metric.overall_f_measure()["f_measure"]


@pytest.fixture(params=["python", "numpy"])
def hit_path(request, monkeypatch):
    """Run a test once with the pure-Python hit matrix and once with the numpy one."""
    monkeypatch.setattr(temporal, "_NUMPY_MIN_PAIRS", 10**9 if request.param == "python" else 0)
    return request.param


# --- IoU family -------------------------------------------------------------------------------------------------
def test_interval_iou_is_intersection_over_union():
    # |[0,2] ∩ [1,3]| / |[0,2] ∪ [1,3]| = 1 / 3
    assert interval_iou((0, 2), (1, 3)) == pytest.approx(1 / 3)
    assert interval_iou((0, 1), (2, 3)) == 0.0
    assert interval_iou((1, 2), (1, 2)) == 1.0
    assert interval_iou((2, 1), (1, 2)) == 1.0  # reversed pairs are swapped


def test_window_iou_uses_unions_not_pairs():
    # union(A) = [0,2] ∪ [4,6] (4 s); union(B) = [1,5] (4 s); A∩B = [1,2] ∪ [4,5] = 2 s; A∪B = [0,6] = 6 s
    assert window_iou([(0, 2), (4, 6)], [(1, 5)]) == pytest.approx(2 / 6)
    # overlapping windows inside one answer are not counted twice
    assert window_iou([(0, 2)], [(0, 1), (0.5, 2), (0, 2)]) == 1.0


def test_window_iou_empty_cases():
    assert window_iou([], []) == 1.0
    assert window_iou([(0, 1)], []) == 0.0
    assert window_iou([], [(0, 1)]) == 0.0
    assert window_iou([(1, 1)], [(1, 1)]) == 0.0  # zero measure


def test_window_iou_never_overflows():
    value = window_iou([(0, 1e308), (1.2e308, 1.7e308)], [(0, 1.7e308)])
    assert math.isfinite(value) and 0.0 <= value <= 1.0


def test_window_iou_drops_nan_windows():
    assert window_iou([(0, 1), (float("nan"), 2)], [(0, 1)]) == 1.0


def test_recall_at_theta_is_fraction_with_iou_at_least_theta():
    # SpotSound §4.1: R1@θ = (1/N) Σ 1[IoU >= θ]; the boundary counts
    assert recall_at([0.3, 0.5, 0.49, 0.9], 0.5) == 0.5
    assert recall_at([0.3], 0.3) == 1.0


def test_mean_iou_is_the_mean():
    assert mean_iou([0.0, 0.5, 1.0]) == 0.5
    with pytest.raises(ValueError):
        mean_iou([])


def test_two_stage_f1_follows_spotsound_4_3():
    # negatives: TN if absence detected, else FP; positives: TP if present and IoU > 0.3, FN if not detected,
    # FP if IoU <= 0.3. F1 = 2TP / (2TP + FP + FN)
    exists = [False, False, True, True, True, True]
    predicted = [False, True, True, True, False, None]
    ious = [None, None, 0.9, 0.3, None, None]  # IoU 0.3 exactly is not > 0.3: FP
    tp, fp, fn = 1, 2, 2
    assert two_stage_f1(exists, predicted, ious) == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_two_stage_f1_unparsed_negative_is_a_false_positive():
    assert two_stage_f1([False, True], [None, True], [None, 1.0]) == pytest.approx(2 / 3)


def test_two_stage_f1_all_true_negatives_is_perfect():
    assert two_stage_f1([False, False], [False, False], [None, None]) == 1.0


def test_existence_accuracy_counts_unparsed_as_wrong():
    assert existence_accuracy([True, False, True, False], [True, False, None, True]) == 0.5


# --- event-based F1 ---------------------------------------------------------------------------------------------
def test_event_f1_hand_case(hit_path):
    reference = [(1.0, 3.0, "dog"), (5.0, 6.0, "speech")]
    estimate = [(1.1, 3.3, "dog"), (5.0, 6.0, "dog")]  # one hit; the second has the wrong label
    # P = 1/2, R = 1/2, F = 2PR / (P + R) = 0.5
    assert event_f1(reference, estimate) == 0.5


def test_event_f1_collar_boundaries_are_inclusive(hit_path):
    reference = [(1.0, 2.0, "a")]
    assert event_f1(reference, [(1.25, 2.0, "a")], t_collar=0.25) == 1.0  # |Δonset| = t_collar hits
    assert event_f1(reference, [(1.5, 2.0, "a")], t_collar=0.25) == 0.0
    # offset tolerance max(t_collar, 0.5 * length) = max(0.2, 2.0) = 2.0 for a 4 s event
    assert event_f1([(0.0, 4.0, "a")], [(0.0, 6.0, "a")]) == 1.0
    assert event_f1([(0.0, 4.0, "a")], [(0.0, 6.5, "a")]) == 0.0


def test_event_f1_needs_an_augmenting_path(hit_path):
    # greedy would give the shared estimate to the first reference and leave the second unmatched
    reference = [(1.0, 2.0, "a"), (1.3, 2.0, "a")]
    estimate = [(1.15, 2.0, "a"), (0.85, 2.0, "a")]
    assert event_f1(reference, estimate) == 1.0
    assert sed_eval_f1(reference, estimate) == 1.0


def test_event_f1_is_one_to_one(hit_path):
    reference = [(1.0, 2.0, "a")]
    assert event_f1(reference, [(1.0, 2.0, "a")] * 3) == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))


def test_event_f1_where_sed_eval_is_nan():
    assert math.isnan(sed_eval_f1([], []))
    assert event_f1([], []) == 1.0
    assert math.isnan(sed_eval_f1([(0.0, 1.0, "a")], []))
    assert event_f1([(0.0, 1.0, "a")], []) == 0.0
    assert math.isnan(sed_eval_f1([], [(0.0, 1.0, "a")]))
    assert event_f1([], [(0.0, 1.0, "a")]) == 0.0


def test_event_f1_onset_only_and_offset_only(hit_path):
    reference = [(1.0, 2.0, "a")]
    estimate = [(1.0, 9.0, "a")]
    assert event_f1(reference, estimate, evaluate_offset=False) == 1.0
    assert event_f1(reference, estimate, evaluate_onset=False) == 0.0
    with pytest.raises(ValueError):
        event_f1(reference, estimate, evaluate_onset=False, evaluate_offset=False)


def test_event_f1_labels_compare_as_dcase_util_stores_them(hit_path):
    reference = [(1.0, 2.0, " dog "), (3.0, 4.0, "None"), (5.0, 6.0, "")]
    estimate = [(1.0, 2.0, "dog"), (3.0, 4.0, ""), (5.0, 6.0, "none")]
    assert event_f1(reference, estimate) == sed_eval_f1(reference, estimate) == 1.0


def random_events(rng, count, labels, decimals):
    onsets = np.round(rng.uniform(0, 10, count), decimals)
    lengths = np.round(rng.uniform(0, 3, count), decimals)
    return [(float(on), float(on + length), str(rng.choice(labels))) for on, length in zip(onsets, lengths)]


def jitter(rng, events, scale):
    return [
        (on + float(rng.normal(0, scale)), off + float(rng.normal(0, scale * 2)), label) for on, off, label in events
    ]


@pytest.mark.parametrize("seed", range(4))
def test_event_f1_equals_sed_eval_on_random_inputs(seed, hit_path):
    rng = np.random.default_rng(seed)
    compared = 0
    for _ in range(120):
        labels = ["dog", "speech", "alarm"][: rng.integers(1, 4)]
        reference = random_events(rng, int(rng.integers(0, 8)), labels, int(rng.integers(0, 3)))
        estimate = random_events(rng, int(rng.integers(0, 6)), labels, int(rng.integers(0, 3)))
        estimate += jitter(rng, reference, 0.15)  # near misses around the collars
        if rng.random() < 0.3:
            estimate += reference  # exact duplicates, overlapping events
        rng.shuffle(estimate)
        kwargs = {
            "t_collar": float(rng.choice([0.05, 0.2, 0.5, 1.0])),
            "percentage_of_length": float(rng.choice([0.0, 0.2, 0.5, 1.0])),
        }
        expected = sed_eval_f1(reference, estimate, **kwargs)
        if math.isnan(expected):
            continue
        compared += 1
        assert event_f1(reference, estimate, **kwargs) == expected, (reference, estimate, kwargs)
    assert compared > 90


def test_event_f1_equals_sed_eval_with_onset_or_offset_only(hit_path):
    rng = np.random.default_rng(7)
    for _ in range(60):
        reference = random_events(rng, int(rng.integers(1, 6)), ["a", "b"], 1)
        estimate = jitter(rng, reference, 0.3) + random_events(rng, 3, ["a", "b"], 1)
        for flags in ({"evaluate_onset": False}, {"evaluate_offset": False}):
            assert event_f1(reference, estimate, **flags) == sed_eval_f1(reference, estimate, **flags)


def test_event_f1_equals_sed_eval_on_larger_inputs():
    rng = np.random.default_rng(11)
    reference = random_events(rng, 25, ["a", "b"], 1)
    estimate = jitter(rng, reference, 0.1) + random_events(rng, 20, ["a", "b"], 1) + reference[:10]
    assert event_f1(reference, estimate) == sed_eval_f1(reference, estimate)


def test_event_f1_nan_times_never_hit_as_in_sed_eval(hit_path):
    reference = [(1.0, 2.0, "a"), (float("nan"), 3.0, "a")]
    estimate = [(1.0, float("nan"), "a"), (1.0, 2.0, "a"), (float("nan"), 3.0, "a")]
    assert event_f1(reference, estimate) == sed_eval_f1(reference, estimate)


event_strategy = st.tuples(
    st.floats(0, 10, allow_nan=False).map(lambda x: round(x, 1)),
    st.floats(0, 3, allow_nan=False).map(lambda x: round(x, 1)),
    st.sampled_from(["a", "b"]),
).map(lambda e: (e[0], e[0] + e[1], e[2]))


@SETTINGS
@given(
    reference=st.lists(event_strategy, min_size=1, max_size=6),
    estimate=st.lists(event_strategy, min_size=1, max_size=8),
    t_collar=st.sampled_from([0.1, 0.2, 0.5]),
    percentage_of_length=st.sampled_from([0.0, 0.2, 0.5]),
)
def test_event_f1_equals_sed_eval_property(reference, estimate, t_collar, percentage_of_length):
    kwargs = {"t_collar": t_collar, "percentage_of_length": percentage_of_length}
    assert event_f1(reference, estimate, **kwargs) == sed_eval_f1(reference, estimate, **kwargs)


def test_event_f1_thousands_of_duplicate_estimates_is_fast():
    import time

    reference = [(float(i), float(i) + 1.0, "a") for i in range(30)]
    estimate = reference * 1000  # 30 000 estimates, 900 000 hit pairs
    start = time.perf_counter()
    value = event_f1(reference, estimate)
    assert time.perf_counter() - start < 2.0
    # TP = 30: P = 30 / 30000, R = 1
    assert value == pytest.approx(2 * (30 / 30000) / (30 / 30000 + 1))


def brute_force_matching(adjacency, n_right):
    """Maximum matching size by trying every assignment (small graphs only)."""

    def best(u, used):
        if u == len(adjacency):
            return 0
        options = [best(u + 1, used)]
        options += [1 + best(u + 1, used | {v}) for v in adjacency[u] if v not in used]
        return max(options)

    return best(0, frozenset())


@pytest.mark.parametrize("seed", range(3))
def test_max_matching_is_maximum_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    for _ in range(150):
        n_left, n_right = int(rng.integers(1, 7)), int(rng.integers(1, 12))
        density = rng.uniform(0.1, 0.8)
        adjacency = [[v for v in range(n_right) if rng.random() < density] for _ in range(n_left)]
        for row in adjacency:
            rng.shuffle(row)
        assert temporal._max_matching(adjacency, n_right) == brute_force_matching(adjacency, n_right)
