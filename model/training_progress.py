"""What a training reports while it runs (:class:`TrainingProgress`) and the clock behind
its ETA (:class:`TrainingClock`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

PROGRESS_INTERVAL = 2.0


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
    # The epoch count the training is expected to end at (model.training_estimate: the plateau
    # stop predicted from the held-out loss, within max_epochs and the time budget); eta_seconds
    # then runs to it. None before the estimate (eta_seconds None too) and for stories without
    # a held-out split, whose eta_seconds is an upper bound: the epoch limit or the budget.
    expected_epochs: float | None = None


# The first epochs run slower than the later ones: epoch 2 took 1.35x the mean of the later
# epochs (median of 11 trainings of 7,000 to 122,000 symbols, bench/bench_training_eta.py and
# bench/RESULTS.md, 2026-12-07), epoch 3 1.07x. While the latest timed epoch is one of the first
# WARM_UP_EPOCHS, the ETA takes this share of its rates.
WARM_UP_SHARE = 0.75
WARM_UP_EPOCHS = 2


class TrainingClock:
    """Step timing for the ETA: the first step (tracing) is timed apart from the others; the
    ETA uses the latest timed epoch's rates (:meth:`end_epoch`), which follow a machine whose
    load changes and the first epochs' slower start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first_step: float | None = None
        self.step_seconds = 0.0
        self.steps = 0
        self.eval_seconds = 0.0
        self.evals = 0
        self.epochs = 0  # timed by end_epoch
        self.latest: tuple[float, float] | None = None  # the latest epoch's (step, evaluation)
        self._marks = (0.0, 0, 0.0)  # step seconds, steps, evaluation seconds at its start

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def record_step(self, seconds: float) -> None:
        if self.first_step is None:
            self.first_step = seconds
        else:
            self.step_seconds += seconds
            self.steps += 1

    def end_epoch(self) -> None:
        """An epoch's steps and evaluations are done: its rates become the ETA's."""
        step_seconds, steps, eval_seconds = self._marks
        self.epochs += 1
        if self.steps > steps:
            self.latest = (
                (self.step_seconds - step_seconds) / (self.steps - steps),
                self.eval_seconds - eval_seconds,
            )
        self._marks = (self.step_seconds, self.steps, self.eval_seconds)

    def per_step(self) -> float:
        """The mean training step after the first."""
        if self.steps:
            return self.step_seconds / self.steps
        return self.first_step or 0.0

    def per_eval(self) -> float:
        return self.eval_seconds / self.evals if self.evals else 0.0

    def rates(self) -> tuple[float, float]:
        """``(seconds a step, seconds an epoch's evaluation)`` the ETA expects from now on."""
        if self.latest is None:
            return self.per_step(), self.per_eval()
        share = WARM_UP_SHARE if self.epochs <= WARM_UP_EPOCHS else 1.0
        return self.latest[0] * share, self.latest[1] * share

    def epochs_within(self, budget: float, steps_per_epoch: int) -> float:
        """How many epochs (with their evaluations) the rest of ``budget`` holds."""
        per_step, per_eval = self.rates()
        per_epoch = steps_per_epoch * per_step + per_eval
        if per_epoch <= 0:
            return math.inf
        return max(0.0, budget - self.elapsed()) / per_epoch

    def eta(
        self, epochs_left: float, steps_per_epoch: int, steps_left_in_epoch: int, budget: float
    ) -> float:
        """Seconds until the end of the epoch in progress (``steps_left_in_epoch``) and
        ``epochs_left`` more, within ``budget``."""
        per_step, per_eval = self.rates()
        by_epochs = (epochs_left * steps_per_epoch + steps_left_in_epoch) * per_step
        by_epochs += (epochs_left + (1 if steps_left_in_epoch else 0)) * per_eval
        # A run cut by the budget still evaluates its partial epoch after the budget.
        return max(0.0, min(by_epochs, budget - self.elapsed() + per_eval))
