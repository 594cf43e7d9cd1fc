"""Metrics on hand-computed cases, one block per task, with sed_eval and the rewards as oracles."""

from __future__ import annotations

import math

import pytest
from eval_helpers import config_factory, make_row

from rewards.grounding import EventF1Reward
from rewards.matching import Matching
from rewards.temporal import two_stage_f1
from rewards.text import MeteorReward
from rl_audio.evaluate.metrics import compute_metrics, two_stage_outcome
from rl_audio.evaluate.scoring import parse_prediction


@pytest.fixture
def cfg(tmp_path):
    return config_factory(tmp_path)


def _metrics(rows, answers, cfg, **kwargs):
    return compute_metrics(rows, dict(zip([r["id"] for r in rows], answers)), cfg, **kwargs)


def test_grounding_recall_miou_negatives_and_unparseable(cfg):
    # n1, n2: grounding rows about absent events, a form no builder here writes but a user's manifest may hold
    rows = [
        make_row("p1", "grounding", windows=[[2, 4]]),
        make_row("p2", "grounding", windows=[[0, 2]]),
        make_row("p3", "grounding", windows=[[5, 6]]),
        make_row("p4", "grounding", windows=[[1, 3]]),
        make_row("n1", "grounding", windows=[], exists=False),
        make_row("n2", "grounding", windows=[], exists=False),
    ]
    answers = [
        "From 2 seconds to 4 seconds.",  # IoU 1
        "From 1 seconds to 3 seconds.",  # IoU 1/3
        "I cannot tell.",  # unparseable: IoU 0
        "From 1.5 seconds to 3.0 seconds.",  # IoU 0.75
        "The sound is not present in the audio.",  # rejected
        "From 1 seconds to 2 seconds.",  # hallucinated window
    ]
    m = _metrics(rows, answers, cfg())
    g = m["grounding"]
    assert (g["n"], g["n_positive"], g["n_negative"]) == (6, 4, 2)
    assert g["R1@0.3"] == 0.75 and g["R1@0.5"] == 0.5 and g["R1@0.7"] == 0.5 and g["R1@0.9"] == 0.25
    assert g["mIoU"] == pytest.approx((1 + 1 / 3 + 0 + 0.75) / 4)
    assert g["negatives_rejected"] == 0.5
    # grounding answer alone under SpotSound §4.3 rules: TP p1 p2 p4, FN p3, TN n1, FP n2
    assert g["joint_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["unparseable"] == {"grounding": 1}


def test_multi_window_iou_is_iou_of_unions(cfg):
    rows = [make_row("p", "grounding", windows=[[0, 2], [4, 6]])]
    m = _metrics(rows, ["From 1 seconds to 2 seconds. From 4 seconds to 5 seconds."], cfg())
    assert m["grounding"]["mIoU"] == pytest.approx(0.5)


def test_existence_accuracy_on_positives_and_negatives(cfg):
    rows = [
        make_row("p1", "existence", exists=True),
        make_row("p2", "existence", exists=True),
        make_row("p3", "existence", exists=True),
        make_row("n1", "existence", exists=False),
        make_row("n2", "existence", exists=False),
    ]
    m = _metrics(rows, ["Yes.", "No.", "hmm", "No.", "Yes, it is."], cfg())
    e = m["existence"]
    assert e["accuracy"] == pytest.approx(2 / 5)
    assert e["accuracy_positive"] == pytest.approx(1 / 3) and e["n_positive"] == 3
    assert e["accuracy_negative"] == pytest.approx(1 / 2) and e["n_negative"] == 2
    assert m["unparseable"] == {"existence": 1}


@pytest.mark.parametrize(
    "positive, said, iou, expected",
    [
        (True, True, 0.31, "tp"),
        (True, True, 0.3, "fp"),  # IoU must exceed 0.3
        (True, True, None, "fp"),
        (True, False, 0.9, "fn"),
        (True, None, 0.9, "fn"),
        (False, False, None, "tn"),
        (False, True, None, "fp"),
        (False, None, None, "fp"),  # absence not detected
    ],
)
def test_two_stage_confusion_rules(positive, said, iou, expected):
    assert two_stage_outcome(positive, said, iou, 0.3) == expected


def _pairs(spec, *, negative_grounding=False):
    """Rows and answers: per clip an existence row, and a grounding row for a positive (for a negative only with
    ``negative_grounding``, the form of older manifests)."""
    rows, answers = [], []
    for clip, positive, said, where in spec:
        common = {"audio": f"/x/{clip}.wav", "query": f"sound {clip}", "exists": positive}
        windows = [[2.0, 4.0]] if positive else []
        if positive or negative_grounding:
            rows.append(make_row(f"{clip}-g", "grounding", windows=windows, **common))
            answers.append(where)
        rows.append(make_row(f"{clip}-e", "existence", windows=windows, **common))
        answers.append(said)
    return rows, answers


TWO_STAGE_SPEC = [  # (clip, positive, existence answer, grounding answer)
    ("c1", True, "Yes.", "From 2 seconds to 3 seconds."),  # IoU 0.5 -> TP
    ("c2", True, "Yes.", "From 2 seconds to 2.4 seconds."),  # IoU 0.2 -> FP
    ("c3", True, "No.", "From 2 seconds to 4 seconds."),  # FN even with a perfect window
    ("c4", False, "No.", "From 1 seconds to 2 seconds."),  # TN: only the existence answer counts
    ("c5", False, "Yes.", "The sound is not present in the audio."),  # FP
    ("c6", False, "???", "The sound is not present in the audio."),  # FP
]


@pytest.mark.parametrize("negative_grounding", [False, True])
def test_two_stage_f1_pairs_existence_with_grounding(cfg, negative_grounding):
    """SpotSound §4.3 on six clips: TP, FP (low IoU), FN, TN, FP (said present), FP (unparseable on a negative).
    Negatives need no grounding row; one from an older manifest changes nothing."""
    rows, answers = _pairs(TWO_STAGE_SPEC, negative_grounding=negative_grounding)
    rows.append(make_row("lonely-e", "existence", exists=True, audio="/x/other.wav"))
    answers.append("Yes.")
    m = _metrics(rows, answers, cfg())
    t = m["two_stage"]
    assert (t["tp"], t["fp"], t["fn"], t["tn"]) == (1, 3, 1, 1)
    assert t["pairs"] == 6 and t["unpaired_existence"] == 1
    assert t["f1"] == pytest.approx(2 * 1 / (2 * 1 + 3 + 1))
    # the shared grader agrees with the confusion counts
    assert two_stage_f1(
        [True, True, True, False, False, False],
        [True, True, False, False, True, None],
        [0.5, 0.2, 1.0, None, None, None],
    ) == pytest.approx(t["f1"])
    assert m["cascaded"]["f1"] == t["f1"]


CASCADE_SPEC = [  # (clip, positive, presence answer, grounding answer); reference window [2, 4]
    ("p1", True, "Yes.", "From 2 seconds to 4 seconds."),  # IoU 1 -> cascade 1, TP
    ("p2", True, "Yes.", "From 2 seconds to 3 seconds."),  # IoU 1/2 -> 1/2, TP
    ("p3", True, "No.", "From 2 seconds to 4 seconds."),  # IoU 1, but never grounded -> 0, FN
    ("p4", True, "yes, it is", "From 3 seconds to 5 seconds."),  # IoU 1/3 -> 1/3, TP (> 0.3)
    ("p5", True, "maybe", "From 2 seconds to 4 seconds."),  # undecided: not grounded -> 0, FN
    ("n1", False, "No.", None),  # TN
    ("n2", False, "Yes.", None),  # false alarm, FP
    ("n3", False, "hmm", None),  # undecided: no false alarm, but wrong and FP (§4.3 "otherwise")
    ("n4", False, "No, it is not.", None),  # TN
]


def test_cascaded_presence_then_grounding(cfg):
    """SpotSound's inference (§2.1, App. C.1): ground only after a "yes"; numbers computed by hand."""
    rows, answers = _pairs(CASCADE_SPEC)
    rows += [  # a positive with no grounding row (left out), a grounding row with no existence row (grounding only)
        make_row("lonely-e", "existence", exists=True, audio="/x/other.wav"),
        make_row("lonely-g", "grounding", windows=[[2.0, 4.0]], audio="/x/other2.wav"),
    ]
    answers += ["Yes.", "From 2 seconds to 4 seconds."]
    m = _metrics(rows, answers, cfg())
    c = m["cascaded"]
    assert (c["pairs"], c["n_positive"], c["n_negative"], c["unpaired_existence"]) == (9, 5, 4, 1)
    assert c["mIoU"] == pytest.approx((1 + 1 / 2 + 0 + 1 / 3 + 0) / 5)  # 11/30
    assert (c["R1@0.3"], c["R1@0.5"], c["R1@0.7"], c["R1@0.9"]) == (3 / 5, 2 / 5, 1 / 5, 1 / 5)
    assert c["accuracy_positive"] == 3 / 5
    assert c["false_alarm_rate"] == 1 / 4 and c["accuracy_negative"] == 2 / 4
    assert c["accuracy"] == pytest.approx(5 / 9) and c["n_undecided"] == 2
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (3, 2, 2, 2)
    assert c["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 2)) == m["two_stage"]["f1"]
    # the independent grounding block scores every grounding answer, whatever the presence answer said
    g = m["grounding"]
    assert (g["n"], g["n_negative"]) == (6, 0) and "negatives_rejected" not in g
    assert g["mIoU"] == pytest.approx((1 + 1 / 2 + 1 + 1 / 3 + 1 + 1) / 6)  # 29/36
    # existence over all presence rows, the unpaired one included
    assert m["existence"]["accuracy_positive"] == pytest.approx(4 / 6)


def test_no_cascade_without_grounding_answers(cfg):
    rows = [make_row("p", "existence", exists=True), make_row("n", "existence", exists=False, query="rain")]
    m = _metrics(rows, ["Yes.", "No."], cfg())
    assert "cascaded" not in m and "two_stage" not in m and m["existence"]["accuracy"] == 1.0


def _sed_eval_f(reference_by_file, estimate_by_file, pol, class_wise=False):
    sed_eval = pytest.importorskip("sed_eval")
    dcase_util = pytest.importorskip("dcase_util")
    labels = sorted({e[2] for events in reference_by_file.values() for e in events})
    metrics = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=labels, t_collar=0.2, percentage_of_length=pol, event_matching_type="optimal"
    )
    for name in reference_by_file:

        def container(events, name=name):
            return dcase_util.containers.MetaDataContainer(
                [{"filename": name, "onset": on, "offset": off, "event_label": lab} for on, off, lab in events]
            )

        metrics.evaluate(container(reference_by_file[name]), container(estimate_by_file[name]))
    if class_wise:
        return metrics.results_class_wise_average_metrics()["f_measure"]["f_measure"]
    return metrics.results_overall_metrics()["f_measure"]["f_measure"]


SED_REFERENCE = {
    "a": [(1.0, 3.0, "dog"), (4.0, 6.0, "speech")],
    "b": [(0.0, 1.0, "cat")],
    "c": [],
}
SED_ANSWERS = {
    "a": '{"Dog": [1.1, 3.6]}\n{"speech": [4.5, 6.0]}',  # dog offset off by 0.6; speech onset off by 0.5
    "b": "No sound events are present in the audio.",
    "c": '{"dog": [2.0, 3.0]}',
}


@pytest.mark.parametrize("pol, dog_hit", [(0.5, True), (0.2, False)])
def test_sed_event_f1_matches_sed_eval(cfg, pol, dog_hit):
    rows = [
        make_row(name, "sed", events=[{"onset": a, "offset": b, "label": lab} for a, b, lab in events])
        for name, events in SED_REFERENCE.items()
    ]
    m = _metrics(rows, list(SED_ANSWERS.values()), cfg(sed_percentage_of_length=pol))
    s = m["sed"]
    assert (s["tp"], s["n_ref"], s["n_est"]) == (int(dog_hit), 3, 3)
    assert s["eb_f1"] == pytest.approx(2 * int(dog_hit) / 6)
    estimates = {"a": [(1.1, 3.6, "dog"), (4.5, 6.0, "speech")], "b": [], "c": [(2.0, 3.0, "dog")]}
    assert s["eb_f1"] == pytest.approx(_sed_eval_f(SED_REFERENCE, estimates, pol))
    # per-clip mean equals the eb_f1 reward's mean: what GRPO trained on
    reward = EventF1Reward(percentage_of_length=pol)
    per_clip = reward(
        list(SED_ANSWERS.values()), task=["sed"] * 3, events=[r["events"] for r in rows], duration=[10.0] * 3
    )
    assert s["eb_f1_clip_mean"] == pytest.approx(sum(per_clip) / 3)
    # macro over reference classes: dog 2TP/(1+2), speech 0, cat 0 (never predicted: counted as 0)
    assert s["per_class"] == pytest.approx({"dog": 2 * int(dog_hit) / 3, "speech": 0.0, "cat": 0.0})
    assert s["eb_f1_macro"] == pytest.approx(2 * int(dog_hit) / 9)


def test_sed_macro_equals_sed_eval_class_wise_when_every_class_is_predicted(cfg):
    reference = {"a": [(1.0, 3.0, "dog"), (4.0, 6.0, "speech")], "b": [(0.0, 1.0, "dog")]}
    answers = {"a": '{"dog": [1.0, 3.0]}\n{"speech": [8.0, 9.0]}', "b": '{"dog": [0.0, 1.0]}\n{"speech": [2, 3]}'}
    rows = [
        make_row(n, "sed", events=[{"onset": a, "offset": b, "label": c} for a, b, c in e])
        for n, e in reference.items()
    ]
    m = _metrics(rows, list(answers.values()), cfg())
    estimates = {"a": [(1.0, 3.0, "dog"), (8.0, 9.0, "speech")], "b": [(0.0, 1.0, "dog"), (2.0, 3.0, "speech")]}
    assert m["sed"]["eb_f1_macro"] == pytest.approx(_sed_eval_f(reference, estimates, 0.5, class_wise=True))
    assert m["sed"]["eb_f1"] == pytest.approx(_sed_eval_f(reference, estimates, 0.5))


def test_event_counts_are_the_matching_of_the_grader():
    ref = [(0.0, 1.0, "a"), (2.0, 3.0, "a"), (4.0, 5.0, "b")]
    est = [(0.05, 1.0, "a"), (2.1, 3.1, "a"), (4.0, 5.0, "a"), (7.0, 8.0, "b")]
    matching = Matching(t_collar=0.2, percentage_of_length=0.5)
    assert matching.event_counts(ref, est) == (2, 3, 4)
    assert matching.event_counts([], est) == (0, 0, 4)


def test_dense_captioning_meteor_and_timing_only_f1(cfg):
    events = [{"onset": 1.0, "offset": 2.0, "label": "a dog barks"}, {"onset": 5.0, "offset": 7.0, "label": "rain"}]
    rows = [make_row("d1", "dac", events=events), make_row("d2", "dac", events=events)]
    answers = ["1.05-2.10, a cat meows\n5.0-7.0, heavy rain falls", "nothing useful"]
    m = _metrics(rows, answers, cfg())
    d = m["dac"]
    # timing only: both events of d1 hit although the first description is wrong; d2 is unparseable
    assert (d["tp"], d["n_ref"], d["n_est"]) == (2, 4, 2)
    assert d["eb_f1"] == pytest.approx(2 * 2 / 6)
    assert d["eb_f1_clip_mean"] == pytest.approx(0.5)
    expected = MeteorReward()(answers, task=["dac", "dac"], events=[events, events], duration=[10.0, 10.0])
    assert d["meteor"] == pytest.approx(sum(expected) / 2)
    assert 0 < d["meteor"] < 1
    assert m["unparseable"] == {"dac": 1}


def test_qa_accuracy_overall_and_by_meta(cfg):
    choices = ["a dog", "a cat", "a bird", "a cow"]
    rows = [
        make_row("q1", "qa", choices=choices, answer="a cat", meta={"domain": "sound", "category": "animals"}),
        make_row("q2", "qa", choices=choices, answer="a dog", meta={"domain": "sound", "category": "animals"}),
        make_row("q3", "qa", choices=choices, answer="a bird", meta={"domain": "music"}),
        make_row("q4", "qa", choices=choices, answer="a cow"),
    ]
    answers = ["Reasoning...\n(b) a cat", "(c)", "The answer is a bird", "I do not know"]
    m = _metrics(rows, answers, cfg())
    q = m["qa"]
    assert q["accuracy"] == pytest.approx(2 / 4)
    assert q["by"]["domain"] == {"music": {"n": 1, "accuracy": 1.0}, "sound": {"n": 2, "accuracy": 0.5}}
    assert q["by"]["category"] == {"animals": {"n": 2, "accuracy": 0.5}}
    assert m["unparseable"] == {"qa": 1}


def test_sta_and_behaviour_regions_explored(cfg):
    rows = [
        make_row("s1", "sta", windows=[[1.0, 2.0]], query="hello there"),
        make_row("s2", "sta", windows=[[3.0, 5.0]], query="general kenobi"),
        make_row("q1", "qa", choices=["yes", "no"], answer="yes"),
        make_row("q2", "qa", choices=["yes", "no"], answer="no"),
    ]
    answers = [
        "The segment hello there starts at 1.00 seconds and ends at 2.00 seconds.",
        "The segment starts at 4.00 seconds and ends at 5.00 seconds.",  # IoU 0.5
        "[0.0s - 1.0s]: a man says yes. [2.0s - 3.0s]: silence. From 0 to 1 seconds again.\n(a) yes",
        "(b) no",
    ]
    extra = {"consistency": {"q1": 1.0, "q2": 0.0}}
    m = _metrics(rows, answers, cfg(), extra=extra)
    assert m["sta"]["mIoU"] == pytest.approx(0.75)
    assert m["sta"]["R1@0.5"] == 1.0 and m["sta"]["R1@0.7"] == 0.5
    b = m["behaviour"]
    assert b["n"] == 2 and b["regions_explored"] == pytest.approx((2 + 0) / 2)
    assert b["consistency"] == 0.5 and b["n_consistency"] == 2


def test_empty_output_is_unparseable_and_a_miss(cfg):
    rows = [make_row("p", "grounding", windows=[[1, 2]]), make_row("e", "existence", exists=False)]
    m = _metrics(rows, ["", "   "], cfg())
    assert m["unparseable"] == {"existence": 1, "grounding": 1}
    assert m["grounding"]["mIoU"] == 0.0 and m["existence"]["accuracy"] == 0.0
    assert parse_prediction(rows[0], "") == {"ok": False, "windows": None}


def test_per_manifest_breakdown(cfg):
    rows = [make_row("a", "grounding", windows=[[0, 1]]), make_row("b", "grounding", windows=[[0, 1]])]
    m = _metrics(rows, ["From 0 to 1 seconds.", "nope"], cfg(), manifest_of={"a": "m1", "b": "m2"})
    assert m["grounding"]["mIoU"] == 0.5
    assert m["per_manifest"]["m1"]["grounding"]["mIoU"] == 1.0
    assert m["per_manifest"]["m2"]["grounding"]["mIoU"] == 0.0
    assert all(math.isfinite(v) for v in m["grounding"].values() if isinstance(v, float))


def test_min_duration_setting_reaches_event_f1(cfg):
    # '{"a dog barking": [1.3, 1.3]}' for the event [1.2, 1.5]: with the 0.2 s collar a zero-length event matches it
    # under the paper-literal setting (min_duration 0) and matches nothing by default (0.1 s).
    event = {"onset": 1.2, "offset": 1.5, "label": "a dog barking"}
    rows = [make_row("s1", "sed", events=[event])]
    answers = ['{"a dog barking": [1.3, 1.3]}']
    default, literal = _metrics(rows, answers, cfg()), _metrics(rows, answers, cfg(min_duration=0.0))
    assert default["sed"]["eb_f1"] == 0.0
    assert literal["sed"]["eb_f1"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="min_duration"):
        cfg(min_duration=-0.1)
