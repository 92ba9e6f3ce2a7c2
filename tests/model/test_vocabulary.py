"""Issue 2, point 2 (vocabulary) and issue 6 (vocabulary cap)."""

from __future__ import annotations

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
