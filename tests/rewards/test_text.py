"""METEOR: parity with nltk's meteor_score on the same tokens, WordNet present or not, and the DAC reward."""

import logging
import random

import nltk
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nltk.translate.meteor_score import meteor_score as nltk_meteor

import rewards.text as text_module
from rewards.text import MeteorReward, _NoSynonyms, meteor_score, tokenize

WORDS = (
    "a the dog dogs barking barks bark barked car cars passing passes engine man men woman speaks speaking "
    "speech loud loudly quiet music plays playing bird birds chirp chirping and then while in of"
).split()

# modest budgets keep the rewards suite fast on two cores
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def nltk_reference(references, hypothesis, wordnet):
    return nltk_meteor([tokenize(r) for r in references], tokenize(hypothesis), wordnet=wordnet)


def test_meteor_formula_on_a_hand_case():
    # h = "a cat sat", r = "a cat sat on the mat": m = 3, P = 1, R = 1/2, one chunk
    # Fmean = PR / (0.9 P + 0.1 R) = 0.5 / 0.95; penalty = 0.5 (1/3)^3; METEOR = (1 - penalty) Fmean
    expected = (1 - 0.5 * (1 / 3) ** 3) * (0.5 / 0.95)
    assert meteor_score("a cat sat on the mat", "a cat sat", wordnet=_NoSynonyms()) == pytest.approx(expected)


def test_meteor_aligns_to_the_latest_free_reference_word_as_nltk():
    # "the" pairs with the second "the" of the reference, which splits the alignment into 2 chunks
    expected = (1 - 0.5 * (2 / 3) ** 3) * (0.5 / 0.95)
    assert meteor_score("the cat sat on the mat", "the cat sat", wordnet=_NoSynonyms()) == pytest.approx(expected)


def test_meteor_no_match_and_empty_are_zero():
    assert meteor_score("a dog", "silence", wordnet=_NoSynonyms()) == 0.0
    assert meteor_score("a dog", "", wordnet=_NoSynonyms()) == 0.0
    assert meteor_score("", "a dog", wordnet=_NoSynonyms()) == 0.0


def test_meteor_matches_nltk_without_wordnet_on_random_sentences():
    rng = random.Random(0)
    for _ in range(400):
        hypothesis = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 14)))
        references = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 14))) for _ in range(rng.randint(1, 3))]
        expected = nltk_reference(references, hypothesis, _NoSynonyms())
        assert meteor_score(references, hypothesis, wordnet=_NoSynonyms()) == expected


@SETTINGS
@given(
    hypothesis=st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join),
    reference=st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join),
)
def test_meteor_matches_nltk_property(hypothesis, reference):
    assert meteor_score(reference, hypothesis, wordnet=_NoSynonyms()) == nltk_reference(
        [reference], hypothesis, _NoSynonyms()
    )


class _Lemma:
    def __init__(self, name):
        self._name = name

    def name(self):
        return self._name


class _Synset:
    def __init__(self, *names):
        self._lemmas = [_Lemma(name) for name in names]

    def lemmas(self):
        return self._lemmas


class FakeWordNet:
    """A tiny WordNet with nltk's interface: synonym matching runs without WordNet data."""

    groups = [("dog", "hound", "domestic_dog"), ("car", "auto", "automobil"), ("loud", "noisi"), ("man", "guy")]

    def synsets(self, word):
        return [_Synset(*group) for group in self.groups if word in group]


def test_meteor_synonym_stage_matches_nltk_with_the_same_wordnet():
    rng = random.Random(1)
    vocabulary = WORDS + ["hound", "auto", "automobile", "noisy", "guy", "guys"]
    for _ in range(300):
        hypothesis = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 12)))
        reference = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 12)))
        expected = nltk_reference([reference], hypothesis, FakeWordNet())
        assert meteor_score(reference, hypothesis, wordnet=FakeWordNet()) == expected


def test_meteor_synonyms_raise_the_score():
    assert meteor_score("a hound barks", "a dog barks", wordnet=FakeWordNet()) > meteor_score(
        "a hound barks", "a dog barks", wordnet=_NoSynonyms()
    )


def test_missing_wordnet_data_falls_back_with_one_warning(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    text_module._default_wordnet.cache_clear()
    text_module._default_synonyms.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="rewards.text"):
            first = meteor_score("a dog barks", "the dogs barking")
            second = meteor_score("a car", "cars")
        assert first == nltk_reference(["a dog barks"], "the dogs barking", _NoSynonyms())
        assert second == nltk_reference(["a car"], "cars", _NoSynonyms())
        assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
        assert "WordNet data not found" in caplog.records[0].message
    finally:
        text_module._default_wordnet.cache_clear()
        text_module._default_synonyms.cache_clear()


def _wordnet_available():
    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        return False
    return True


@pytest.mark.skipif(not _wordnet_available(), reason="optional: WordNet data not installed for nltk")
def test_meteor_matches_nltk_with_real_wordnet():
    from nltk.corpus import wordnet

    rng = random.Random(2)
    vocabulary = WORDS + ["hound", "auto", "automobile", "noisy", "large", "big", "small", "little"]
    for _ in range(150):
        hypothesis = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 12)))
        reference = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 12)))
        assert meteor_score(reference, hypothesis, wordnet=wordnet) == nltk_reference([reference], hypothesis, wordnet)


# --- the DAC reward ---------------------------------------------------------------------------------------------
def dac_row(*events):
    return [{"onset": on, "offset": off, "label": label} for on, off, label in events]


def test_meteor_reward_compares_caption_paragraphs_in_time_order():
    reward = MeteorReward()
    events = dac_row((4.0, 5.0, "a car passes"), (1.0, 2.0, "a dog barks"))
    completion = "1.00-2.00, a dog barks\n4.00-5.00, a car passes"
    expected = meteor_score("a dog barks a car passes", "a dog barks a car passes")
    assert reward([completion], task=["dac"], events=[events]) == [expected]


def test_meteor_reward_cases():
    reward = MeteorReward()
    events = dac_row((1.0, 2.0, "a dog barks"))
    out = reward(
        ["no timestamps at all", "[]", "1-2, a dog barks", "1-2, a dog barks"],
        task=["dac", "dac", "dac", "sed"],
        events=[events, events, [], events],
    )
    # unparsable: 0; explicit empty vs a reference: 0; a caption vs no reference: 0; other tasks: None
    assert out == [0.0, 0.0, 0.0, None]
    assert reward(["None."], task=["dac"], events=[[]]) == [1.0]
