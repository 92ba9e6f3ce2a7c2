"""When a training ends (the plateau and saturation stops), the context length chosen per story
size, and the all-positions training of long stories."""

from __future__ import annotations

import numpy as np
import pytest

from model import GenerationOptions, TrainingConfig, generate, tokenize
from model.config import LONG_STORY_N_INPUT, LONG_STORY_SYMBOLS, default_n_input
from model.early_stopping import did_not_help
from model.training import train_model
from model.training_data import _sequence_starts
from model.windows import sequence_batches, split_indices, window_count
from tests.model.conftest import CORPORA

TINY = {"units": 32, "embedding_dim": 16}


@pytest.fixture(scope="module")
def jacobs_tokens() -> list[str]:
    return tokenize((CORPORA / "fables-of-aesop-jacobs.txt").read_text(encoding="utf-8"))


def test_n_input_per_story_size(story_tokens: list[str], jacobs_tokens: list[str]) -> None:
    assert default_n_input(len(story_tokens)) == 3
    assert default_n_input(LONG_STORY_SYMBOLS - 1) == 3
    assert default_n_input(LONG_STORY_SYMBOLS) == LONG_STORY_N_INPUT
    long_story = jacobs_tokens[:LONG_STORY_SYMBOLS]
    # Not asked for: chosen by size; asked for: kept.
    short = train_model(story_tokens, TINY, TrainingConfig(seed=1, max_epochs=1))
    long = train_model(long_story, TINY, TrainingConfig(seed=1, max_epochs=1))
    asked = train_model(long_story, {**TINY, "n_input": 2}, TrainingConfig(seed=1, max_epochs=1))
    assert (short.config.n_input, long.config.n_input) == (3, LONG_STORY_N_INPUT)
    assert asked.config.n_input == 2
    # A long story's model (trained on all positions) continues a prompt shorter than n_input.
    assert len(generate(long, ["the", "fox"], GenerationOptions(length=8))) == 8


def test_sequences_never_train_on_held_out_targets() -> None:
    n_ids, n_input = 3000, 5
    ids = (np.arange(n_ids) * 7 % 101).astype(np.int32)
    train_idx, val_idx = split_indices(window_count(n_ids, n_input), 0.1, n_input)
    assert len(val_idx) > 0
    starts = _sequence_starts(n_ids, train_idx, n_input)
    train_targets = set((train_idx + n_input).tolist())
    expected = [
        s
        for s in range(n_ids - n_input)
        if all(t in train_targets for t in range(s + 1, s + n_input + 1))
    ]
    assert starts.tolist() == expected
    rng = np.random.default_rng(0)
    seen: list[int] = []
    for x, y in sequence_batches(ids, n_input, starts, 16, rng):
        assert x.shape == y.shape == (16, n_input)
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
        seen.extend(y.ravel().tolist())
    # One epoch: about one sequence per n_input training windows (the last batch topped up).
    assert len(starts) <= len(seen) < len(starts) + 16 * n_input


def test_plateau_ends_a_long_story_before_its_budget(jacobs_tokens: list[str]) -> None:
    # Bound by neither epochs nor time: only "more epochs stopped helping" can end it here.
    model = train_model(
        jacobs_tokens[:8000],
        TINY,
        TrainingConfig(seed=2, max_epochs=10_000, max_seconds=3600.0, learning_rate=3e-2),
    )
    figures = model.figures
    assert figures.stopped == "plateau"
    assert figures.best_epoch is not None
    defaults = TrainingConfig()
    assert defaults.patience is not None and figures.epochs < 10_000
    losses = [h["val_loss"] for h in figures.history]
    # The rule replayed (model.early_stopping): an epoch did not help if it lowered the best
    # held-out loss by less than min_improvement, or, right after such an epoch (the rate
    # lowered), by less than rebound_improvement. The last `patience` epochs did not help;
    # the one before them did (or was the first).
    stale = []
    rate_lowered = False
    for i, loss in enumerate(losses):
        best = min(losses[:i]) if i else None
        stale.append(did_not_help(loss, best, rate_lowered, defaults))
        rate_lowered = did_not_help(loss, best, False, defaults)
    n = len(losses)
    assert all(stale[n - defaults.patience :])
    assert not stale[n - defaults.patience - 1]
    assert stale.count(True) >= defaults.patience


def test_a_small_gain_right_after_the_rate_dropped_does_not_help() -> None:
    defaults = TrainingConfig()
    assert defaults.rebound_improvement > defaults.min_improvement
    # Gaining 0.0074 nats (the chat story's epoch 8, 2026-12-07) helps after an ordinary epoch,
    # not right after one that lowered the learning rate; 0.03 helps after either.
    assert not did_not_help(4.9317, 4.9391, False, defaults)
    assert did_not_help(4.9317, 4.9391, True, defaults)
    assert not did_not_help(4.9091, 4.9391, True, defaults)
    assert did_not_help(4.9391, 4.9391, False, defaults)
    assert not did_not_help(9.0, None, True, defaults)  # the first epoch
    # rebound_improvement no lower than min_improvement: the rule before it.
    plain = TrainingConfig(rebound_improvement=0.0)
    assert not did_not_help(4.9317, 4.9391, True, plain)


def test_saturated_accuracy_ends_a_short_story(story_tokens: list[str]) -> None:
    # A model too small to learn every window: the "learned" stop never comes.
    model = train_model(
        story_tokens,
        {"units": 2, "embedding_dim": 2},
        TrainingConfig(seed=1, max_epochs=100_000, max_seconds=3600.0),
    )
    figures = model.figures
    assert figures.stopped == "plateau" and figures.learnable_accuracy < 1.0
    assert figures.epochs < 100_000
