"""The story as training data (:func:`prepare_training_data`): the model's config chosen by
the story's size, the vocabulary, the ids, the training/held-out split, what can be learned and
the words never seen as a training target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from model.config import ModelConfig, TrainingConfig, default_embedding_dim, default_n_input
from model.errors import ModelError, StoryTooShortError
from model.vocabulary import Vocabulary
from model.windows import achievable_correct, context_groups, split_indices, window_count

EXACT_EVALUATION_MAX_WINDOWS = 20_000


@dataclass
class TrainingData:
    """The story as training windows: vocabulary, ids, the split and what can be learned."""

    tokens: int
    config: ModelConfig
    vocabulary: Vocabulary
    ids: npt.NDArray[np.int32]
    n_windows: int
    train_idx: npt.NDArray[np.int64]
    val_idx: npt.NDArray[np.int64]
    use_validation: bool
    learnable: int
    exact: bool  # an exact pass over the training windows after each epoch
    unseen_mask: npt.NDArray[np.bool_] | None  # words never a training target (smoothed)
    unseen_share: float
    # Training on every position of sequences of n_input symbols (TrainingConfig.all_positions):
    # the start of every sequence whose targets are all training targets; None = windows.
    sequence_starts: npt.NDArray[np.int64] | None = None


def resolve_config(
    model_config: ModelConfig | Mapping[str, Any] | None, vocab_size: int, symbols: int
) -> ModelConfig:
    """The model's config; an n_input or embedding_dim not given (a mapping without it, or
    None) is chosen by the story's size (:func:`model.config.default_n_input`,
    :func:`model.config.default_embedding_dim`)."""
    if isinstance(model_config, ModelConfig):
        return replace(model_config, vocab_size=vocab_size)
    values = {
        k: v for k, v in dict(model_config or {}).items() if k != "vocab_size" and v is not None
    }
    values.setdefault("n_input", default_n_input(symbols))
    values.setdefault("embedding_dim", default_embedding_dim(symbols))
    try:
        return ModelConfig(vocab_size=vocab_size, **values)
    except TypeError as exc:
        raise ModelError(f"Unknown model option: {exc}") from exc


def prepare_training_data(
    tokens: Sequence[str],
    model_config: ModelConfig | Mapping[str, Any] | None,
    training: TrainingConfig,
    vocabulary_max_size: int | None,
) -> TrainingData:
    vocabulary = Vocabulary.build(tokens, max_size=vocabulary_max_size)
    config = resolve_config(model_config, max(2, len(vocabulary)), len(tokens))
    if len(tokens) < config.n_input + 1:
        raise StoryTooShortError(len(tokens), config.n_input + 1)
    if len(vocabulary) < 2:
        # A one-word story: the model needs at least two classes to mean anything.
        vocabulary = Vocabulary((*vocabulary.symbols, "<unk>"), covered_share=1.0)
    ids = np.asarray(vocabulary.encode(tokens), dtype=np.int32)
    n_windows = window_count(len(ids), config.n_input)

    use_validation = (
        len(tokens) >= training.min_symbols_for_validation and training.validation_fraction > 0
    )
    if use_validation:
        train_idx, val_idx = split_indices(n_windows, training.validation_fraction, config.n_input)
    else:
        train_idx, val_idx = np.arange(n_windows, dtype=np.int64), np.zeros(0, dtype=np.int64)

    groups, n_groups = context_groups(ids, config.n_input)
    targets = ids[config.n_input :]
    learnable = achievable_correct(groups[train_idx], targets[train_idx], n_groups)
    # With a held-out split the "learned" stop never fires in practice, and an exact pass over
    # the training windows costs a third of each epoch (bench_books.py: Jacobs 2.4 of 7.0 s).
    exact = not use_validation and len(train_idx) <= EXACT_EVALUATION_MAX_WINDOWS
    unseen_mask: npt.NDArray[np.bool_] | None = None
    unseen_share = 0.0
    if use_validation and training.smooth_unseen:
        is_target = np.zeros(len(vocabulary), dtype=np.bool_)
        is_target[targets[train_idx]] = True
        if not is_target.all():
            unseen_mask = ~is_target
            unseen_share = _unseen_share(targets[train_idx], len(vocabulary))
    sequence_starts = None
    if use_validation and training.all_positions:
        sequence_starts = _sequence_starts(len(ids), train_idx, config.n_input)
    return TrainingData(
        tokens=len(tokens),
        config=config,
        vocabulary=vocabulary,
        ids=ids,
        n_windows=n_windows,
        train_idx=train_idx,
        val_idx=val_idx,
        use_validation=use_validation,
        learnable=learnable,
        exact=exact,
        unseen_mask=unseen_mask,
        unseen_share=unseen_share,
        sequence_starts=sequence_starts,
    )


def _unseen_share(train_targets: npt.NDArray[np.int32], vocab_size: int) -> float:
    """Good-Turing estimate of the chance that the next word is one never seen as a target."""
    counts = np.bincount(train_targets, minlength=vocab_size)
    singletons = int((counts == 1).sum())
    return min(0.5, max(singletons, 1) / max(1, len(train_targets)))


def _sequence_starts(
    n_ids: int, train_idx: npt.NDArray[np.int64], n_input: int
) -> npt.NDArray[np.int64]:
    """Starts ``s`` of the sequences ``ids[s : s + n_input]`` whose targets
    ``ids[s + 1 : s + n_input + 1]`` are all targets of training windows (none held out)."""
    is_target = np.zeros(n_ids + 1, dtype=np.int64)
    is_target[train_idx + n_input] = 1
    ok = np.concatenate([[0], np.cumsum(is_target)])
    starts = np.arange(max(0, n_ids - n_input), dtype=np.int64)
    return starts[ok[starts + n_input + 1] - ok[starts + 1] == n_input]
