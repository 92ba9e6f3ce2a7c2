"""Train the story network (Keras 3; imported by training workers only).

Signature::

    train_model(
        tokens: Sequence[str],
        model_config: ModelConfig | Mapping[str, Any] | None = None,
        training: TrainingConfig | None = None,
        *,
        on_progress: Callable[[TrainingProgress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        vocabulary_max_size: int | None = None,
    ) -> TrainedModel

* ``tokens``: the story, already tokenized (:func:`model.tokenizer.tokenize`).
* ``model_config``: a ModelConfig (its ``vocab_size`` is replaced by the real vocabulary size)
  or a mapping of ModelConfig overrides such as ``{"layers": 2, "n_input": 4}``; None = defaults.
  Without an n_input or embedding_dim the story's size chooses them
  (:func:`model.config.default_n_input`, :func:`model.config.default_embedding_dim`).
* ``training``: TrainingConfig; None = defaults (Adam 1e-2, batches of up to 256 windows).
* ``on_progress``: called with a picklable :class:`TrainingProgress` after every epoch and,
  for long epochs, about every ``model.training_progress.PROGRESS_INTERVAL`` seconds within one.
  With a held-out split its ``expected_epochs`` is where the plateau stop is expected (from
  epoch 2 on, :mod:`model.training_estimate`) and ``eta_seconds`` the time to it; without one
  ``eta_seconds`` is an upper bound (the epoch limit or the time budget).
* ``should_cancel``: polled between training steps; True raises TrainingCancelled.
* ``vocabulary_max_size``: cap of the vocabulary (rare words become ``<unk>``).

Raises StoryTooShortError (fewer than ``n_input + 1`` symbols), TrainingCancelled,
TrainingDiverged (loss NaN/inf, or above 3x the untrained loss) and ModelError.

Training stops when every learnable training window is predicted right, after
``max_epochs``, or when ``max_seconds`` of training have passed (checked between steps, so
the budget holds within one step). With a validation split (stories of at least
``min_symbols_for_validation`` symbols) the weights of the epoch with the lowest held-out loss
are the ones returned, and held-out accuracy and perplexity are reported. Only then the
regularization of :mod:`model.config` applies: dropout, the tied output layer (from
``tie_min_symbols`` symbols on), optional weight decay, the
plateau rule (a held-out loss that stalls lowers the learning rate; one that rises first
restores the best weights) and the smoothing of words never seen as a training target
(:func:`model.evaluation.unseen_logit`). With a split the training figures are the running
means of the epoch's steps (dropout on), not an exact pass, and the "learned" stop does not
apply.

Stories of ``model.training_run.JIT_MIN_WINDOWS`` training windows or more train XLA-compiled
(``TrainingConfig.xla``), with unrolled LSTMs and hashed dropout masks (:mod:`model.network`),
unless seeded: Keras does not compile under TensorFlow's op determinism (which a seeded run
turns on for the rest of its process), so such a run builds the plain networks it will really
run.

The parts: :mod:`model.training_data` (the story as training windows and its split),
:mod:`model.training_run` (one training, an epoch at a time), :mod:`model.evaluation`
(exact figures, the unseen words' logit), :mod:`model.early_stopping` (the best epoch's
weights, the plateau rule), :mod:`model.training_progress` (reports and their ETA),
:mod:`model.training_estimate` (the epoch the plateau stop is expected at).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from model.config import ModelConfig, TrainingConfig
from model.serialization import TrainedModel
from model.training_data import prepare_training_data
from model.training_progress import TrainingProgress
from model.training_run import TrainingRun

__all__ = ["TrainingProgress", "train_model"]

logger = logging.getLogger(__name__)


def train_model(
    tokens: Sequence[str],
    model_config: ModelConfig | Mapping[str, Any] | None = None,
    training: TrainingConfig | None = None,
    *,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    vocabulary_max_size: int | None = None,
) -> TrainedModel:
    """Train on ``tokens`` and return the trained model (see the module docstring)."""
    training = training or TrainingConfig()
    data = prepare_training_data(tokens, model_config, training, vocabulary_max_size)
    run = TrainingRun(data, training, on_progress, should_cancel)
    while run.epoch < training.max_epochs and not run.out_of_time:
        if not run.train_epoch():
            break  # the budget ran out before the epoch's first step
        run.measure_epoch()
        if run.learned():
            run.stopped = "learned"
            break
        if run.plateaued():
            run.stopped = "plateau"
            break
    if run.out_of_time or (
        run.stopped not in ("learned", "plateau") and run.epoch < training.max_epochs
    ):
        run.stopped = "max_seconds"
    seconds = run.clock.elapsed()
    run.restore_best()
    model = TrainedModel(
        config=data.config,
        vocabulary=data.vocabulary,
        weights=run.final_weights(),
        figures=run.figures(seconds, vocabulary_max_size),
    )
    logger.info(
        "trained %d symbols: %d epochs, %.1f s, learnable accuracy %.3f (%s)",
        len(tokens),
        run.epoch,
        seconds,
        run.learnable_accuracy,
        run.stopped,
    )
    return model
