"""What runs inside the Ray cluster: the training task and the job board actor.

Nothing here runs in the bot process; the Ray driver process (``driver_process``) only wraps it
with ``ray.remote``: the task function imports ``model.training`` (and with it Keras and
TensorFlow or JAX) only when a Ray worker runs it, so neither the bot nor its driver imports
TensorFlow. Every node of the cluster needs fabulist
installed (``pip install 'fabulist[ray]'``, the same version as the bot) for that import.

The task reports to a :class:`JobBoard` actor owned by the driver process (one per connection):
``post`` progress (coalesced to one call per ``PROGRESS_EVERY`` seconds, fire-and-forget) and
``is_cancelled`` for the training's own cancel check (asked at most every ``CANCEL_POLL``
seconds). The board is how Cancel reaches a running training (``ray.cancel`` only stops tasks
not yet known to have started: see ``task_monitor``); and if the board is gone (the driver
process died, or the bot with it), the training stops at its next check, like a local trainer
whose pipe closed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

from bot.executors.training_task import import_training_code, run_training

PROGRESS_EVERY = 0.25
CANCEL_POLL = 0.2
# Training is batch work: on a machine shared with a bot, the bot's event loop must win the CPU.
TRAINER_NICENESS = 10


class JobBoard:
    """Latest progress per job, and the set of cancelled jobs (a Ray actor, ``num_cpus=0``)."""

    def __init__(self) -> None:
        self._progress: dict[int, dict[str, Any]] = {}
        self._cancelled: set[int] = set()
        self._started: dict[int, tuple[str, int]] = {}  # job -> (node ip, worker pid)

    def post(self, job_id: int, progress: dict[str, Any]) -> None:
        self._progress[job_id] = progress

    def started(self, job_id: int, node: str, pid: int) -> None:
        self._started[job_id] = (node, pid)

    def drain(self) -> tuple[list[tuple[int, dict[str, Any]]], dict[int, tuple[str, int]]]:
        """The progress posted since the last drain (the latest per job), and the jobs started
        since then with where they run."""
        posted, self._progress = self._progress, {}
        started, self._started = self._started, {}
        return list(posted.items()), started

    def cancel(self, job_id: int) -> None:
        self._cancelled.add(job_id)

    def is_cancelled(self, job_id: int) -> bool:
        return job_id in self._cancelled

    def forget(self, job_id: int) -> None:
        self._cancelled.discard(job_id)
        self._progress.pop(job_id, None)
        self._started.pop(job_id, None)

    def ping(self) -> int:
        return os.getpid()


def warm_up() -> int:
    """Import the training code once in a Ray worker (later tasks there skip the ~2.5 s import)."""
    _prepare_trainer()
    with interrupts_deferred():
        import_training_code()
    return os.getpid()


def train(task: dict[str, Any], board: Any) -> dict[str, Any]:
    """Train one task (a ``TrainingTask`` as a dict); the outcome of
    :func:`bot.executors.training_task.run_training` (plain values)."""
    import ray

    _prepare_trainer()
    job_id = int(task["job_id"])
    state = {"cancelled": False, "checked": 0.0, "posted": 0.0}
    pending: dict[str, Any] = {}

    def should_cancel() -> bool:
        now = time.monotonic()
        if state["cancelled"] or now - state["checked"] < CANCEL_POLL:
            return bool(state["cancelled"])
        state["checked"] = now
        try:
            state["cancelled"] = bool(ray.get(board.is_cancelled.remote(job_id), timeout=30))
        except Exception:
            # The board is gone with the driver process that owned it: nobody waits for this model.
            state["cancelled"] = True
        return bool(state["cancelled"])

    def flush() -> None:
        if pending:
            with contextlib.suppress(Exception):
                board.post.remote(job_id, dict(pending))
            pending.clear()
            state["posted"] = time.monotonic()

    def on_progress(progress: dict[str, Any]) -> None:
        pending.clear()
        pending.update(progress)
        if time.monotonic() - state["posted"] >= PROGRESS_EVERY:
            flush()

    with contextlib.suppress(Exception):
        board.started.remote(job_id, ray.util.get_node_ip_address(), os.getpid())
    try:
        with interrupts_deferred():
            import_training_code()
        outcome = run_training(task, on_progress, should_cancel)
    except KeyboardInterrupt:  # ray.cancel's (asked for or stray: the monitor tells which)
        return {"state": "cancelled"}
    flush()
    return outcome


def _prepare_trainer() -> None:
    """This Ray worker as a trainer: TensorFlow's log level and the trainers' niceness."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with contextlib.suppress(OSError):
        current = os.nice(0)
        if current < TRAINER_NICENESS:
            os.nice(TRAINER_NICENESS - current)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back ``ray.cancel``'s interrupt (SIGINT's handler, run on the main thread) until the
    block ends, then raise it. For the training code's import: one cut short can leave the
    process unable to import it again, so every later training in that worker fails (seen in
    a full test run: numpy's "cannot load module more than once per process"; reproduced with
    an interrupt 0.3 s into the import: the second import fails; 2026-12-08)."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler set outside Python: it could not be put back
        yield
        return
    held: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt
