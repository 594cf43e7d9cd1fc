"""Benchmark the rewards' metrics against their reference implementations on the same inputs.

Prints one table: per-call CPU time of ``rewards.temporal.event_f1`` vs sed_eval 0.2.1 (``EventBasedMetrics`` with
optimal matching, built per call as a per-completion reward must) and of ``rewards.text.meteor_score`` vs
``nltk.translate.meteor_score.meteor_score``, their ratio, and the largest absolute difference over a set of
seeded random inputs of each size (NaN from sed_eval, where it is undefined, is left out of the difference).

Run: ``python benchmarks/reward_speed.py`` (needs the test extras: sed_eval, setuptools<81, nltk).
Set NLTK_DATA to a directory holding corpora/wordnet to include the WordNet rows.
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import time
import warnings

import nltk
import numpy as np
from nltk.translate.meteor_score import meteor_score as nltk_meteor

from rewards.temporal import event_f1
from rewards.text import _NoSynonyms, meteor_score, tokenize

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # dcase_util imports pkg_resources
    import sed_eval


def _pass_seconds(fn, inputs, number):
    start = time.process_time()
    for _ in range(number):
        for args in inputs:
            fn(*args)
    return (time.process_time() - start) / (number * len(inputs))


def per_call_seconds(ours, ours_inputs, reference, reference_inputs, min_time=0.3):
    """Per-call CPU seconds of ``ours`` and ``reference``: the best of interleaved repeats (as ``timeit``).

    CPU time of this process (``time.process_time``), repeats alternate between the two implementations and the
    minimum is kept, so other jobs on a shared machine skew neither number nor their ratio.
    """
    ours_best = reference_best = math.inf
    start = time.process_time()
    while time.process_time() - start < 2 * min_time:
        ours_best = min(ours_best, _pass_seconds(ours, ours_inputs, 5))
        reference_best = min(reference_best, _pass_seconds(reference, reference_inputs, 1))
    return ours_best, reference_best


def sed_eval_f1(reference_dicts, estimate_dicts, labels):
    metric = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=labels, t_collar=0.2, percentage_of_length=0.5, event_matching_type="optimal"
    )
    metric.evaluate(reference_dicts, estimate_dicts)
    return metric.overall_f_measure()["f_measure"]


def random_events(rng, count, labels):
    onsets = np.round(rng.uniform(0, 10, count), 2)
    lengths = np.round(rng.uniform(0.1, 3, count), 2)
    return [(float(on), float(on + length), str(rng.choice(labels))) for on, length in zip(onsets, lengths)]


def event_inputs(n_ref, n_est, samples=50, seed=0):
    rng = np.random.default_rng(seed)
    labels = ["dog", "speech", "alarm"]
    cases = []
    for _ in range(samples):
        reference = random_events(rng, n_ref, labels)
        near = [(on + float(rng.normal(0, 0.15)), off + float(rng.normal(0, 0.3)), lab) for on, off, lab in reference]
        estimate = (near + random_events(rng, n_est, labels))[:n_est]
        as_dicts = [
            [{"event_onset": on, "event_offset": off, "event_label": lab} for on, off, lab in events]
            for events in (reference, estimate)
        ]
        cases.append(((reference, estimate), (*as_dicts, labels)))
    return cases


WORDS = (
    "a the dog dogs hound barking barks bark car cars automobile passing passes engine man men woman speaks "
    "speaking loud loudly quiet music plays playing bird birds chirp chirping and then while in of rain falls"
).split()


def caption_inputs(length, samples=50, seed=0):
    rng = random.Random(seed)
    cases = []
    for _ in range(samples):
        reference = " ".join(rng.choice(WORDS) for _ in range(length))
        hypothesis = " ".join(rng.choice(WORDS) for _ in range(length))
        cases.append((reference, hypothesis))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of timing per cell")
    args = parser.parse_args()

    rows = []
    for n_ref, n_est in [(1, 1), (3, 3), (5, 8), (10, 12), (30, 40)]:
        cases = event_inputs(n_ref, n_est)
        diffs = [
            abs(event_f1(*ours) - theirs)
            for ours, theirs in ((o, sed_eval_f1(*t)) for o, t in cases)
            if not math.isnan(theirs)
        ]
        ours_s, ref_s = per_call_seconds(
            event_f1, [o for o, _ in cases], sed_eval_f1, [t for _, t in cases], args.min_time
        )
        rows.append((f"event_f1 vs sed_eval, {n_ref} ref x {n_est} est", ours_s, ref_s, max(diffs)))

    wordnets = [("no WordNet", _NoSynonyms())]
    try:
        nltk.data.find("corpora/wordnet")
        from nltk.corpus import wordnet

        wordnet.synsets("dog")  # load it before timing
        wordnets.append(("WordNet", wordnet))
    except LookupError:
        pass
    for label, wordnet in wordnets:
        ours_fn = functools.partial(meteor_score, wordnet=wordnet)
        nltk_fn = functools.partial(nltk_meteor, wordnet=wordnet)
        for length in (6, 15, 40):
            cases = caption_inputs(length)
            tokenised = [([tokenize(ref)], tokenize(hyp)) for ref, hyp in cases]
            diffs = [
                abs(meteor_score(ref, hyp, wordnet=wordnet) - nltk_meteor(t_ref, t_hyp, wordnet=wordnet))
                for (ref, hyp), (t_ref, t_hyp) in zip(cases, tokenised)
            ]
            ours_s, ref_s = per_call_seconds(ours_fn, cases, nltk_fn, tokenised, args.min_time)
            rows.append((f"meteor vs nltk, {length} words, {label}", ours_s, ref_s, max(diffs)))

    header = (
        f"| {'metric':<44} | {'ours (µs)':>10} | {'reference (µs)':>14} | {'speed-up':>8} | {'max abs diff':>12} |"
    )
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for name, ours_s, ref_s, diff in rows:
        print(
            f"| {name:<44} | {ours_s * 1e6:>10.1f} | {ref_s * 1e6:>14.1f} | {ref_s / ours_s:>7.1f}x | {diff:>12.2g} |"
        )


if __name__ == "__main__":
    main()
