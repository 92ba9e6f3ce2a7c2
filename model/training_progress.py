"""What a training reports while it runs (:class:`TrainingProgress`) and the clock behind
its ETA (:class:`TrainingClock`)."""

from __future__ import annotations

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


class TrainingClock:
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
