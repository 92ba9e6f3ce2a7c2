"""The chat rows' figures of bench/bench_continuation_quality.py, on hand-made replies."""

from __future__ import annotations

import numpy as np
import pytest

from bench.chat_quality import (
    MarkovSampler,
    history_slice,
    lines_of,
    realism_accuracy,
    repeated_lines,
    shared_ngram_shares,
    shared_ngrams,
    story_bigrams,
    verbatim_copies,
)


def _symbols(text: str) -> list[str]:
    return text.split(" ")


def test_lines_split_on_the_paragraph_symbol_and_drop_empty_ones() -> None:
    reply = ["\n", "a", "b", "\n", "\n", "c", "\n", "d"]
    assert lines_of(reply) == [("a", "b"), ("c",), ("d",)]


def test_shared_four_grams_count_only_other_replies() -> None:
    one = _symbols("a b c d e")  # 4-grams abcd, bcde
    two = _symbols("x b c d e")  # xbcd, bcde
    three = _symbols("p q r s p q r s")  # pqrs, qrsp, rspq (pqrs twice: its own, not shared)
    assert shared_ngram_shares([one, two, three]) == [0.5, 0.5, 0.0]
    assert shared_ngrams([one, two, three]) == pytest.approx(1 / 3)
    # A reply too short for a 4-gram is left out of the mean.
    assert shared_ngrams([one, two, ["a", "b"]]) == pytest.approx(0.5)
    assert shared_ngrams([one, one]) == 1.0


def test_repeated_lines_are_lines_of_another_reply() -> None:
    one = _symbols("hi there \n how are you \n hi there")
    two = _symbols("how are you \n fine")
    # Reply one: "hi there" twice (only its own), "how are you" (also in two); two: both
    # of its lines, "how are you" repeated. 2 of the 5 lines repeat another reply's line.
    assert repeated_lines([one, two]) == pytest.approx(2 / 5)
    assert repeated_lines([one]) == 0.0


def test_story_bigrams_include_the_pair_from_the_prompt() -> None:
    story = {("my", "dog"), ("dog", "ate"), ("ate", "it")}
    # Pairs: (dog, ate) yes (the prompt's last word and the first generated one), (ate, it)
    # yes; then (x, y) no.
    assert story_bigrams([["my", "dog"], ["x"]], [["ate", "it"], ["y"]], story) == pytest.approx(
        2 / 3
    )


def test_verbatim_copies_count_lines_of_six_words_or_more() -> None:
    messages = {tuple(_symbols("i like my dog a lot")), tuple(_symbols("hi"))}
    reply = _symbols(
        "hi \n i like my dog a lot \n i like my dog a lot too \n ok , sure , fine , yes"
    )
    # Lines of >= 6 words: the copy and the one with "too" (the last has 7 symbols, 4 words).
    assert verbatim_copies([reply], messages) == (0.5, 2)
    assert verbatim_copies([["hi"]], messages) == (0.0, 0)


def test_history_slice_keeps_whole_messages_up_to_the_symbol_budget() -> None:
    messages = ["hello there", "how are you ?", "fine"]
    # "hello there" = 2 symbols; + paragraph + 4 = 7; + paragraph + 1 = 9.
    assert history_slice(messages, 7) == (messages[:2], messages[2:])
    assert history_slice(messages, 6) == (messages[:1], messages[1:])
    assert history_slice(messages, 9) == (messages, [])


def _lines(words: list[str], count: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[words[int(i)] for i in rng.integers(0, len(words), 6)] for _ in range(count)]


def test_the_classifier_separates_disjoint_words_and_not_one_distribution() -> None:
    real = _lines([f"r{i}" for i in range(30)], 400, seed=1)
    fake = _lines([f"f{i}" for i in range(30)], 400, seed=2)
    assert realism_accuracy(real, fake, seed=3) == (1.0, 200)
    same = [f"w{i}" for i in range(30)]
    accuracy, per_side = realism_accuracy(_lines(same, 400, 4), _lines(same, 400, 5), seed=3)
    assert per_side == 200
    assert 0.4 <= accuracy <= 0.6


def test_the_classifier_uses_as_many_lines_of_each_side() -> None:
    real = _lines(["a", "b"], 100, seed=1)
    fake = _lines(["c", "d"], 10, seed=2)
    assert realism_accuracy(real, fake, seed=0) == (1.0, 5)
    with pytest.raises(ValueError):
        realism_accuracy(real, fake[:1], seed=0)


def test_the_markov_sampler_follows_observed_pairs_only() -> None:
    story = _symbols("a b c \n a b d \n x y z")
    sampler = MarkovSampler(story)
    for seed in range(20):
        out = sampler.continue_prompt(["a", "b"], 1, seed=seed)
        assert out[0] in ("c", "d")
    # "b c" is followed only by "\n", then "c \n" only by "a", "\n a" only by "b".
    assert sampler.continue_prompt(["b", "c"], 3, seed=0) == ["\n", "a", "b"]
    # Unknown words are skipped; a context never seen backs off to the last word, then to all.
    assert sampler.continue_prompt(["zebra", "y"], 1, seed=0) == ["z"]
    assert sampler.continue_prompt(["zebra"], 1, seed=0)[0] in set(story)
