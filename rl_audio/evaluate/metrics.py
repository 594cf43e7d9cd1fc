"""Aggregate per-row scores into the papers' metrics, per task (and per manifest when there are several).

All rates are fractions in [0, 1] (the papers print percentages). Definitions, with their sources:

* grounding (SpotSound §4.1, TimePro-RL §3.1 AG): over positive queries, ``R1@θ = (1/N) Σ 1[IoU_i ≥ θ]`` and
  ``mIoU = (1/N) Σ IoU_i``, IoU being that of the unions of reference and predicted windows
  (:func:`rewards.temporal.window_iou`). Grounding rows without windows (absent events; only in older or users' own
  manifests, since the builders here ask about absent events with existence rows alone) are reported apart as
  ``negatives_rejected``, the fraction whose answer states absence. ``joint_f1`` applies the two-stage rules below to the grounding answer
  alone (presence = it gave a window), for manifests without existence rows.
* existence (SpotSound §4.2): accuracy over all queries, on positives and on negatives.
* two_stage (SpotSound §4.3): each positive existence row is paired with the grounding row of the same clip and
  query; a negative needs only its existence row (no grounding row is asked about an absent event). Negative: TN if
  the existence answer says absent, else FP. Positive: FN if it does not say present; TP if it does and the
  grounding answer's IoU > ``two_stage_iou`` (0.3); FP otherwise. ``F1 = 2TP / (2TP + FP + FN)``
  (:func:`rewards.temporal.two_stage_f1`).
* cascaded (SpotSound §2.1, App. C.1, §4.2-4.3): the inference SpotSound runs, presence first and grounding only
  after a "yes", on the same pairs as two_stage. Per positive, the cascade's IoU is the grounding answer's IoU when
  the presence answer is "yes" and 0 otherwise; ``mIoU`` and ``R1@θ`` are over positives. ``false_alarm_rate``:
  fraction of negatives answered "yes" (the cascade would go on to localise an absent event); ``accuracy``,
  ``accuracy_positive``, ``accuracy_negative``: presence correctness on the pairs (Table 4); ``f1`` and its counts:
  the §4.3 F1 of the cascade (equal to ``two_stage.f1``); ``n_undecided``: presence answers neither yes nor no
  (no grounding, so no false alarm; but wrong, and FP on a negative, FN on a positive, as in §4.3).
* sed (TimePro-RL §3.1, DESED): event-based F1 (Mesaros et al. 2016; sed_eval's ``EventBasedMetrics``): onset
  within ``t_collar``, offset within ``max(t_collar, sed_percentage_of_length × reference length)``, labels equal
  after normalisation, optimal one-to-one matching. ``eb_f1`` is sed_eval's overall (micro) F, TP, N_ref and N_est
  summed over clips; ``eb_f1_macro`` the mean over reference classes of ``2 TP_c / (N_ref,c + N_est,c)`` (sed_eval
  leaves a class the model never predicts out of its class-wise average; here it counts as 0); ``eb_f1_clip_mean``
  the mean per-clip F, which is the mean of the ``eb_f1`` reward.
* dac (TimePro-RL §3.1): METEOR of the captions (mean per clip, :class:`rewards.text.MeteorReward`) and
  event-based F1 on timing only (descriptions are free text).
* sta (TGSR Table 1): R1@θ and mIoU of the single predicted window.
* qa (MMAU, TGSR eq. 1): accuracy overall and per value of each ``qa_group_by`` meta key.
* behaviour (TGSR Table 3, App. C.4): ``regions_explored`` = mean number of distinct intervals an answer
  references (:func:`rewards.reasoning.count_grounded_units`); ``audiology_verify`` and ``consistency`` when an
  audiology model or a judge is configured.

Unparseable answers are misses and are counted per task under ``unparseable``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable

from rewards.matching import Counts
from rewards.parsing import normalise_text
from rewards.reasoning import count_grounded_units
from rewards.tasks import is_positive
from rewards.temporal import existence_accuracy, mean_iou, recall_at, two_stage_f1

from .scoring import score_row

TASK_ORDER = ("grounding", "existence", "two_stage", "cascaded", "sed", "dac", "sta", "qa", "behaviour")


def r1_key(theta: float) -> str:
    """The metrics.json key of R1@θ.

    >>> r1_key(0.5)
    'R1@0.5'
    """
    return f"R1@{theta:g}"


def two_stage_outcome(positive: bool, said_present: bool | None, iou: float | None, threshold: float) -> str:
    """SpotSound §4.3 confusion class of one query: ``tp``, ``fp``, ``fn`` or ``tn``.

    >>> [two_stage_outcome(True, True, 0.5, 0.3), two_stage_outcome(True, True, 0.3, 0.3),
    ...  two_stage_outcome(True, False, 0.9, 0.3), two_stage_outcome(False, False, None, 0.3),
    ...  two_stage_outcome(False, None, None, 0.3)]
    ['tp', 'fp', 'fn', 'tn', 'fp']
    """
    if not positive:
        return "tn" if said_present is False else "fp"
    if said_present is not True:
        return "fn"
    return "tp" if iou is not None and iou > threshold else "fp"


def _f1(counts: Counter) -> float:
    denominator = 2 * counts["tp"] + counts["fp"] + counts["fn"]
    return 1.0 if denominator == 0 else 2 * counts["tp"] / denominator


def _window_metrics(ious: list[float], cfg) -> dict:
    out = {r1_key(t): recall_at(ious, t) for t in cfg.iou_thresholds}
    out["mIoU"] = mean_iou(ious)
    return out


def _grounding(items: list[tuple[dict, dict]], cfg) -> dict:
    positives = [s["iou"] for r, s in items if "iou" in s]
    negatives = [s["rejected"] for r, s in items if "rejected" in s]
    out = {"n": len(items), "n_positive": len(positives), "n_negative": len(negatives)}
    if positives:
        out.update(_window_metrics(positives, cfg))
    if negatives:
        out["negatives_rejected"] = sum(negatives) / len(negatives)
    outcomes = Counter(
        two_stage_outcome(is_positive(r), s["said_present"], s.get("iou"), cfg.two_stage_iou) for r, s in items
    )
    out["joint_f1"] = _f1(outcomes)
    return out


def _existence(items: list[tuple[dict, dict]]) -> dict:
    truth = [is_positive(r) for r, _ in items]
    said = [s["parsed"]["present"] for _, s in items]
    out = {"n": len(items), "accuracy": existence_accuracy(truth, said)}
    for name, value in (("positive", True), ("negative", False)):
        sub = [s["correct"] for r, s in items if is_positive(r) is value]
        out[f"n_{name}"] = len(sub)
        if sub:
            out[f"accuracy_{name}"] = sum(sub) / len(sub)
    return out


def _pair_key(row: dict, manifest: str) -> tuple:
    return manifest, row["audio"], normalise_text(row["query"])


def _cascade_pairs(
    grounding: list[tuple[dict, dict]], existence: list[tuple[dict, dict]], manifest_of: dict
) -> tuple[list[tuple[bool, bool | None, float | None]], int]:
    """``([(positive, said_present, grounding IoU or None), ...], unpaired)`` over the existence rows.

    A positive existence row is paired with the grounding row of the same manifest, clip and query (its IoU); one
    without such a row is unpaired and left out. A negative needs no grounding row (none is asked about an absent
    event; a grounding row of an older manifest for it is consumed and ignored): its IoU is None.
    """
    by_key: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for row, score in grounding:
        by_key[_pair_key(row, manifest_of[row["id"]])].append((row, score))
    pairs, unpaired = [], 0
    for row, score in existence:
        positive, present = is_positive(row), score["parsed"]["present"]
        candidates = by_key.get(_pair_key(row, manifest_of[row["id"]]))
        if positive and not candidates:
            unpaired += 1
            continue
        g_score = candidates.pop(0)[1] if candidates else {}
        pairs.append((positive, present, g_score.get("iou", 0.0) if positive else None))
    return pairs, unpaired


def _two_stage(pairs: list[tuple[bool, bool | None, float | None]], unpaired: int, cfg) -> dict:
    exists, said, ious = (list(column) for column in zip(*pairs))
    counts = Counter(two_stage_outcome(p, s, i, cfg.two_stage_iou) for p, s, i in pairs)
    out = {"pairs": len(pairs), "f1": two_stage_f1(exists, said, ious, threshold=cfg.two_stage_iou)}
    out.update({k: counts[k] for k in ("tp", "fp", "fn", "tn")})
    out["unpaired_existence"] = unpaired
    return out


def _cascaded(pairs: list[tuple[bool, bool | None, float | None]], unpaired: int, cfg) -> dict:
    """SpotSound's two-stage inference (§2.1, App. C.1): ask presence; ground only after "yes".

    Computed from the answers already generated, without a second generation pass: every question is rendered from
    its own row alone (:func:`rl_audio.data.render_question`; a grounding prompt never contains the presence answer)
    and answered independently, so the grounding answer the cascade would get after a "yes" is the one the
    grounding row already has (the same greedy decode; with sampling, a draw from the same distribution), and after
    any other answer the cascade outputs no window (IoU 0 on a positive, no false alarm on a negative).
    """
    positives = [(said, iou) for positive, said, iou in pairs if positive]
    negatives = [said for positive, said, _ in pairs if not positive]
    out: dict = {"pairs": len(pairs), "n_positive": len(positives), "n_negative": len(negatives)}
    if positives:
        out.update(_window_metrics([iou if said is True else 0.0 for said, iou in positives], cfg))
        out["accuracy_positive"] = sum(said is True for said, _ in positives) / len(positives)
    if negatives:
        out["false_alarm_rate"] = sum(said is True for said in negatives) / len(negatives)
        out["accuracy_negative"] = sum(said is False for said in negatives) / len(negatives)
    out["accuracy"] = existence_accuracy([p for p, _, _ in pairs], [s for _, s, _ in pairs])
    out["n_undecided"] = sum(said is None for _, said, _ in pairs)
    two_stage = _two_stage(pairs, unpaired, cfg)
    out.update({k: two_stage[k] for k in ("f1", "tp", "fp", "fn", "tn", "unpaired_existence")})
    return out


def _events(items: list[tuple[dict, dict]], task: str) -> dict:
    # corpus (micro) counts: the sums of the rows' grade counts (rewards.tasks.EventGrade.counts)
    total = Counts.total((s["tp"], s["n_ref"], s["n_est"]) for _, s in items)
    precision = total.tp / total.n_est if total.n_est else 0.0
    recall = total.tp / total.n_ref if total.n_ref else 0.0
    out = {"n": len(items), "eb_f1": total.f1, "precision": precision, "recall": recall}
    out.update(total._asdict())
    out["eb_f1_clip_mean"] = sum(s["eb_f1"] for _, s in items) / len(items)
    if task == "sed":
        per_class: dict[str, list] = defaultdict(list)
        for _, s in items:
            for label, counts in s["per_label"].items():
                per_class[label].append(counts)
        classes = {label: c.f1 for label, c in ((k, Counts.total(v)) for k, v in per_class.items()) if c.n_ref > 0}
        out["eb_f1_macro"] = sum(classes.values()) / len(classes) if classes else None
        out["per_class"] = dict(sorted(classes.items()))
    else:
        out["meteor"] = sum(s["meteor"] for _, s in items) / len(items)
    return out


def _qa(items: list[tuple[dict, dict]], group_by: list[str]) -> dict:
    out = {"n": len(items), "accuracy": sum(s["correct"] for _, s in items) / len(items)}
    groups = {}
    for key in group_by:
        buckets: dict[str, list[bool]] = defaultdict(list)
        for row, score in items:
            value = row.get("meta", {}).get(key)
            if value is not None and value != "":
                buckets[str(value)].append(score["correct"])
        if buckets:
            groups[key] = {v: {"n": len(b), "accuracy": sum(b) / len(b)} for v, b in sorted(buckets.items())}
    if groups:
        out["by"] = groups
    return out


def _behaviour(items: list[tuple[dict, str]], extra: dict[str, dict[str, float]]) -> dict:
    out = {"n": len(items), "regions_explored": sum(count_grounded_units(t) for _, t in items) / len(items)}
    for name, values in extra.items():
        scores = [values[row["id"]] for row, _ in items if values.get(row["id"]) is not None]
        if scores:
            out[name] = sum(scores) / len(scores)
            out[f"n_{name}"] = len(scores)
    return out


def _finite(value):
    """JSON has no NaN: non-finite floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def aggregate(
    rows: Iterable[dict],
    texts: dict[str, str],
    cfg,
    *,
    manifest_of: dict[str, str] | None = None,
    extra: dict[str, dict[str, float]] | None = None,
    scores: dict[str, dict] | None = None,
) -> dict:
    """Metrics of ``rows`` given the model's answer ``texts[id]`` (see the module docstring for definitions).

    ``extra`` holds per-row behaviour scores by name (``audiology_verify``, ``consistency``), from
    :mod:`rl_audio.evaluate.behaviour`; ``scores`` the rows' :func:`~rl_audio.evaluate.scoring.score_row` results
    when already computed.
    """
    rows = list(rows)
    manifest_of = manifest_of or {}
    manifest_of = {r["id"]: manifest_of.get(r["id"], "") for r in rows}
    by_task: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    unparseable: Counter = Counter()
    for row in rows:
        score = scores[row["id"]] if scores is not None else score_row(row, texts[row["id"]], cfg)
        by_task[row["task"]].append((row, score))
        unparseable[row["task"]] += not score["ok"]
    out: dict = {"rows": len(rows), "tasks": {t: len(v) for t, v in sorted(by_task.items())}}
    out["unparseable"] = {t: unparseable[t] for t in sorted(by_task)}
    if by_task["grounding"]:
        out["grounding"] = _grounding(by_task["grounding"], cfg)
    if by_task["existence"]:
        out["existence"] = _existence(by_task["existence"])
        pairs, unpaired = _cascade_pairs(by_task["grounding"], by_task["existence"], manifest_of)
        if any(positive for positive, _, _ in pairs):  # nothing to combine without a grounding answer
            out["two_stage"] = _two_stage(pairs, unpaired, cfg)
            out["cascaded"] = _cascaded(pairs, unpaired, cfg)
    for task in ("sed", "dac"):
        if by_task[task]:
            out[task] = _events(by_task[task], task)
    if by_task["sta"]:
        ious = [s["iou"] for _, s in by_task["sta"]]
        out["sta"] = {"n": len(ious), **_window_metrics(ious, cfg)}
    if by_task["qa"]:
        out["qa"] = _qa(by_task["qa"], cfg.qa_group_by)
    behaviour_rows = [(r, texts[r["id"]]) for r in rows if r["task"] in cfg.behaviour_tasks]
    if behaviour_rows:
        out["behaviour"] = _behaviour(behaviour_rows, extra or {})
    return _finite(out)


def compute_metrics(
    rows: list[dict],
    texts: dict[str, str],
    cfg,
    *,
    manifest_of: dict[str, str] | None = None,
    extra: dict[str, dict[str, float]] | None = None,
    scores: dict[str, dict] | None = None,
) -> dict:
    """:func:`aggregate` over all rows, plus ``per_manifest`` (the same per manifest) when there are several."""
    if scores is None:
        scores = {row["id"]: score_row(row, texts[row["id"]], cfg) for row in rows}
    metrics = aggregate(rows, texts, cfg, manifest_of=manifest_of, extra=extra, scores=scores)
    names = sorted(set((manifest_of or {}).values()))
    if len(names) > 1:
        metrics["per_manifest"] = {
            name: aggregate(
                [r for r in rows if manifest_of[r["id"]] == name],
                texts,
                cfg,
                manifest_of=manifest_of,
                extra=extra,
                scores=scores,
            )
            for name in names
        }
    return metrics
