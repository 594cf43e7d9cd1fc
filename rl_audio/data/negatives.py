"""Negative queries for grounding manifests, following SpotSound (arXiv:2604.13023) §3.1 "Negative Samples".

All queries of the manifest form a global pool. For each clip, a negative query is drawn from the pool subject to
two constraints: (i) it is not among the clip's annotations, and (ii) it shares no content word with the clip's
positive queries (lowercase, stopwords removed, simple plural stripping). A row's ``meta.aliases`` (other names of
the sounds present, as the synthetic builder writes them) count as positive queries of its clip. Each clip then has presence questions
(``existence`` rows: ``exists`` true for the positive, answered "Yes.", and false for the negative, answered "No.")
and a localisation question for the positive only (its ``grounding`` row). No grounding row is made for a negative:
SpotSound asks for the interval of an event only when it is present (§2.1: grounding follows a "yes"; App. C.1), so
a grounding question about an absent event would teach a model to refuse grounding instead of to listen.

>>> sorted(content_words("The dogs are barking loudly"))
['barking', 'dog', 'loudly']
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

from rewards.tasks import is_positive

logger = logging.getLogger(__name__)

STOPWORDS = frozenset(
    """a an the and or but nor of to in on at by for from with without into onto over under above below up down
    out off about as is are was were be been being am it its this that these those there here then than so such
    very too quite some any each every all both either neither no not only just also again while during before
    after through between against among his her their our your my its he she they we you i me him them us who whom
    which what when where why how can could will would shall should may might must do does did has have had one
    two three several many much more most less few lot lots""".split()
)


class NegativeError(ValueError):
    """No valid negative query exists for a clip."""


def normalize_query(text: str) -> str:
    """Lowercase and collapse whitespace: the identity used to compare queries."""
    return " ".join(text.lower().split())


def _singular(word: str) -> str:
    if len(word) <= 3 or word.endswith("ss"):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "zes", "sses")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def content_words(text: str) -> frozenset[str]:
    """Lowercase alphanumeric words of ``text`` minus stopwords, with simple plural stripping."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return frozenset(_singular(w) for w in words if w not in STOPWORDS)


def _is_positive(row: dict) -> bool:
    """A grounding row about an event that is present (the grader's :func:`rewards.tasks.is_positive`)."""
    return row["task"] == "grounding" and is_positive(row)


def _clip_annotations(rows: list[dict]) -> tuple[set[str], frozenset[str]]:
    """(normalised queries and labels annotated on the clip, content words of what is present in it)."""
    annotated, words = set(), set()
    for row in rows:
        labels = [e["label"] for e in row.get("events") or []]
        query = [row["query"]] if row.get("query") else []
        aliases = [str(a) for a in (row.get("meta") or {}).get("aliases") or []]  # other names of what is present
        annotated.update(normalize_query(t) for t in labels + query + aliases)
        present = labels + aliases + (query if _is_positive(row) or row.get("exists") is True else [])
        for text in present:
            words |= content_words(text)
    return annotated, frozenset(words)


def _query_pool(rows: Iterable[dict], extra: Iterable[str]) -> list[str]:
    """Distinct queries (first spelling of each normalised form), sorted for determinism."""
    pool = {}
    texts = [r["query"] for r in rows if r["task"] in ("grounding", "existence") and r.get("query")]
    for text in [*texts, *extra]:
        pool.setdefault(normalize_query(text), text)
    return [pool[key] for key in sorted(pool)]


def _unique_id(base: str, taken: set[str]) -> str:
    candidate, n = base, 1
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    taken.add(candidate)
    return candidate


def _derived(row: dict, row_id: str, **changes) -> dict:
    meta = {**row.get("meta", {}), **changes.pop("meta", {})}
    return {**row, "id": row_id, "events": [], "choices": [], "answer": "", **changes, "meta": meta}


def _positive_existence(positives: list[dict], taken: set[str], existing: set) -> list[dict]:
    """An ``existence`` row (``exists=True``) for each positive grounding row that has none yet."""
    new = []
    for pos in positives:
        key = (pos["audio"], normalize_query(pos["query"]))
        if key not in existing:
            existing.add(key)
            new.append(_derived(pos, _unique_id(f"{pos['id']}-exist", taken), task="existence", exists=True))
    return new


def _negative_rows(rows: list[dict], positives: list[dict], rng, pool: list[str], taken, per_clip) -> list[dict]:
    """``per_clip`` negative queries for one clip, each as an existence row (``exists=False``; never a grounding
    row: nothing is localised for an absent event)."""
    annotated, positive_words = _clip_annotations(rows)
    candidates = [q for q in pool if normalize_query(q) not in annotated and not content_words(q) & positive_words]
    if len(candidates) < per_clip:
        raise NegativeError(
            f"clip {positives[0]['audio']}: {len(candidates)} valid negative queries for {per_clip} wanted "
            f"(positive queries: {sorted({p['query'] for p in positives})}, pool size {len(pool)})"
        )
    anchor, new = positives[0], []
    for k, index in enumerate(rng.choice(len(candidates), size=per_clip, replace=False)):
        new.append(
            _derived(
                anchor,
                _unique_id(f"{anchor['id']}-neg{k}-exist", taken),
                task="existence",
                query=candidates[int(index)],
                windows=[],
                exists=False,
                meta={"negative_of": anchor["id"]},
            )
        )
    return new


def is_absent_grounding(row: dict) -> bool:
    """A grounding row about an absent event (no windows, or ``exists`` false): the old form of a negative, which
    the schema still loads but no builder here writes (see :mod:`rl_audio.data.templates`)."""
    return row["task"] == "grounding" and (not row.get("windows") or row.get("exists") is False)


def add_negatives_with_report(
    rows: Iterable[dict],
    *,
    seed: int,
    per_clip: int = 1,
    skip_missing: bool = False,
    extra_queries: Iterable[str] = (),
) -> tuple[list[dict], Counter]:
    """:func:`add_negatives`, also returning counts: ``clips``, ``negatives``, ``positive_existence``,
    ``skipped_no_negative`` and (when the input has any) ``absent_grounding_input``."""
    rows = list(rows)
    counts = Counter()
    absent = sum(is_absent_grounding(r) for r in rows)
    if absent:  # passed through unchanged: they are the caller's data
        counts["absent_grounding_input"] = absent
        logger.warning(
            "%d input grounding rows have no windows (absent events): kept as they are, but they have no training "
            "target; SpotSound asks about absent events only as existence rows",
            absent,
        )
    pool = _query_pool(rows, extra_queries)
    clips: dict[str, list[dict]] = {}
    for row in rows:
        clips.setdefault(row["audio"], []).append(row)
    taken = {r["id"] for r in rows}
    existing = {(r["audio"], normalize_query(r["query"])) for r in rows if r["task"] == "existence"}
    rng = np.random.default_rng(seed)
    out = []
    for clip_rows in clips.values():
        out.extend(clip_rows)
        positives = [r for r in clip_rows if _is_positive(r)]
        if not positives:
            continue
        counts["clips"] += 1
        new = _positive_existence(positives, taken, existing)
        counts["positive_existence"] += len(new)
        out.extend(new)
        try:
            new = _negative_rows(clip_rows, positives, rng, pool, taken, per_clip)
        except NegativeError as err:
            if not skip_missing:
                raise
            logger.debug("%s", err)
            counts["skipped_no_negative"] += 1
            continue
        counts["negatives"] += len(new)
        out.extend(new)
    if counts["skipped_no_negative"]:
        logger.warning("%d clips had no valid negative query and got none", counts["skipped_no_negative"])
    return out, counts


def add_negatives(
    rows: Iterable[dict],
    *,
    seed: int,
    per_clip: int = 1,
    skip_missing: bool = False,
    extra_queries: Iterable[str] = (),
) -> list[dict]:
    """Add SpotSound-style negatives to a grounding manifest (rows as from :func:`load_manifest`).

    For each clip (rows sharing ``audio``) with at least one positive grounding row, add an ``existence`` row with
    ``exists=True`` for each positive that has none, and ``per_clip`` negative queries, each as an existence row
    (``exists=False``, ``windows=[]``, target "No."). No grounding row is added for a negative (SpotSound §2.1,
    App. C.1: localisation is asked only about a present event). Rows of a clip stay together, originals first; new
    ids derive from the positive's id (``<id>-exist``, ``<id>-neg<k>-exist``); ``meta["negative_of"]`` names it.
    Input rows are returned unchanged, including any grounding row without windows (counted and logged).

    Args:
        rows: validated manifest rows.
        seed: the draw is deterministic given the seed and the rows.
        per_clip: negatives per clip.
        skip_missing: clips without a valid negative get none (counted and logged) instead of raising.
        extra_queries: more queries for the global pool (e.g. from other manifests).

    Raises:
        NegativeError: a clip has no valid negative query and ``skip_missing`` is false.
    """
    out, _ = add_negatives_with_report(
        rows, seed=seed, per_clip=per_clip, skip_missing=skip_missing, extra_queries=extra_queries
    )
    return out
