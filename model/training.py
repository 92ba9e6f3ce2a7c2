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
  for long epochs, about every ``PROGRESS_INTERVAL`` seconds within one.
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
restores the best weights)
and the smoothing of words never seen as a training target (``_unseen_logit``). With a split
the training figures are the running means of the epoch's steps (dropout on), not an exact
pass, and the "learned" stop does not apply.

Stories of ``JIT_MIN_WINDOWS`` training windows or more train XLA-compiled (``TrainingConfig.
xla``), with unrolled LSTMs and hashed dropout masks (:mod:`model.network`), unless seeded: Keras
does not compile under TensorFlow's op determinism (which a seeded run turns on for the rest of
its process), so such a run builds the plain networks it will really run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import keras
import numpy as np
import numpy.typing as npt

from model import backend
from model.config import ModelConfig, TrainingConfig, default_embedding_dim, default_n_input
from model.errors import ModelError, StoryTooShortError, TrainingCancelled, TrainingDiverged
from model.generation import left_context_table, story_index_arrays
from model.network import build_networks, extract_weights
from model.serialization import TrainedModel, TrainingFigures
from model.vocabulary import Vocabulary
from model.windows import (
    achievable_correct,
    batches,
    context_groups,
    even_batch_size,
    split_indices,
    window_count,
)

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 2.0
EXACT_EVALUATION_MAX_WINDOWS = 20_000
JIT_MIN_WINDOWS = 20_000
EVAL_BATCH = 2048
# Without a held-out split: epochs without one more training window right that end a training
# (the "learned" stop is the usual end; this one ends stories it never comes to).
SATURATED_EPOCHS = 20


@dataclass(frozen=True)
class TrainingProgress:
    """One progress report; picklable so it crosses a process boundary."""

    epoch: int  # epochs completed
    max_epochs: int
    loss: float
    accuracy: float
    learnable_accuracy: float
    elapsed_seconds: float
    eta_seconds: float | None
    val_loss: float | None = None
    val_accuracy: float | None = None
    step: int = 0  # steps done in the current epoch (== steps_per_epoch at epoch end)
    steps_per_epoch: int = 0


@dataclass
class _Evaluation:
    loss: float
    accuracy: float
    correct: int


def _resolve_config(
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


def _optimizer(training: TrainingConfig, regularize: bool) -> keras.optimizers.Optimizer:
    decay = training.weight_decay if regularize else None
    if training.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(
            training.learning_rate, clipnorm=training.clip_norm, weight_decay=decay
        )
    return keras.optimizers.Adam(
        training.learning_rate, clipnorm=training.clip_norm, weight_decay=decay
    )


def evaluate(
    network: keras.Model,
    ids: npt.NDArray[np.int32],
    indices: npt.NDArray[np.int64],
    n_input: int,
    unseen: tuple[npt.NDArray[np.bool_], float] | None = None,
) -> _Evaluation:
    """Exact mean cross-entropy and accuracy of ``network`` on the given windows.

    ``unseen`` = (mask over the vocabulary, logit): those logits are replaced first, as
    :func:`_unseen_logit` would set them in the committed weights.
    """
    total_loss = 0.0
    correct = 0
    size = min(EVAL_BATCH, len(indices))
    for x, y in batches(ids, n_input, indices, size):
        if len(y) < size:
            # Pad to the traced shape instead of tracing predict again for the remainder.
            x = np.concatenate([x, np.zeros((size - len(y), n_input), dtype=x.dtype)])
        logits = np.asarray(network.predict_on_batch(x), dtype=np.float64)[: len(y)]
        if unseen is not None:
            logits[:, unseen[0]] = unseen[1]
        top = logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
        total_loss += float((log_z - logits[np.arange(len(y)), y]).sum())
        correct += int((logits.argmax(axis=1) == y).sum())
    n = max(1, len(indices))
    return _Evaluation(loss=total_loss / n, accuracy=correct / n, correct=correct)


def _unseen_share(train_targets: npt.NDArray[np.int32], vocab_size: int) -> float:
    """Good-Turing estimate of the chance that the next word is one never seen as a target."""
    counts = np.bincount(train_targets, minlength=vocab_size)
    singletons = int((counts == 1).sum())
    return min(0.5, max(singletons, 1) / max(1, len(train_targets)))


def _unseen_logit(
    network: keras.Model,
    ids: npt.NDArray[np.int32],
    train_idx: npt.NDArray[np.int64],
    n_input: int,
    mask: npt.NDArray[np.bool_],
    share: float,
) -> float:
    """One logit for every word never seen as a training target, giving them ``share`` in all.

    The softmax pushes such words (held-out-only words of the vocabulary) towards zero
    probability at every step; a constant logit chosen on a sample of training windows
    spreads the Good-Turing share evenly over them, as a smoothed n-gram model would.
    """
    size = min(EVAL_BATCH, len(train_idx))
    sample = train_idx[np.linspace(0, len(train_idx) - 1, size).astype(np.int64)]
    x = ids[sample[:, None] + np.arange(n_input)]
    logits = np.asarray(network.predict_on_batch(x), dtype=np.float64)[:, ~mask]
    top = logits.max(axis=1, keepdims=True)
    log_seen = float(np.mean(np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]))
    return math.log(share / (int(mask.sum()) * (1.0 - share))) + log_seen


class _Clock:
    """Step timing for the ETA: the first step (tracing) is timed apart from the others."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first_step: float | None = None
        self.step_seconds = 0.0
        self.steps = 0
        self.eval_seconds = 0.0
        self.evals = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def record_step(self, seconds: float) -> None:
        if self.first_step is None:
            self.first_step = seconds
        else:
            self.step_seconds += seconds
            self.steps += 1

    def per_step(self) -> float:
        if self.steps:
            return self.step_seconds / self.steps
        return self.first_step or 0.0

    def eta(
        self, epochs_left: float, steps_per_epoch: int, steps_left_in_epoch: int, budget: float
    ) -> float:
        per_eval = self.eval_seconds / self.evals if self.evals else 0.0
        by_epochs = (epochs_left * steps_per_epoch + steps_left_in_epoch) * self.per_step()
        by_epochs += (epochs_left + (1 if steps_left_in_epoch else 0)) * per_eval
        # A run cut by the budget still evaluates its partial epoch after the budget.
        return max(0.0, min(by_epochs, budget - self.elapsed() + per_eval))


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
    data = _prepare(tokens, model_config, training, vocabulary_max_size)
    run = _Run(data, training, on_progress, should_cancel)
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


@dataclass
class _Data:
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


def _prepare(
    tokens: Sequence[str],
    model_config: ModelConfig | Mapping[str, Any] | None,
    training: TrainingConfig,
    vocabulary_max_size: int | None,
) -> _Data:
    vocabulary = Vocabulary.build(tokens, max_size=vocabulary_max_size)
    config = _resolve_config(model_config, max(2, len(vocabulary)), len(tokens))
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
    return _Data(
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


def sequence_batches(
    ids: npt.NDArray[np.int32],
    n_input: int,
    starts: npt.NDArray[np.int64],
    batch_size: int,
    rng: np.random.Generator,
) -> Iterator[tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]]:
    """One epoch of ``(x, y)`` batches of ``[batch, n_input]`` sequences and their next symbols.

    The story is cut into sequences at a random offset (every epoch another), so each
    training target comes about once an epoch, with a context of 1 to ``n_input`` symbols.
    Every batch has ``batch_size`` sequences (the last is topped up), one traced shape.
    """
    offset = int(rng.integers(n_input))
    chosen = starts[(starts - offset) % n_input == 0]
    if len(chosen) == 0:
        chosen = starts
    chosen = chosen[rng.permutation(len(chosen))]
    steps = max(1, -(-len(chosen) // batch_size))
    chosen = np.concatenate([chosen, rng.choice(starts, steps * batch_size - len(chosen))])
    span = np.arange(n_input + 1, dtype=np.int64)
    for step in range(steps):
        rows = ids[chosen[step * batch_size : (step + 1) * batch_size, None] + span]
        yield rows[:, :-1], rows[:, 1:]


def _compile(
    data: _Data, training: TrainingConfig
) -> tuple[keras.Model, keras.Model, keras.optimizers.Optimizer, np.random.Generator]:
    """Seed, build and compile the networks (in this order: the seed decides the weights):
    ``(trainer, predictor, optimizer, rng)``, see :func:`model.network.build_networks`."""
    if training.seed is not None:
        keras.utils.set_random_seed(training.seed)
        backend.make_deterministic()
    rng = np.random.default_rng(training.seed)
    # XLA pays off from JIT_MIN_WINDOWS on; Keras does not compile under TensorFlow's op
    # determinism (seeded runs), so such a run builds the networks it will really run.
    compiled = training.xla and len(data.train_idx) >= JIT_MIN_WINDOWS and backend.compiles_now()
    trainer, network = build_networks(
        data.config,
        dropout=training.dropout if data.use_validation else 0.0,
        all_positions=data.sequence_starts is not None,
        tied=data.use_validation
        and training.tie_min_symbols is not None
        and data.tokens >= training.tie_min_symbols,
        compiled=compiled,
    )
    optimizer = _optimizer(training, data.use_validation)
    trainer.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=compiled,
    )
    # Trace predict before the clock starts, so epoch 1's timing predicts the later ones.
    for n_eval in {min(EVAL_BATCH, len(data.train_idx)), min(EVAL_BATCH, len(data.val_idx))} - {0}:
        network.predict_on_batch(np.zeros((n_eval, data.config.n_input), dtype=np.int32))
    return trainer, network, optimizer, rng


@dataclass
class _EpochSums:
    """Running sums of one epoch's training steps."""

    steps: int = 0
    seen: int = 0
    loss: float = 0.0
    correct: float = 0.0


class _Run:
    """One training's state, advanced an epoch at a time by ``train_model``'s loop."""

    def __init__(
        self,
        data: _Data,
        training: TrainingConfig,
        on_progress: Callable[[TrainingProgress], None] | None,
        should_cancel: Callable[[], bool] | None,
    ) -> None:
        self.data = data
        self.training = training
        self.on_progress = on_progress
        self.should_cancel = should_cancel
        self.trainer, self.network, self.optimizer, self.rng = _compile(data, training)
        if data.sequence_starts is not None:
            # batch_size counts targets (windows), n_input per sequence; an epoch has about
            # one sequence per n_input training windows.
            n = data.config.n_input
            per_epoch = max(1, len(data.sequence_starts) // n)
            self.batch_size = min(max(1, training.batch_size // n), per_epoch)
            self.steps_per_epoch = math.ceil(per_epoch / self.batch_size)
        else:
            self.batch_size = even_batch_size(len(data.train_idx), training.batch_size)
            self.steps_per_epoch = math.ceil(len(data.train_idx) / self.batch_size)
        self.blowup = 3.0 * math.log(len(data.vocabulary)) + 1.0
        self.clock = _Clock()
        self.history: list[dict[str, Any]] = []
        self.best = _BestWeights()
        self.stopped = "max_epochs"
        self.epoch = 0
        self.out_of_time = False
        self.loss = self.accuracy = self.learnable_accuracy = float("nan")
        self.correct = 0
        self.most_correct, self.unchanged = -1, 0
        self.sums = _EpochSums()
        self.last_report = time.perf_counter()

    # -- one epoch -------------------------------------------------------------------------

    def train_epoch(self) -> bool:
        """Train one epoch (or until the budget); False if not one step fitted in the budget."""
        self.epoch += 1
        self.sums = _EpochSums()
        data = self.data
        stream: Iterator[tuple[Any, Any]]
        if data.sequence_starts is not None:
            stream = sequence_batches(
                data.ids, data.config.n_input, data.sequence_starts, self.batch_size, self.rng
            )
        else:
            stream = batches(
                data.ids,
                data.config.n_input,
                data.train_idx,
                self.batch_size,
                self.rng if self.steps_per_epoch > 1 else None,
                fill=True,
            )
        for x, y in stream:
            if self.should_cancel is not None and self.should_cancel():
                raise TrainingCancelled()
            if self.clock.elapsed() >= self.training.max_seconds:
                self.out_of_time = True
                break
            self._step(x, y)
        if self.sums.steps == 0:
            self.epoch -= 1
            return False
        return True

    def _step(self, x: Any, y: Any) -> None:
        t0 = time.perf_counter()
        logs = self.trainer.train_on_batch(x, y, return_dict=True)
        self.clock.record_step(time.perf_counter() - t0)
        step_loss = float(logs["loss"])
        if not math.isfinite(step_loss):
            raise TrainingDiverged(
                "Training diverged: the loss became NaN or infinite. Try a lower learning rate."
            )
        sums = self.sums
        sums.steps += 1
        sums.seen += y.size
        sums.loss += step_loss * y.size
        sums.correct += float(logs["accuracy"]) * y.size
        if (
            self.on_progress is not None
            and sums.steps < self.steps_per_epoch
            and time.perf_counter() - self.last_report >= PROGRESS_INTERVAL
        ):
            self.last_report = time.perf_counter()
            running_acc = sums.correct / sums.seen
            self._report(
                self.epoch - 1, sums.steps, sums.loss / sums.seen, running_acc, float("nan")
            )

    def measure_epoch(self) -> None:
        """The epoch's figures (exact or running), the divergence check, the best weights and
        the history entry; then an end-of-epoch report."""
        data = self.data
        t0 = time.perf_counter()
        if data.exact:
            train_eval = evaluate(self.network, data.ids, data.train_idx, data.config.n_input)
            self.loss, self.accuracy = train_eval.loss, train_eval.accuracy
            self.correct = train_eval.correct
        else:
            self.loss = self.sums.loss / self.sums.seen
            self.accuracy = self.sums.correct / self.sums.seen
            self.correct = round(self.sums.correct)
        self.clock.eval_seconds += time.perf_counter() - t0
        self.clock.evals += 1
        learnable = data.learnable
        self.learnable_accuracy = min(1.0, self.correct / learnable) if learnable else 1.0
        if not math.isfinite(self.loss) or self.loss > self.blowup:
            raise TrainingDiverged(
                f"Training diverged: the loss rose to {self.loss:.3g}. Try a lower learning rate."
            )
        if data.use_validation:
            self.best.consider(self, self.epoch)
        self._record_history()
        self.last_report = time.perf_counter()
        self._report(
            self.epoch, self.steps_per_epoch, self.loss, self.accuracy, self.learnable_accuracy
        )

    def learned(self) -> bool:
        return self.data.exact and self.correct >= self.data.learnable

    def plateaued(self) -> bool:
        """More epochs stopped helping: ``patience`` epochs in a row without lowering the
        held-out loss by ``min_improvement`` (with a split), or ``SATURATED_EPOCHS`` without
        one more training window right (an exact pass, no split)."""
        patience = self.training.patience
        if patience is None:
            return False
        if self.data.use_validation:
            return self.best.stale >= patience
        if self.data.exact:
            if self.correct > self.most_correct:
                self.most_correct, self.unchanged = self.correct, 0
            else:
                self.unchanged += 1
            return self.unchanged >= SATURATED_EPOCHS
        return False

    def _record_history(self) -> None:
        entry: dict[str, Any] = {
            "epoch": self.epoch,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "learnable_accuracy": self.learnable_accuracy,
            "seconds": self.clock.elapsed(),
        }
        val_eval = self.best.val_eval
        if val_eval is not None:
            entry["val_loss"] = val_eval.loss
            entry["val_accuracy"] = val_eval.accuracy
        if self.out_of_time:
            entry["partial"] = True
        self.history.append(entry)

    def _report(
        self, epoch_no: int, step: int, progress_loss: float, progress_acc: float, learn: float
    ) -> None:
        if self.on_progress is None:
            return
        training = self.training
        epochs_left = training.max_epochs - epoch_no
        steps_left = self.steps_per_epoch - step
        eta = self.clock.eta(epochs_left, self.steps_per_epoch, steps_left, training.max_seconds)
        val_eval = self.best.val_eval
        self.on_progress(
            TrainingProgress(
                epoch=epoch_no,
                max_epochs=training.max_epochs,
                loss=progress_loss,
                accuracy=progress_acc,
                learnable_accuracy=learn,
                elapsed_seconds=self.clock.elapsed(),
                eta_seconds=eta,
                val_loss=None if val_eval is None else val_eval.loss,
                val_accuracy=None if val_eval is None else val_eval.accuracy,
                step=step,
                steps_per_epoch=self.steps_per_epoch,
            )
        )

    # -- the end ---------------------------------------------------------------------------

    def restore_best(self) -> None:
        """With a validation split: back to the weights and figures of the best epoch."""
        best = self.best
        if best.weights is None or best.epoch is None:
            return
        self.network.set_weights(best.weights)
        entry = self.history[best.epoch - 1]
        self.loss, self.accuracy = entry["loss"], entry["accuracy"]
        self.learnable_accuracy = entry["learnable_accuracy"]
        best.val_eval = _Evaluation(entry["val_loss"], entry["val_accuracy"], 0)

    def final_weights(self) -> dict[str, Any]:
        data = self.data
        weights = extract_weights(self.network, data.config)
        if data.unseen_mask is not None and self.best.unseen_logit is not None:
            # The constant logit the held-out figures were measured with (see _unseen_logit).
            weights["dense_kernel"][:, data.unseen_mask] = 0.0
            weights["dense_bias"][data.unseen_mask] = self.best.unseen_logit
        weights["left_context"] = left_context_table(
            data.ids, len(data.vocabulary), data.config.n_input
        )
        # The story's n-gram index: generation keeps to the story's own continuations.
        weights.update(story_index_arrays(data.ids, len(data.vocabulary)))
        return weights

    def figures(self, seconds: float, vocabulary_max_size: int | None) -> TrainingFigures:
        data = self.data
        val_eval = self.best.val_eval
        per_step = self.clock.per_step()
        return TrainingFigures(
            symbols=data.tokens,
            windows=data.n_windows,
            learnable_windows=data.learnable,
            epochs=self.epoch,
            seconds=seconds,
            loss=float(self.loss),
            accuracy=float(self.accuracy),
            learnable_accuracy=float(self.learnable_accuracy),
            val_accuracy=None if val_eval is None else float(val_eval.accuracy),
            val_perplexity=None if val_eval is None else float(min(math.exp(val_eval.loss), 1e30)),
            history=self.history,
            val_loss=None if val_eval is None else float(val_eval.loss),
            best_epoch=self.best.epoch,
            stopped=self.stopped,
            training_windows=len(data.train_idx),
            validation_windows=len(data.val_idx),
            vocabulary_size=len(data.vocabulary),
            vocabulary_cap=vocabulary_max_size,
            covered_share=data.vocabulary.covered_share,
            first_step_seconds=self.clock.first_step,
            windows_per_second=(len(data.train_idx) / per_step / self.steps_per_epoch)
            if per_step
            else None,
        )


class _BestWeights:
    """Early stopping on the held-out loss: the best epoch's weights, and the plateau rule."""

    def __init__(self) -> None:
        self.val_eval: _Evaluation | None = None
        self.loss: float | None = None
        self.weights: list[Any] | None = None
        self.epoch: int | None = None
        self.unseen_logit: float | None = None
        self.stale = 0  # epochs in a row that lowered the held-out loss by < min_improvement

    def consider(self, run: _Run, epoch_no: int) -> None:
        data, network = run.data, run.network
        t0 = time.perf_counter()
        unseen: tuple[npt.NDArray[np.bool_], float] | None = None
        if data.unseen_mask is not None:
            logit = _unseen_logit(
                network,
                data.ids,
                data.train_idx,
                data.config.n_input,
                data.unseen_mask,
                data.unseen_share,
            )
            unseen = (data.unseen_mask, logit)
        self.val_eval = evaluate(network, data.ids, data.val_idx, data.config.n_input, unseen)
        run.clock.eval_seconds += time.perf_counter() - t0
        previous = self.loss
        if previous is None or self.val_eval.loss < previous - run.training.min_improvement:
            self.stale = 0
        else:
            self.stale += 1
        if previous is None or self.val_eval.loss < previous:
            self.loss, self.epoch = self.val_eval.loss, epoch_no
            self.unseen_logit = None if unseen is None else unseen[1]
            self.weights = [np.array(w, copy=True) for w in network.get_weights()]
        elif run.training.plateau_factor is not None and self.weights is not None:
            # Overfitting set in: go back to the best weights (smaller steps from there, below).
            network.set_weights(self.weights)
        if self.stale and run.training.plateau_factor is not None and self.weights is not None:
            # The held-out loss stalled (or rose): take smaller steps.
            rate = float(keras.ops.convert_to_numpy(run.optimizer.learning_rate))
            run.optimizer.learning_rate.assign(rate * run.training.plateau_factor)
