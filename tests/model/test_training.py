"""The network and its training: held-out validation, the time budget, the ETA, the
vocabulary cap."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from model import (
    GenerationOptions,
    StoryTooShortError,
    TrainedModel,
    TrainingCancelled,
    TrainingConfig,
    TrainingDiverged,
    generate,
    tokenize,
)
from model.config import LONG_STORY_SYMBOLS, TIED_OUTPUT_SYMBOLS
from model.training import TrainingProgress, train_model
from model.training_data import resolve_config
from model.training_progress import TrainingClock
from tests.model.conftest import ARTICLE_PREFIX, CORPORA

TINY = {"units": 32, "embedding_dim": 16}


@pytest.fixture(scope="module")
def jacobs_tokens() -> list[str]:
    return tokenize((CORPORA / "fables-of-aesop-jacobs.txt").read_text(encoding="utf-8"))


def test_tiny_model_learns_every_learnable_window(tiny_model: TrainedModel) -> None:
    figures = tiny_model.figures
    assert (figures.symbols, figures.windows, figures.learnable_windows) == (204, 201, 199)
    assert figures.learnable_accuracy == 1.0 and figures.stopped == "learned"
    assert figures.accuracy == pytest.approx(199 / 201)
    assert figures.val_accuracy is None and figures.val_perplexity is None
    assert len(figures.history) == figures.epochs
    assert tiny_model.config.units == 32 and tiny_model.config.vocab_size == 112


def test_progress_is_reported_and_picklable(story_tokens: list[str]) -> None:
    reports: list[TrainingProgress] = []
    train_model(
        story_tokens, TINY, TrainingConfig(seed=1, max_epochs=6), on_progress=reports.append
    )
    reports = [r for r in reports if r.step == r.steps_per_epoch]  # drop mid-epoch reports
    assert [r.epoch for r in reports] == [1, 2, 3, 4, 5, 6]
    assert all(r.max_epochs == 6 and r.eta_seconds is not None for r in reports)
    # No held-out split: the end is not estimated, the ETA is the upper bound.
    assert all(r.expected_epochs is None for r in reports)
    assert reports[-1].eta_seconds == 0.0
    assert pickle.loads(pickle.dumps(reports[0])) == reports[0]


def test_cancel_between_steps(story_tokens: list[str]) -> None:
    calls = iter(range(100))
    with pytest.raises(TrainingCancelled):
        train_model(
            story_tokens, TINY, TrainingConfig(seed=1), should_cancel=lambda: next(calls) >= 3
        )


def test_divergence_is_a_clear_error(story_tokens: list[str]) -> None:
    config = TrainingConfig(seed=3, optimizer="rmsprop", learning_rate=1.0, clip_norm=None)
    with pytest.raises(TrainingDiverged, match="learning rate"):
        train_model(story_tokens, TINY, config)


def test_too_short_story(story_tokens: list[str]) -> None:
    with pytest.raises(StoryTooShortError):
        train_model(story_tokens[:3], TINY)
    with pytest.raises(StoryTooShortError):
        train_model(story_tokens[:4], {**TINY, "n_input": 4})


def test_seeded_runs_are_reproducible(story_tokens: list[str]) -> None:
    config = TrainingConfig(seed=21, max_epochs=5)
    a = train_model(story_tokens, TINY, config)
    b = train_model(story_tokens, TINY, config)
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name])


@pytest.mark.parametrize("overrides", [{"n_input": 4}, {"layers": 2}])
def test_other_shapes_learn_the_story(story_tokens: list[str], overrides: dict[str, int]) -> None:
    model = train_model(
        story_tokens, {**TINY, **overrides}, TrainingConfig(seed=3, learning_rate=3e-2)
    )
    assert model.figures.stopped == "learned"
    n = model.config.n_input
    prompt = ["mice", "had", "a", "general"][-n:]
    assert generate(model, prompt)[:17] == ARTICLE_PREFIX


def test_book_validation_best_weights_and_cap(jacobs_tokens: list[str]) -> None:
    # Bound by epochs, not by time, so the figures do not depend on the machine's load.
    reports: list[TrainingProgress] = []
    model = train_model(
        jacobs_tokens,
        {"units": 16, "embedding_dim": 8},
        TrainingConfig(seed=2, batch_size=512, max_epochs=3),
        on_progress=reports.append,
        vocabulary_max_size=500,
    )
    figures = model.figures
    assert model.config.vocab_size == 500 and figures.vocabulary_cap == 500
    assert figures.covered_share is not None and 0.7 < figures.covered_share < 1
    assert figures.stopped == "max_epochs" and figures.epochs == 3
    assert figures.validation_windows and figures.validation_windows > 1000
    assert figures.val_accuracy is not None and 0 < figures.val_accuracy < 1
    assert figures.val_perplexity is not None and 1 < figures.val_perplexity < 500
    losses = [h["val_loss"] for h in figures.history]
    assert figures.val_loss == min(losses) and figures.best_epoch == 1 + losses.index(min(losses))
    assert figures.val_loss is not None
    assert math.exp(figures.val_loss) == pytest.approx(figures.val_perplexity)
    ends = {r.epoch: r for r in reports if r.step == r.steps_per_epoch}
    # One epoch's held-out loss has no gain to fit: no estimate yet, and no ETA.
    assert ends[1].eta_seconds is None and ends[1].expected_epochs is None
    # From epoch 2 on the expected end (here the epoch limit, 3) and an ETA to it.
    assert ends[2].expected_epochs == 3.0
    assert ends[2].eta_seconds is not None and ends[2].eta_seconds >= 0
    assert ends[3].expected_epochs == 3.0 and ends[3].eta_seconds == 0.0
    assert len(generate(model, ["the", "zebra", "said"], GenerationOptions(length=8))) == 8


def test_long_stories_train_a_tied_output_layer_on_wider_word_vectors(
    jacobs_tokens: list[str],
) -> None:
    # Only the size chooses: 64-wide vectors below TIED_OUTPUT_SYMBOLS, 256 from it on.
    assert resolve_config({}, 100, TIED_OUTPUT_SYMBOLS - 1).embedding_dim == 64
    assert resolve_config({}, 100, TIED_OUTPUT_SYMBOLS).embedding_dim == 256
    assert resolve_config({"embedding_dim": 8}, 100, TIED_OUTPUT_SYMBOLS).embedding_dim == 8
    tokens = jacobs_tokens[:LONG_STORY_SYMBOLS]  # a held-out split: the regularized path
    ranks = {}
    for tie_from in (len(tokens), len(tokens) + 1, None):
        training = TrainingConfig(seed=2, max_epochs=1, tie_min_symbols=tie_from)
        model = train_model(tokens, {"units": 24, "embedding_dim": 8}, training)
        assert model.figures.validation_windows
        ranks[tie_from] = np.linalg.matrix_rank(model.weights["dense_kernel"][:, :50])
    # Tied, the output layer is projection @ embedding.T: no wider than the word vectors.
    assert ranks == {len(tokens): 8, len(tokens) + 1: 24, None: 24}


def test_time_budget_stops_training(jacobs_tokens: list[str]) -> None:
    # Only what holds on any machine: the budget, not the epoch limit, ends the training, and
    # it ends soon after the budget (a step or an evaluation may overrun it).
    model = train_model(
        jacobs_tokens[:8000],
        {"units": 16, "embedding_dim": 8},
        TrainingConfig(seed=2, batch_size=256, max_epochs=100_000, max_seconds=1.0),
    )
    figures = model.figures
    assert figures.stopped == "max_seconds" and figures.epochs < 100_000
    assert figures.seconds < 1.0 + 30.0


def test_eta_after_first_epoch_when_epochs_bind(jacobs_tokens: list[str]) -> None:
    # The ETA's accuracy against the wall clock is a benchmark (bench/bench_books.py); here we
    # check what does not depend on the machine's load: every report after the first epoch has
    # an ETA, it reaches zero at the end, and it never exceeds the time budget left.
    reports: list[TrainingProgress] = []
    model = train_model(
        jacobs_tokens[:8000],
        {"units": 16, "embedding_dim": 8},
        TrainingConfig(seed=2, batch_size=256, max_epochs=5, patience=None),
        on_progress=reports.append,
    )
    assert model.figures.stopped == "max_epochs" and model.figures.epochs == 5
    ends = [r for r in reports if r.step == r.steps_per_epoch]
    assert [r.epoch for r in ends] == [1, 2, 3, 4, 5]
    etas = [r.eta_seconds for r in ends]
    assert all(eta is not None and eta >= 0 for eta in etas)
    assert etas[-1] == 0
    assert all((r.eta_seconds or 0) <= 600 - r.elapsed_seconds for r in ends)
    # Without the plateau stop the expected end is the epoch limit.
    assert all(r.expected_epochs == 5.0 for r in ends)


def test_eta_counts_remaining_steps_and_evaluations() -> None:
    clock = TrainingClock()
    clock.record_step(1.0)  # the first step includes tracing and is left out of the rate
    for _ in range(4):
        clock.record_step(0.5)
    clock.eval_seconds, clock.evals = 2.0, 1
    # 2 epochs of 10 steps and 3 steps of this epoch at 0.5 s, plus 3 evaluations at 2 s.
    assert clock.eta(2, 10, 3, budget=1e9) == pytest.approx(23 * 0.5 + 3 * 2.0)
    # A budget-cut run still evaluates its partial epoch after the budget: 4 s + one 2 s eval.
    assert clock.eta(2, 10, 3, budget=clock.elapsed() + 4.0) == pytest.approx(6.0, abs=0.01)


def _held_out_perplexity(model: TrainedModel, tokens: list[str]) -> float:
    from model.generation import NumpyLSTM
    from model.windows import split_indices, window_count

    ids = model.vocabulary.encode(tokens)
    n = model.config.n_input
    _, val_idx = split_indices(window_count(len(ids), n), 0.1, n)
    net = NumpyLSTM(model)
    total = 0.0
    for i in val_idx:
        logits = net.logits(ids[i : i + n]).astype(np.float64)
        top = logits.max()
        total += math.log(np.exp(logits - top).sum()) + top - logits[ids[i + n]]
    return math.exp(total / len(val_idx))


@pytest.mark.parametrize("smooth", [True, False])
def test_held_out_only_words_share_one_smoothed_logit(
    jacobs_tokens: list[str], smooth: bool
) -> None:
    tokens = jacobs_tokens[:3000]
    model = train_model(
        tokens,
        TINY,
        TrainingConfig(seed=3, max_epochs=2, min_symbols_for_validation=2000, smooth_unseen=smooth),
    )
    ids = model.vocabulary.encode(tokens)
    n = model.config.n_input
    from model.windows import split_indices, window_count

    train_idx, _ = split_indices(window_count(len(ids), n), 0.1, n)
    unseen = np.ones(len(model.vocabulary), dtype=bool)
    unseen[np.asarray(ids)[train_idx + n]] = False
    assert 10 < unseen.sum() < 300  # this slice holds out words it never trains on
    kernel, bias = model.weights["dense_kernel"], model.weights["dense_bias"]
    if smooth:
        assert not kernel[:, unseen].any() and np.ptp(bias[unseen]) == 0.0
    else:
        assert kernel[:, unseen].any()
    # The stored held-out figure is what the committed weights give (numpy forward pass).
    assert model.figures.val_perplexity == pytest.approx(
        _held_out_perplexity(model, tokens), rel=1e-3
    )
