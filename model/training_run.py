"""One training's state (:class:`TrainingRun`), advanced an epoch at a time by
:func:`model.training.train_model`: the networks built and compiled, the training steps, each
epoch's figures and reports, the stopping rules, and the trained weights and figures at the
end."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from model import backend
from model.config import TrainingConfig
from model.early_stopping import BestWeights
from model.errors import TrainingCancelled, TrainingDiverged
from model.evaluation import UNSEEN_SAMPLE, Evaluation, eval_batch_size, evaluate
from model.generation import left_context_table
from model.network import build_networks, extract_weights
from model.serialization import TrainingFigures
from model.story_index import story_index_arrays
from model.training_data import TrainingData
from model.training_estimate import expected_epochs
from model.training_progress import PROGRESS_INTERVAL, TrainingClock, TrainingProgress
from model.windows import batches, even_batch_size, sequence_batches

JIT_MIN_WINDOWS = 20_000
# Without a held-out split: epochs without one more training window right that end a training
# (the "learned" stop is the usual end; this one ends stories it never comes to).
SATURATED_EPOCHS = 20


def _optimizer(training: TrainingConfig, regularize: bool) -> keras.optimizers.Optimizer:
    decay = training.weight_decay if regularize else None
    if training.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(
            training.learning_rate, clipnorm=training.clip_norm, weight_decay=decay
        )
    return keras.optimizers.Adam(
        training.learning_rate, clipnorm=training.clip_norm, weight_decay=decay
    )


def _compile(
    data: TrainingData, training: TrainingConfig
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
    shapes = {eval_batch_size(len(data.val_idx))} if data.use_validation else set()
    if data.exact:
        shapes.add(eval_batch_size(len(data.train_idx)))
    if data.unseen_mask is not None:
        shapes.add(min(UNSEEN_SAMPLE, len(data.train_idx)))
    for n_eval in shapes - {0}:
        network.predict_on_batch(np.zeros((n_eval, data.config.n_input), dtype=np.int32))
    return trainer, network, optimizer, rng


@dataclass
class _EpochSums:
    """Running sums of one epoch's training steps."""

    steps: int = 0
    seen: int = 0
    loss: float = 0.0
    correct: float = 0.0


class TrainingRun:
    """One training's state, advanced an epoch at a time by ``train_model``'s loop."""

    def __init__(
        self,
        data: TrainingData,
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
        self.clock = TrainingClock()
        self.history: list[dict[str, Any]] = []
        self.best = BestWeights(data, training, self.network, self.optimizer, self.clock)
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
            self.best.consider(self.epoch)
        self._record_history()
        self.clock.end_epoch()
        self.last_report = time.perf_counter()
        self._report(
            self.epoch, self.steps_per_epoch, self.loss, self.accuracy, self.learnable_accuracy
        )

    def learned(self) -> bool:
        return self.data.exact and self.correct >= self.data.learnable

    def plateaued(self) -> bool:
        """More epochs stopped helping: ``patience`` epochs in a row that did not help (with a
        split: :mod:`model.early_stopping`), or ``SATURATED_EPOCHS`` without
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
        steps_left = self.steps_per_epoch - step
        expected = self._expected_epochs(epoch_no, step)
        eta: float | None = None
        if expected is not None or not self.data.use_validation:
            # To the expected end; without a split (whose "learned" stop is not estimated) to
            # the epoch limit, an upper bound. Whole epochs after the one in progress:
            end = training.max_epochs if expected is None else expected
            epochs_left = max(0.0, end - epoch_no - (1 if steps_left else 0))
            eta = self.clock.eta(
                epochs_left, self.steps_per_epoch, steps_left, training.max_seconds
            )
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
                expected_epochs=expected,
            )
        )

    def _expected_epochs(self, epoch_no: int, step: int) -> float | None:
        """With a held-out split, the epoch count the plateau stop is expected at
        (:mod:`model.training_estimate`) after ``epoch_no`` epochs and ``step`` steps of the
        next, within the epochs the budget holds; None before the estimate or without a split."""
        if not self.data.use_validation:
            return None
        training = self.training
        done = epoch_no + step / self.steps_per_epoch
        return expected_epochs(
            [entry["val_loss"] for entry in self.history[:epoch_no]],
            min_improvement=training.min_improvement,
            patience=training.patience,
            max_epochs=training.max_epochs,
            rebound_improvement=training.rebound_improvement
            if training.plateau_factor is not None
            else 0.0,
            budget_epochs=done
            + self.clock.epochs_within(training.max_seconds, self.steps_per_epoch),
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
        best.val_eval = Evaluation(entry["val_loss"], entry["val_accuracy"], 0)

    def final_weights(self) -> dict[str, Any]:
        data = self.data
        weights = extract_weights(self.network, data.config)
        if data.unseen_mask is not None and self.best.unseen_logit is not None:
            # The constant logit the held-out figures were measured with
            # (model.evaluation.unseen_logit).
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
