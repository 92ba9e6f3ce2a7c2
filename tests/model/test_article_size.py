"""At the article's full size (512 units, 1 and 2 layers) the model learns the story."""

from __future__ import annotations

import pytest

from model import GenerationOptions, TrainedModel, TrainingConfig, generate, tokenize
from model.generation import NumpyLSTM
from model.training import train_model
from tests.model.conftest import ARTICLE_PREFIX, four_grams, jacobs_fable


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
    assert len(generate(model, ["mouse", "mouse", "mouse"])) == 32
    _check_compact_storage(model)


def _check_compact_storage(model: TrainedModel) -> None:
    """The model cache's compact storage (int8 recurrent matrices, float16 for the rest)
    continues the test prompts like float32 (greedy)."""
    compact = NumpyLSTM(model, compact=True)
    prompts = [["had", "a", "general"], ["mouse", "mouse", "mouse"], ["the", "cat"], ["cat"], []]
    for prompt in prompts:
        for options in (GenerationOptions(), GenerationOptions(follow_story=False)):
            assert generate(model, prompt, options, network=compact) == generate(
                model, prompt, options
            )


@pytest.mark.slow
def test_article_story_one_layer_and_raw_fable(story_tokens: list[str]) -> None:
    _check(story_tokens, 1)
    raw = tokenize(jacobs_fable())
    _check(raw, 1)


@pytest.mark.slow
def test_article_story_two_layers(story_tokens: list[str]) -> None:
    _check(story_tokens, 2)
