"""The vocabulary is ordered by frequency, and capped (rarer symbols become <unk>)."""

from __future__ import annotations

import difflib
import random
import string

import pytest

from model import UNKNOWN, ModelError, UnknownWordsError, Vocabulary


def test_frequency_order_ties_by_first_occurrence(story_tokens: list[str]) -> None:
    vocabulary = Vocabulary.build(story_tokens)
    assert len(vocabulary) == 112
    assert vocabulary.symbols[:6] == (",", "the", ".", "and", "to", "said")
    assert vocabulary.id_of("long") < vocabulary.id_of("ago")  # both once; "long" comes first
    assert vocabulary.decode(vocabulary.encode(story_tokens)) == story_tokens
    assert vocabulary.covered_share == 1.0


def test_cap_maps_rare_words_to_unknown(story_tokens: list[str]) -> None:
    vocabulary = Vocabulary.build(story_tokens, max_size=20)
    assert len(vocabulary) == 20 and vocabulary.symbols[-1] == UNKNOWN
    ids = vocabulary.encode(story_tokens)
    unknown_share = ids.count(vocabulary.id_of(UNKNOWN)) / len(ids)
    assert vocabulary.covered_share == pytest.approx(1 - unknown_share)
    assert vocabulary.covered_share is not None and 0 < vocabulary.covered_share < 1
    assert vocabulary.encode(["zebra"]) == [vocabulary.id_of(UNKNOWN)]
    with pytest.raises(KeyError):
        vocabulary.id_of("zebra")


def test_unknown_words_are_named_with_suggestions(story_tokens: list[str]) -> None:
    vocabulary = Vocabulary.build(story_tokens)
    with pytest.raises(UnknownWordsError) as caught:
        vocabulary.encode(["the", "mouze", "cta", "the", "mouze"])
    assert caught.value.words == ("mouze", "cta")
    assert "mouse" in caught.value.suggestions["mouze"]
    assert "cat" in caught.value.suggestions["cta"]
    assert "mouze" in str(caught.value) and "mouse" in str(caught.value)


def test_complete_by_frequency_and_contains(story_tokens: list[str]) -> None:
    vocabulary = Vocabulary.build(story_tokens)
    assert vocabulary.complete("co") == ["could", "council", "consider", "common", "consists"]
    assert vocabulary.complete("CO", limit=2) == ["could", "council"]
    assert "cat" in vocabulary and "dog" not in vocabulary


def test_json_roundtrip_and_validation(story_tokens: list[str]) -> None:
    vocabulary = Vocabulary.build(story_tokens, max_size=50)
    assert Vocabulary.from_json(vocabulary.to_json()) == vocabulary
    again = Vocabulary.from_json(vocabulary.to_dict())
    assert again.covered_share == vocabulary.covered_share
    for bad in ([], "cat", ["a", "a"], ["a", 3], ["a", ""], {"symbols": ["a"], "covered_share": 2}):
        with pytest.raises(ModelError):
            Vocabulary.from_json(bad)


def _large_vocabulary(size: int = 20_000) -> Vocabulary:
    rng = random.Random(0)
    real = ["council", "mouse", "general", "consider", "neighbourhood"]
    words = dict.fromkeys(real)
    while len(words) < size:
        length = rng.randint(3, 11)
        words["".join(rng.choice(string.ascii_lowercase) for _ in range(length))] = None
    return Vocabulary(tuple(words))


def test_suggestions_stay_correct_in_a_large_vocabulary() -> None:
    vocabulary = _large_vocabulary()
    assert len(vocabulary) == 20_000
    candidates = [s for s in vocabulary.symbols if s != UNKNOWN]
    rng = random.Random(1)
    typos = ["councel", "mouze", "genral", "considder", "neighborhood"]
    originals = ["council", "mouse", "general", "consider", "neighbourhood"]
    for word in rng.sample([w for w in candidates[5:] if len(w) >= 7], 20):
        i = rng.randrange(1, len(word))
        typos.append(word[:i] + ("a" if word[i] != "a" else "b") + word[i + 1 :])
        originals.append(word)
    for typo, original in zip(typos, originals, strict=True):
        fast = vocabulary.suggest(typo)
        full = difflib.get_close_matches(typo, candidates, n=3, cutoff=0.6)
        assert original in fast, (typo, fast)
        # Nothing better was filtered out: the best match scores as the whole scan's best.
        best = difflib.SequenceMatcher(None, typo, fast[0]).ratio()
        assert best == difflib.SequenceMatcher(None, typo, full[0]).ratio(), (typo, fast, full)
    # A typo in the first letter still finds a frequent word.
    assert "council" in vocabulary.suggest("xouncil")
    assert vocabulary.suggest("qqqqqqqqq") == []


def test_only_the_first_unknown_words_get_suggestions() -> None:
    vocabulary = _large_vocabulary()
    prompt = ["mouze", "councel", "genral", "considder", "zzzzzq"]
    with pytest.raises(UnknownWordsError) as caught:
        vocabulary.encode(prompt)
    assert caught.value.words == tuple(prompt)
    assert "mouse" in caught.value.suggestions["mouze"]
    assert "general" in caught.value.suggestions["genral"]
    assert caught.value.suggestions["considder"] == []
    # The same facts as values, for a reply that names them instead of refusing (issue 23).
    named = vocabulary.unknown_words([*prompt, "mouze"])
    assert [u.word for u in named] == prompt
    assert named[0].suggestions == tuple(caught.value.suggestions["mouze"])
    assert named[3].suggestions == () and vocabulary.lookup("mouze") is None
