"""Word filters: folding, whole-word and CJK matching, masking stories, and generation that never
says a filtered word (the issue's acceptance figure: 1,000 seeded continuations)."""

from __future__ import annotations

import numpy as np
import pytest

from model import GenerationOptions, ModelConfig, ModelError, TrainedModel, generate, tokenize
from model.filtering import BlockedSymbols, WordFilter, filter_rule, fold, mask_text
from model.serialization import TrainingFigures
from model.vocabulary import Vocabulary
from tests.model.conftest import four_grams

PROMPTS = [["the", "cat"], ["mice", "had"], ["mouse", "mouse", "mouse"], ["the", "bell"]]


def test_fold_is_case_and_accent_insensitive() -> None:
    assert fold("Café") == fold("CAFE") == fold("cafe\u0301") == "cafe"
    assert fold("ﬁne") == "fine"  # NFKD: a ligature is its letters
    assert fold("DON'T") == fold("don’t")
    assert filter_rule("  Naïve ") == ("naive",)
    assert filter_rule("笨蛋") == ("笨", "蛋")
    assert filter_rule("   ") == ()


def test_matches_whole_words_only() -> None:
    words = WordFilter.of(["cat", "ice cream"])
    tokens = tokenize("The CAT, cats, cat-maiden and Cát ate ice cream, not ice.")
    found = [" ".join(tokens[a:b]) for a, b in words.matches(tokens)]
    assert found == ["cat", "cát", "ice cream"]


def test_cjk_filter_matches_inside_runs() -> None:
    words = WordFilter.of(["笨蛋", "死"])
    tokens = tokenize("他是大笨蛋。笨人不死。")
    found = ["".join(tokens[a:b]) for a, b in words.matches(tokens)]
    assert found == ["笨蛋", "死"]


def test_mask_text_cuts_filtered_words_and_keeps_the_rest() -> None:
    text = "The Cat sat.\n\nA cat-maiden saw the CÁT, and 大笨蛋 ran."
    masked, cut = mask_text(text, WordFilter.of(["cat", "笨蛋"]))
    assert cut == ["Cat", "CÁT", "笨蛋"]
    assert masked == "The  sat.\n\nA cat-maiden saw the , and 大 ran."
    assert mask_text(text, WordFilter.of(["dog"])) == (text, [])
    assert mask_text(text, WordFilter()) == (text, [])


def _random_model(symbols: list[str], favourite: str, n_input: int = 3) -> TrainedModel:
    """A real (untrained) numpy model whose dense bias makes ``favourite`` the likeliest next
    symbol everywhere: the filter has to overrule the network's first choice every time."""
    rng = np.random.default_rng(0)
    v, e, u = len(symbols), 8, 16
    config = ModelConfig(vocab_size=v, n_input=n_input, units=u, embedding_dim=e)
    weights = {
        "embedding": rng.normal(0, 0.3, (v, e)).astype(np.float32),
        "lstm0_kernel": rng.normal(0, 0.3, (e, 4 * u)).astype(np.float32),
        "lstm0_recurrent": rng.normal(0, 0.3, (u, 4 * u)).astype(np.float32),
        "lstm0_bias": np.zeros(4 * u, np.float32),
        "dense_kernel": rng.normal(0, 0.1, (u, v)).astype(np.float32),
        "dense_bias": np.zeros(v, np.float32),
        "left_context": np.full((v, n_input - 1), -1, np.int32),
    }
    weights["dense_bias"][symbols.index(favourite)] = 8.0
    figures = TrainingFigures(0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)
    return TrainedModel(config, Vocabulary(tuple(symbols)), weights, figures)


def test_filtered_symbol_is_replaced_by_the_next_best() -> None:
    symbols = ["a", "b", "c", "Bad", "bäd", "."]
    model = _random_model(symbols, "bäd")
    plain = GenerationOptions(length=20, follow_story=False, no_repeat_ngram=None)
    assert "bäd" in generate(model, ["a"], plain)
    blocked = BlockedSymbols(model.vocabulary.symbols, WordFilter.of(["BAD"]))
    assert blocked.always == {3, 4}  # both spellings fold to the filter
    out = generate(model, ["a"], plain, blocked=blocked)
    assert len(out) == 20 and not {"Bad", "bäd"} & set(out)


def test_cjk_sequence_filter_bans_completing_the_word() -> None:
    symbols = ["他", "是", "大", "笨", "蛋", "。"]
    model = _random_model(symbols, "蛋")
    plain = GenerationOptions(length=12, follow_story=False, no_repeat_ngram=None)
    blocked = BlockedSymbols(model.vocabulary.symbols, WordFilter.of(["笨蛋"]))
    assert not blocked.always and blocked.banned([3]) == {4} and blocked.banned([4]) == set()
    out = generate(model, ["大", "笨"], plain, blocked=blocked)
    assert out[0] != "蛋" and "笨蛋" not in "".join(["笨", *out])
    # Only completing the word is banned, not the character.
    assert generate(model, ["大", "是"], plain, blocked=blocked)[0] == "蛋"


def test_a_filter_banning_every_word_is_an_error_not_an_empty_reply() -> None:
    model = _random_model(["x", "y"], "x")
    blocked = BlockedSymbols(model.vocabulary.symbols, WordFilter.of(["x", "y"]))
    with pytest.raises(ModelError, match="filtered"):
        generate(model, ["x"], GenerationOptions(length=3), blocked=blocked)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_filtered_word_never_in_1000_seeded_continuations(
    tiny_model: TrainedModel, story_tokens: list[str], temperature: float
) -> None:
    """The acceptance figure: first shown to produce the word unfiltered, then never."""
    word = "cat"
    options = [
        GenerationOptions(length=32, temperature=temperature, seed=seed, top_p=0.9)
        for seed in range(250)
    ]
    runs = [(prompt, option) for prompt in PROMPTS for option in options]
    assert len(runs) == 1000
    plain = [generate(tiny_model, prompt, option) for prompt, option in runs]
    # Measured: 750 (greedy: 3 of the 4 prompts lead to it) and 657 (sampled) of 1,000.
    assert sum(word in out for out in plain) >= (750 if temperature == 0.0 else 500)
    blocked = BlockedSymbols(tiny_model.vocabulary.symbols, WordFilter.of(["CAT"]))
    filtered = [generate(tiny_model, prompt, option, blocked=blocked) for prompt, option in runs]
    assert all(word not in out and len(out) == 32 for out in filtered)
    # The story still leads: the model picks the next best word and reads as the story
    # ("... outwit their common enemy, the case. you will all agree, said he ...").
    story = four_grams(story_tokens)
    shares = [len(four_grams(out) & story) / len(four_grams(out)) for out in filtered]
    assert float(np.mean(shares)) >= 0.8
