"""METEOR (Banerjee & Lavie 2005; Lavie & Agarwal 2007), TimePro-RL's dense-captioning metric and auxiliary reward.

TimePro-RL §3.1 scores dense audio captions with METEOR and §3.2 uses it as ``r_aux`` for DAC in eq. 2.

``meteor_score`` equals ``nltk.translate.meteor_score.meteor_score`` (nltk 3.9+) on the tokens of
:func:`tokenize`. With ``m`` aligned unigrams, hypothesis length ``|h|``, reference length ``|r|`` and ``ch`` chunks
(maximal runs of matches adjacent in both)::

    P = m / |h|,  R = m / |r|,  Fmean = P R / (α P + (1 - α) R),
    penalty = γ (ch / m)^β,  METEOR = (1 - penalty) Fmean,   α = 0.9, β = 3, γ = 0.5,

and 0 when ``m = 0``; with several references the maximum is taken. The alignment is nltk's: exact matches, then
Porter-stem matches, then WordNet-synonym matches (on the stems), each stage pairing hypothesis words from the last
to the first with the latest still-free reference position.

Backends: nltk is imported on first use (it is then a runtime dependency of this metric). Its Porter stemmer gives
the stems (cached per word). WordNet data ships with no PyPI package; when ``nltk.data`` cannot find
``corpora/wordnet``, synonym matching is skipped (exact + stem only, what nltk computes with a WordNet stand-in whose
``synsets(word)`` returns ``[]``) and one warning is logged.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Sequence

from ._base import RewardFunction, Row
from .parsing import Event
from .tasks import EventGrade
from .tasks import get as get_task

__all__ = ["MeteorReward", "caption_meteor", "meteor_score", "tokenize"]

logger = logging.getLogger(__name__)

_TOKEN_RE = re.compile(r"\w+(?:'\w+)*")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, inner apostrophes); punctuation is dropped.

    >>> tokenize("A dog's bark, then silence.")
    ['a', "dog's", 'bark', 'then', 'silence']
    """
    return _TOKEN_RE.findall(text.lower())


class _NoSynonyms:
    """WordNet stand-in without data: no word has synsets, so METEOR uses exact and stem matches only."""

    def synsets(self, word: str) -> list:
        return []


@functools.lru_cache(maxsize=1)
def _default_wordnet():
    import nltk

    for resource in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            nltk.data.find(resource)
        except LookupError:
            continue
        from nltk.corpus import wordnet

        return wordnet
    logger.warning(
        "METEOR: WordNet data not found by nltk.data (searched %s); synonym matching is off, "
        "so scores use exact and stem matches only.",
        nltk.data.path,
    )
    return _NoSynonyms()


@functools.lru_cache(maxsize=1)
def _porter():
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _porter().stem(word)


def _synonyms_of(wordnet, word: str) -> set[str]:
    names = {lemma.name() for synset in wordnet.synsets(word) for lemma in synset.lemmas()}
    return {name for name in names if "_" not in name} | {word}


@functools.lru_cache(maxsize=65536)
def _default_synonyms(word: str) -> frozenset[str]:
    return frozenset(_synonyms_of(_default_wordnet(), word))


def _align_stage(hyp, ref, candidates: Callable[[str], set[str] | frozenset[str]] | None):
    """One alignment stage over ``(position, word)`` lists; returns matches and the still-free words.

    Hypothesis words are taken from the last to the first; each takes the latest free reference position among
    the words it may match (itself, or its synonyms when ``candidates`` is given), as nltk does.
    """
    positions: dict[str, list[int]] = defaultdict(list)
    for j, (_, word) in enumerate(ref):
        positions[word].append(j)
    matches, used_hyp, used_ref = [], set(), set()
    for i in range(len(hyp) - 1, -1, -1):
        word = hyp[i][1]
        if candidates is None:
            free = positions.get(word)
            best_word = word if free else None
        else:
            best_word, best_j = None, -1
            for synonym in candidates(word):
                free = positions.get(synonym)
                if free and free[-1] > best_j:
                    best_word, best_j = synonym, free[-1]
        if best_word is None:
            continue
        j = positions[best_word].pop()
        used_hyp.add(i)
        used_ref.add(j)
        matches.append((hyp[i][0], ref[j][0]))
    hyp_left = [pair for i, pair in enumerate(hyp) if i not in used_hyp]
    ref_left = [pair for j, pair in enumerate(ref) if j not in used_ref]
    return matches, hyp_left, ref_left


def _chunks(matches: list[tuple[int, int]]) -> int:
    """Fewest runs of matches that are adjacent in both hypothesis and reference (``matches`` sorted by hyp)."""
    return 1 + sum(1 for (h0, r0), (h1, r1) in zip(matches, matches[1:]) if not (h1 == h0 + 1 and r1 == r0 + 1))


def _single_meteor(reference: Sequence[str], hypothesis: Sequence[str], synonyms, alpha, beta, gamma) -> float:
    hyp = list(enumerate(word.lower() for word in hypothesis))
    ref = list(enumerate(word.lower() for word in reference))
    if not hyp or not ref:
        return 0.0
    exact, hyp_left, ref_left = _align_stage(hyp, ref, None)
    stem, hyp_left, ref_left = _align_stage(
        [(i, _stem(w)) for i, w in hyp_left], [(j, _stem(w)) for j, w in ref_left], None
    )
    synonym, _, _ = _align_stage(hyp_left, ref_left, synonyms)
    matches = sorted(exact + stem + synonym, key=lambda pair: pair[0])
    if not matches:
        return 0.0
    precision = float(len(matches)) / len(hyp)
    recall = float(len(matches)) / len(ref)
    fmean = (precision * recall) / (alpha * precision + (1 - alpha) * recall)
    penalty = gamma * (float(_chunks(matches)) / len(matches)) ** beta
    return (1 - penalty) * fmean


def meteor_score(
    references: str | Sequence[str],
    hypothesis: str,
    *,
    alpha: float = 0.9,
    beta: float = 3.0,
    gamma: float = 0.5,
    wordnet: object | None = None,
) -> float:
    """METEOR of ``hypothesis`` against one reference string or the best of several, in [0, 1].

    ``wordnet``: None uses nltk's WordNet when its data is installed (exact + stem otherwise); any object with
    ``synsets(word)`` (nltk's interface) is used as given.

    >>> meteor_score("a dog barks loudly", "a dog barks loudly")
    0.9921875
    >>> meteor_score(["silence", "a dog barks"], "the dogs barking")
    0.625
    >>> meteor_score("a dog barks", "")
    0.0
    """
    if isinstance(references, str):
        references = [references]
    if wordnet is None:
        _default_wordnet()  # decide once (and warn once) whether WordNet data is there
        synonyms = _default_synonyms
    else:
        cache: dict[str, set[str]] = {}

        def synonyms(word: str) -> set[str]:
            if word not in cache:
                cache[word] = _synonyms_of(wordnet, word)
            return cache[word]

    hyp_tokens = tokenize(hypothesis)
    return max(
        (_single_meteor(tokenize(ref), hyp_tokens, synonyms, alpha, beta, gamma) for ref in references), default=0.0
    )


def _caption_paragraph(events: Sequence[Event]) -> str:
    """Descriptions in time order, joined: the paragraph METEOR compares for dense captioning."""
    return " ".join(event.label for event in sorted(events, key=lambda event: (event.onset, event.offset)))


def caption_meteor(grade: EventGrade) -> float:
    """METEOR of a dense-captioning grade: the answer's caption paragraph against the reference's. Both without
    events: 1.0; exactly one without events: 0.0; an unparseable answer: 0.0.

    >>> from rewards._base import Row
    >>> from rewards.tasks import grade
    >>> row = Row.of({"task": "dac", "events": [{"onset": 1, "offset": 2, "label": "rain"}]})
    >>> caption_meteor(grade(row, "[]")), caption_meteor(grade(row, "no idea"))
    (0.0, 0.0)
    """
    if grade.answer is None:
        return 0.0
    reference, hypothesis = _caption_paragraph(grade.reference), _caption_paragraph(grade.answer)
    if not reference.strip() or not hypothesis.strip():
        return 1.0 if not reference.strip() and not hypothesis.strip() else 0.0
    return meteor_score(reference, hypothesis)


class MeteorReward(RewardFunction):
    """METEOR of the predicted captions, TimePro-RL's auxiliary reward for dense audio captioning (§3.2, eq. 2).

    Formula: ``meteor_score(reference paragraph, predicted paragraph)``, where a paragraph is the event descriptions
    sorted by onset and joined with spaces (predicted events parsed from ``onset-offset, description`` lines). Both
    without events: 1.0; exactly one without events: 0.0; an answer with no parsable event and no statement of
    absence: 0.0. Range [0, 1].

    Source: TimePro-RL §3.1 (DAC metric) and §3.2 (r_aux for DAC). Columns: ``task`` (rows with task ``dac``; other
    rows get None), ``events`` (``label`` holds the reference description). Needs nltk at run time.

    >>> meteor = MeteorReward()
    >>> meteor(["1.0-2.0, a dog barks"], task=["dac"], events=[[{"onset": 1, "offset": 2, "label": "a dog barks"}]])
    [0.9814814814814815]
    """

    __name__ = "meteor"
    default_tasks = ("dac",)
    required_columns = {"dac": get_task("dac").columns}

    def reference(self, row: Row) -> tuple[Event, ...] | None:
        return get_task("dac").reference(row)

    def score(self, text: str, reference: tuple[Event, ...], row: Row) -> float:
        return caption_meteor(get_task("dac").grade(reference, text, row))
