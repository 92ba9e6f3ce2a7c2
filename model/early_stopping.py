"""Early stopping on the held-out loss (:class:`BestWeights`): the best epoch's weights and
the plateau rule (a held-out loss that stalls lowers the learning rate; one that rises first
restores the best weights).

The stop counts epochs in a row that did not help (``BestWeights.stale``): one that lowered the
best held-out loss by less than ``TrainingConfig.min_improvement``, or, right after such an
epoch (the rate just lowered), by less than ``TrainingConfig.rebound_improvement``. The epoch
after a lowered rate often gains once more; when it gained less than that, the epochs after it
never found a lower held-out loss in 19 recorded trainings (2026-12-07, bench/RESULTS.md, issue
23), so it no longer buys ``patience`` more."""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np
import numpy.typing as npt

from model.config import TrainingConfig
from model.evaluation import Evaluation, evaluate, unseen_logit
from model.training_data import TrainingData
from model.training_progress import TrainingClock


def did_not_help(
    loss: float, best: float | None, rate_lowered: bool, training: TrainingConfig
) -> bool:
    """Whether an epoch whose held-out loss is ``loss`` counts toward the stop, after the best
    loss so far ``best`` (None: the first epoch) and an epoch that lowered the learning rate
    (``rate_lowered``) or not."""
    if best is None:
        return False
    needed = training.min_improvement
    if rate_lowered:
        needed = max(needed, training.rebound_improvement)
    return not loss < best - needed


class BestWeights:
    """Early stopping on the held-out loss: the best epoch's weights, and the plateau rule."""

    def __init__(
        self,
        data: TrainingData,
        training: TrainingConfig,
        network: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        clock: TrainingClock,
    ) -> None:
        self.data, self.training, self.clock = data, training, clock
        self.network, self.optimizer = network, optimizer
        self.val_eval: Evaluation | None = None
        self.loss: float | None = None
        self.weights: list[Any] | None = None
        self.epoch: int | None = None
        self.unseen_logit: float | None = None
        self.stale = 0  # epochs in a row that did not help (the module docstring)
        self.rate_lowered = False  # the latest epoch lowered the learning rate

    def consider(self, epoch_no: int) -> None:
        data, network = self.data, self.network
        t0 = time.perf_counter()
        unseen: tuple[npt.NDArray[np.bool_], float] | None = None
        if data.unseen_mask is not None:
            logit = unseen_logit(
                network,
                data.ids,
                data.train_idx,
                data.config.n_input,
                data.unseen_mask,
                data.unseen_share,
            )
            unseen = (data.unseen_mask, logit)
        self.val_eval = evaluate(network, data.ids, data.val_idx, data.config.n_input, unseen)
        self.clock.eval_seconds += time.perf_counter() - t0
        previous = self.loss
        training = self.training
        if did_not_help(self.val_eval.loss, previous, self.rate_lowered, training):
            self.stale += 1
        else:
            self.stale = 0
        small_gain = did_not_help(self.val_eval.loss, previous, False, training)
        if previous is None or self.val_eval.loss < previous:
            self.loss, self.epoch = self.val_eval.loss, epoch_no
            self.unseen_logit = None if unseen is None else unseen[1]
            self.weights = [np.array(w, copy=True) for w in network.get_weights()]
        elif self.training.plateau_factor is not None and self.weights is not None:
            # Overfitting set in: go back to the best weights (smaller steps from there, below).
            network.set_weights(self.weights)
        self.rate_lowered = False
        if small_gain and self.training.plateau_factor is not None and self.weights is not None:
            # The held-out loss stalled (or rose): take smaller steps.
            rate = float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))
            self.optimizer.learning_rate.assign(rate * self.training.plateau_factor)
            self.rate_lowered = True
