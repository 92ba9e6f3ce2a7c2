"""The model cache's compact storage (model.forward, ``NumpyLSTM(compact=True)``) makes the
same first choices as float32 on the story's own windows, for every model shape the product
trains: one and two layers, output layer untied and tied (long stories tie theirs)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from model import GenerationOptions, TrainedModel, TrainingConfig, generate, tokenize
from model.config import LONG_STORY_SYMBOLS
from model.forward import CHECKED_SYMBOLS, NumpyLSTM
from model.training import train_model

CORPORA = Path(__file__).resolve().parents[2] / "data" / "corpora"
# name -> layers, tied. Tied output layers come with long stories (a held-out split).
SHAPES = {
    "one layer": (1, False),
    "two layers": (2, False),
    "tied": (1, True),
    "tied, two layers": (2, True),
}


@pytest.fixture(scope="module", params=list(SHAPES))
def shaped_model(request: pytest.FixtureRequest, story_tokens: list[str]) -> TrainedModel:
    layers, tied = SHAPES[request.param]
    network = {"units": 32, "embedding_dim": 16, "layers": layers}
    if not tied:
        training = TrainingConfig(seed=3, learning_rate=3e-2, max_epochs=60)
        return train_model(story_tokens, network, training)
    jacobs = tokenize((CORPORA / "fables-of-aesop-jacobs.txt").read_text(encoding="utf-8"))
    tokens = jacobs[:LONG_STORY_SYMBOLS]
    model = train_model(tokens, network, TrainingConfig(seed=3, max_epochs=3, tie_min_symbols=0))
    # Tied, the output layer is projection @ embedding.T: no wider than the word vectors.
    assert np.linalg.matrix_rank(model.weights["dense_kernel"][:, :50]) == 16
    return model


def _story_windows(model: TrainedModel) -> set[tuple[int, ...]]:
    story = model.weights["story"].tolist()
    n = model.config.n_input
    return {tuple(story[i : i + n]) for i in range(len(story) - n + 1)}


def check_compact_storage(model: TrainedModel) -> None:
    """The model cache's storage of ``model`` makes float32's choices on the story's windows,
    and so continues prompts that are story windows like float32 while it stays on them."""
    full = NumpyLSTM(model)
    compact = NumpyLSTM(model, compact=True)
    choices = full.story_choices()
    story, n = len(model.weights["story"]), model.config.n_input
    # Every window of a short story; of a long one, those of 4 evenly spaced runs of 128.
    checked = story - n + 1 if story <= CHECKED_SYMBOLS else CHECKED_SYMBOLS // 128 * (129 - n)
    assert len(choices) == checked
    assert compact.story_choices() == choices

    windows = _story_windows(model)
    ids = model.weights["story"].tolist()
    same_symbols = 0
    # The repeat guard off: a choice it sets aside is a second choice, which is not checked.
    for options in (
        GenerationOptions(no_repeat_ngram=0),
        GenerationOptions(no_repeat_ngram=0, follow_story=False),
    ):
        for start in np.linspace(0, story - n - 1, 12).astype(int).tolist():
            prompt = model.vocabulary.decode(ids[start : start + n])
            expected = generate(model, prompt, options)
            got = generate(model, prompt, options, network=compact)
            compact.release()  # the float32 copies are made again on the next use
            context = model.vocabulary.encode([*prompt, *expected])
            # The symbols chosen on a story window: up to the first window outside the story.
            same = next(
                (k for k in range(len(expected)) if tuple(context[k : k + n]) not in windows),
                len(expected),
            )
            assert got[:same] == expected[:same], (prompt, options)
            same_symbols += same
    assert same_symbols > 50


def test_compact_storage_makes_float32_choices(shaped_model: TrainedModel) -> None:
    check_compact_storage(shaped_model)


def test_a_choice_int8_changes_keeps_the_model_wider(tiny_model: TrainedModel) -> None:
    """Two symbols brought within 1e-4 of each other on the story's first window: int8's
    rounding (~1e-3 on a logit) decides between them, so one of the two orders is flipped by
    it, and that model must be stored wider (float16 or float32) with float32's choices."""
    stepper = NumpyLSTM(tiny_model).stepper()
    for symbol in tiny_model.weights["story"][: tiny_model.config.n_input]:
        stepper.feed(int(symbol))
    logits = stepper.logits()
    first, second = (int(i) for i in np.argsort(-logits)[:2])
    precisions = []
    for margin in (1e-4, -1e-4):
        bias = tiny_model.weights["dense_bias"].copy()
        bias[second] += logits[first] - logits[second] - margin
        model = replace(tiny_model, weights={**tiny_model.weights, "dense_bias": bias})
        full = NumpyLSTM(model)
        tied = full.stepper()
        for symbol in model.weights["story"][: model.config.n_input]:
            tied.feed(int(symbol))
        gap = tied.logits()[[first, second]]
        assert 0 < abs(gap[0] - gap[1]) < 1e-3 and (gap[0] > gap[1]) == (margin > 0)
        compact = NumpyLSTM(model, compact=True)
        assert compact.story_choices() == full.story_choices()
        precisions.append(compact.precision)
    assert any(p != "int8" for p in precisions), precisions
