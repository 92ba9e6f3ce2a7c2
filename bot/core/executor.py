"""The training executor protocol: where a training task runs (never on the event loop).

A task is plain, picklable data (the stories' texts and the options as dicts); its outcome is the
serialized model (``model.serialization`` bytes) with its config, vocabulary and figures as JSON
values. Nothing here says *how* it runs: ``bot.executors.local`` trains in spawned processes on
this machine; another executor (Ray, a job queue) implements the same three calls.

Cancel lives in the :class:`TrainingRun` handle: a cancel before a trainer has the task means the
task never trains; after, the trainer stops at its next check. Either way ``outcome()`` answers
``cancelled`` (or ``done``/``failed`` if the training ended first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# Called on the submitting event loop with the trainer's progress (model.TrainingProgress as a
# dict: epoch, max_epochs, loss, accuracy, learnable_accuracy, eta_seconds, elapsed_seconds...).
ProgressCallback = Callable[[dict[str, Any]], None]
CANCELLED = "Training was cancelled."


@dataclass(frozen=True)
class TrainingTask:
    """Everything a trainer needs; plain values only (it crosses process and machine borders)."""

    job_id: int
    texts: tuple[str, ...]
    model: dict[str, Any]  # ModelConfig fields except vocab_size
    training: dict[str, Any]  # TrainingConfig fields
    vocabulary_max_size: int | None = None


@dataclass(frozen=True)
class TrainingOutcome:
    job_id: int
    state: Literal["done", "failed", "cancelled"]
    error: str | None = None  # for people: why it failed
    blob: bytes | None = None  # done: model.serialization.to_bytes()
    config: dict[str, Any] | None = None  # done: ModelConfig.to_dict()
    vocabulary: list[str] | None = None  # done: Vocabulary.to_json()
    figures: dict[str, Any] | None = None  # done: TrainingFigures.to_dict()


class TrainingRun(Protocol):
    """One submitted task."""

    @property
    def job_id(self) -> int: ...

    def cancel(self) -> None:
        """Stop the task (idempotent, never blocks; safe before it started or after it ended)."""
        ...

    async def outcome(self) -> TrainingOutcome:
        """Wait for the end. A trainer that dies or an executor that closes gives ``failed``;
        RuntimeError only when no trainer can be had at all (the executor is closed or broken).
        """
        ...


class TrainingExecutor(Protocol):
    @property
    def capacity(self) -> int:
        """How many tasks run at once; the scheduler hands over at most this many."""
        ...

    def prepare(self) -> None:
        """Blocking start-up work to do before an event loop serves anything (starting a Ray
        driver process and waiting for its first connection); then ``start`` has little left."""
        ...

    async def start(self) -> None:
        """Get trainers ready (optional: ``submit`` starts them on first use)."""
        ...

    def submit(
        self, task: TrainingTask, on_progress: ProgressCallback | None = None
    ) -> TrainingRun:
        """Start ``task`` (call from the event loop); progress arrives on that loop."""
        ...

    async def close(self) -> None:
        """Stop every trainer; running tasks end ``failed``. Idempotent."""
        ...
