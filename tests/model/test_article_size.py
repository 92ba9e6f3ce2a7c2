"""At the article's full size (512 units, 1 and 2 layers) the model learns the story."""

from __future__ import annotations

import pytest

from model import GenerationOptions, TrainedModel, TrainingConfig, generate, tokenize
from model.forward import NumpyLSTM
from model.training import train_model
from tests.model.conftest import ARTICLE_PREFIX, four_grams, jacobs_fable
from tests.model.test_compact_storage import check_compact_storage


def _check(tokens: list[str], layers: int) -> None:
    model = train_model(tokens, {"layers": layers}, TrainingConfig(seed=1))
    assert model.config.units == 512 and model.config.layers == layers
    assert model.figures.learnable_accuracy == 1.0 and model.figures.stopped == "learned"
    prompt = ["had", "a", "general"]
    out = generate(model, prompt)
    assert out[: len(ARTICLE_PREFIX)] == ARTICLE_PREFIX
    grams = four_grams(tokens)
    full = prompt + out
    assert all(tuple(full[i : i + 4]) in grams for i in range(len(full) - 3))
    # The raw fable has paragraphs: without whole_messages its reply is all 32 symbols.
    whole_length = GenerationOptions(whole_messages=False)
    assert len(generate(model, ["mouse", "mouse", "mouse"], whole_length)) == 32
    check_compact_storage(model)
    # The model cache's network (int8 products, model.quantized) continues the tests' and the
    # latency bench's prompts with float32's symbols; off the story (model/forward.py) only a
    # near-tie may go the other way.
    compact = NumpyLSTM(model, compact=True)
    assert compact.precision == "int8" and compact.weights().layers[0].recurrent_int8 is not None
    for asked in (prompt, ["mouse", "mouse", "mouse"], ["the", "cat"]):
        for options in (GenerationOptions(), GenerationOptions(follow_story=False)):
            expected = generate(model, asked, options)
            made = generate(model, asked, options, network=compact)
            if options.follow_story or made == expected:
                assert made == expected, (asked, options)
            else:
                _check_near_tie(model, asked, expected, made)


# How far apart float32's two logits may be where int8 products choose the other symbol: the
# two-layer article model's one such choice ("mouse mouse mouse" off the story, 2026-12-07) was
# 0.0014 apart, and int8 moved those logits by 0.0023 and 0.0039.
NEAR_TIE_LOGITS = 0.02


def _check_near_tie(
    model: TrainedModel, asked: list[str], expected: list[str], made: list[str]
) -> None:
    """``made`` (int8) leaves ``expected`` (float32) only where float32's logits of the two
    symbols are within NEAR_TIE_LOGITS of each other."""
    at = next(i for i, (a, b) in enumerate(zip(expected, made, strict=False)) if a != b)
    network = NumpyLSTM(model)
    ids = [model.vocabulary.id_of(symbol) for symbol in asked + expected[:at]]
    logits = network.logits(network.padded_context(ids))
    gap = logits[model.vocabulary.id_of(expected[at])] - logits[model.vocabulary.id_of(made[at])]
    assert abs(gap) < NEAR_TIE_LOGITS, (asked, at, expected[at], made[at], gap)


@pytest.mark.slow
def test_article_story_one_layer_and_raw_fable(story_tokens: list[str]) -> None:
    _check(story_tokens, 1)
    raw = tokenize(jacobs_fable())
    _check(raw, 1)


@pytest.mark.slow
def test_article_story_two_layers(story_tokens: list[str]) -> None:
    _check(story_tokens, 2)
