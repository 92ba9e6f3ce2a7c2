"""The Ray tasks of the driver process: submit, cancel, watch, and report what happened.

Runs on the driver process's main thread (``driver_process``), which owns every Ray call after
the connection. Each report to the bot is one plain message through ``send``::

    ("started", job_id, node_ip, worker_pid) | ("progress", job_id, dict)
    | ("outcome", TrainingOutcome)

Failures become ``failed`` outcomes with a message for people: a Ray worker or node that dies
mid-training fails that job; a job board that stops answering means the cluster is lost: the
running jobs fail and the connection reconnects in the background, while new jobs fail at once
with ``UNREACHABLE``.

Cancelling a task that has started only raises the board's flag: its training stops at its next
check. ``ray.cancel`` interrupts a worker's main thread asynchronously, and an interrupt that
arrives as the task ends can land in the next task that worker runs (it did in CI: a training
nobody cancelled ended "cancelled"). So ``ray.cancel`` is kept for tasks not known to have
started, and a task that ends cancelled without a cancel from here is submitted again, once.
The interrupt reaches only workers whose SIGINT is not ignored: Ray sends it with
``_thread.interrupt_main()``, which does nothing where SIGINT is ignored, as in a local cluster
that this driver process (SIGINT ignored on purpose) starts, or a ``ray start`` run as a
background job; there a task that has started is stopped by the board's flag alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from bot.core.executor import CANCELLED, TrainingOutcome
from bot.executors.ray_cluster.connection import RayConnection
from bot.executors.training_task import training_outcome

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how long one look at the running tasks waits for one to finish
BOARD_TIMEOUT = 15.0  # a board that does not answer this long means the cluster is lost

UNREACHABLE = "The training cluster cannot be reached right now; try again in a few minutes."
LOST = "The connection to the training cluster was lost during training."
WORKER_DIED = "The training process stopped unexpectedly (its Ray worker died)."
NODE_DIED = "The training stopped unexpectedly (the machine running it left the cluster)."
OUT_OF_MEMORY = "Training ran out of memory on the cluster; try a smaller story."
CLOSED = "The training service is shutting down."
INTERRUPTED_TWICE = (
    "The training was interrupted on the training cluster twice without anyone cancelling it; "
    "try again."
)
# How often a task that was interrupted without a cancel from here is submitted again.
RESUBMISSIONS = 1

Send = Callable[[tuple[Any, ...]], None]


class TaskMonitor:
    """The running Ray tasks of one driver process, by job id."""

    def __init__(self, connection: RayConnection, send: Send) -> None:
        self.connection = connection
        self._send = send
        self._refs: dict[int, Any] = {}  # job id -> its task's ObjectRef
        self._tasks: dict[int, dict[str, Any]] = {}  # job id -> the task, to submit it again
        self._started: set[int] = set()
        self._cancelling: set[int] = set()  # the jobs the bot asked to cancel
        self._resubmitted: dict[int, int] = {}

    @property
    def running(self) -> bool:
        return bool(self._refs)

    def _finish(self, outcome: TrainingOutcome) -> None:
        job_id = outcome.job_id
        self._refs.pop(job_id, None)
        self._tasks.pop(job_id, None)
        self._started.discard(job_id)
        self._cancelling.discard(job_id)
        self._resubmitted.pop(job_id, None)
        self._send(("outcome", outcome))

    def submit(self, task: dict[str, Any]) -> None:
        job_id = int(task["job_id"])
        connection = self.connection
        if not connection.connected or connection.remote is None:
            self._finish(TrainingOutcome(job_id, "failed", error=UNREACHABLE))
            connection.reconnect_later()
            return
        try:
            self._refs[job_id] = connection.remote.remote(task, connection.board)
        except Exception:
            logger.exception("could not submit job %d to the Ray cluster", job_id)
            self._finish(TrainingOutcome(job_id, "failed", error=UNREACHABLE))
            return
        self._tasks[job_id] = task

    def cancel(self, job_id: int) -> None:
        """Stop ``job_id``: the board's flag (the training checks it), and ``ray.cancel`` for a
        task not known to have started (it may still wait for a worker)."""
        import ray

        ref = self._refs.get(job_id)
        if ref is None:
            return  # already over
        self._cancelling.add(job_id)
        with contextlib.suppress(Exception):
            self.connection.board.cancel.remote(job_id)
        if job_id not in self._started:
            with contextlib.suppress(Exception):
                ray.cancel(ref)

    def collect(self) -> None:
        """Report the finished tasks, then the started ones and the latest progress."""
        import ray

        if not self._refs or not self.connection.connected:
            return
        by_ref = {ref: job_id for job_id, ref in self._refs.items()}
        try:
            ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=POLL_SECONDS)
        except Exception:
            logger.exception("ray.wait failed")
            ready = []
        for ref in ready:
            job_id = by_ref[ref]
            outcome = self._outcome(job_id, ref)
            if outcome.state == "cancelled" and job_id not in self._cancelling:
                failed = self._submit_again(job_id)
                if failed is None:
                    continue
                outcome = failed
            self._finish(outcome)
            with contextlib.suppress(Exception):
                self.connection.board.forget.remote(job_id)
        if not self._refs:
            return
        try:
            posted, started = ray.get(self.connection.board.drain.remote(), timeout=BOARD_TIMEOUT)
        except Exception as exc:
            self._lost(exc)
            return
        for job_id, (node, pid) in started.items():
            if job_id in self._refs:
                self._started.add(job_id)
                self._send(("started", job_id, node, pid))
        for job_id, data in posted:
            if job_id in self._refs:
                self._send(("progress", job_id, data))

    def _outcome(self, job_id: int, ref: Any) -> TrainingOutcome:
        import ray
        from ray import exceptions as rex

        try:
            result = ray.get(ref, timeout=BOARD_TIMEOUT)
        except rex.TaskCancelledError:
            return TrainingOutcome(job_id, "cancelled", error=CANCELLED)
        except rex.OutOfMemoryError:
            return TrainingOutcome(job_id, "failed", error=OUT_OF_MEMORY)
        except rex.WorkerCrashedError:
            logger.error("the Ray worker of training job %d died", job_id)
            return TrainingOutcome(job_id, "failed", error=WORKER_DIED)
        except rex.NodeDiedError:
            logger.error("the Ray node of training job %d died", job_id)
            return TrainingOutcome(job_id, "failed", error=NODE_DIED)
        except Exception as exc:
            logger.error("training job %d failed in Ray: %s", job_id, exc)
            return TrainingOutcome(job_id, "failed", error=LOST)
        return training_outcome(job_id, result)

    def _submit_again(self, job_id: int) -> TrainingOutcome | None:
        """A task ended cancelled, but nobody here cancelled it (a stray interrupt): submit it
        again (None), or fail it if it was submitted again ``RESUBMISSIONS`` times already."""
        count = self._resubmitted.get(job_id, 0)
        if count >= RESUBMISSIONS:
            logger.error("training job %d was interrupted again without a cancel", job_id)
            return TrainingOutcome(job_id, "failed", error=INTERRUPTED_TWICE)
        logger.warning(
            "training job %d was interrupted without a cancel from this bot: submitting it again",
            job_id,
        )
        self._resubmitted[job_id] = count + 1
        self._started.discard(job_id)
        try:
            task = self._tasks[job_id]
            self._refs[job_id] = self.connection.remote.remote(task, self.connection.board)
        except Exception:
            logger.exception("could not submit job %d to the Ray cluster again", job_id)
            return TrainingOutcome(job_id, "failed", error=UNREACHABLE)
        return None

    def _lost(self, exc: BaseException) -> None:
        """The board stopped answering: the cluster (or the connection to it) is gone."""
        logger.error("lost the Ray cluster: %s: %s", type(exc).__name__, exc)
        self.connection.last_error = f"{type(exc).__name__}: {exc}"
        for job_id in list(self._refs):
            # A task that never started was lost before it could train: say the cluster is gone.
            error = LOST if job_id in self._started else UNREACHABLE
            self._finish(TrainingOutcome(job_id, "failed", error=error))
        self.connection.disconnect()
        self.connection.reconnect_later()

    def shutdown(self) -> None:
        """Stop every running task (the driver process is stopping): each ends ``CLOSED``."""
        import ray

        for job_id, ref in list(self._refs.items()):
            if self.connection.connected:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            self._finish(TrainingOutcome(job_id, "failed", error=CLOSED))
