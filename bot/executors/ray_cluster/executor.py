"""The Ray executor: each training is a Ray task on a cluster, from a laptop to many GPU nodes.

The bot process is a Ray driver. ``prepare`` (before the bot's loop runs: ``ray.init`` holds the
GIL 1-2 s) or else ``start`` connects (``ray.init``: an address such as ``auto``,
``host:6379`` or ``ray://host:10001``, or none for a local cluster the bot starts itself) and
creates the executor's :class:`~bot.executors.ray_cluster.trainer.JobBoard` actor. Each
``submit`` becomes one Ray task (``trainer.train``) with ``num_cpus``/``num_gpus`` of the
config; the model comes back as its serialized bytes through the object store and the bot
commits it exactly as with the local executor (only the bot writes the database).

The event loop never calls Ray. One monitor thread per executor owns every Ray call after the
connection: it submits the tasks handed over by ``submit``, forwards cancels (``ray.cancel`` and
the board's flag, which the training checks itself), waits on the running tasks
(``ray.wait`` with a short timeout), drains the board's progress, and hands everything to the
submitting loop with ``call_soon_threadsafe``.

Failures become ``failed`` outcomes with a message for people: a Ray worker or node that dies
mid-training fails that job (the previous model keeps answering); a cluster that stops answering
fails the running jobs, and new ones fail at once with "cannot be reached" while a reconnect
thread keeps trying in the background (``ray.init`` to a dead address can block for minutes, so
it never runs on the monitor thread or the loop). A reconnect while the bot serves still stalls
its loop once for the GIL-holding part of ``ray.init`` (about 1 s here).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from bot.core.executor import CANCELLED, ProgressCallback, TrainingOutcome, TrainingTask
from bot.executors.ray_cluster.connection import RayConnection
from bot.executors.ray_cluster.settings import RaySettings

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how often finished tasks and progress are looked at
BOARD_TIMEOUT = 15.0  # a board that does not answer this long means the cluster is lost

UNREACHABLE = "The training cluster cannot be reached right now; try again in a few minutes."
LOST = "The connection to the training cluster was lost during training."
WORKER_DIED = "The training process stopped unexpectedly (its Ray worker died)."
NODE_DIED = "The training stopped unexpectedly (the machine running it left the cluster)."
OUT_OF_MEMORY = "Training ran out of memory on the cluster; try a smaller story."
CLOSED = "The training service is shutting down."


class RayRun:
    """One submitted task (a ``TrainingRun``); its state is changed by the monitor thread only
    through the loop (``call_soon_threadsafe``)."""

    def __init__(
        self,
        executor: RayTrainingExecutor,
        task: TrainingTask,
        on_progress: ProgressCallback | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._executor = executor
        self._job_id = task.job_id
        self.task: TrainingTask | None = task  # dropped once submitted
        self.on_progress = on_progress
        self.loop = loop
        self.future: asyncio.Future[TrainingOutcome] = loop.create_future()
        self.cancelled = False
        self.ref: Any = None  # the Ray ObjectRef, set by the monitor thread

    @property
    def job_id(self) -> int:
        return self._job_id

    def cancel(self) -> None:
        if self.cancelled or self.future.done():
            return
        self.cancelled = True
        self._executor.request_cancel(self)

    async def outcome(self) -> TrainingOutcome:
        return await self.future

    def post(self, callback: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(callback, *args)

    def resolve(self, outcome: TrainingOutcome) -> None:
        def settle() -> None:
            if not self.future.done():
                self.future.set_result(outcome)

        self.post(settle)

    def progress(self, data: dict[str, Any]) -> None:
        if self.on_progress is not None:
            on_progress = self.on_progress

            def deliver() -> None:
                if not self.future.done():
                    on_progress(data)

            self.post(deliver)


class RayTrainingExecutor:
    """Trainings as Ray tasks (a ``TrainingExecutor``); see the module docstring."""

    def __init__(self, settings: RaySettings | None = None) -> None:
        self.settings = settings or RaySettings()
        self._lock = threading.Lock()
        self._commands: queue.SimpleQueue[tuple[str, RayRun | None]] = queue.SimpleQueue()
        self._running: dict[Any, RayRun] = {}  # ObjectRef -> run; monitor thread only
        self._monitor: threading.Thread | None = None
        self.connection = RayConnection(self.settings)
        self.closing = False
        # job id -> (node ip, worker pid) of the running trainings (for operators and tests).
        self.placements: dict[int, tuple[str, int]] = {}

    @property
    def capacity(self) -> int:
        return self.settings.max_concurrent_jobs

    # -- lifecycle ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Connect before an event loop runs (blocking, up to ``connect_wait_seconds``).

        ``ray.init`` builds Ray's core worker in C++ without releasing the GIL: 1-2 s on this
        machine whatever thread calls it, so from ``start`` it stalls the loop that long. The
        bot calls this before its loop starts; ``start`` then finds the connection made.
        """
        self.start_sync()

    async def start(self) -> None:
        """Connect to the cluster (in a thread) and warm one Ray worker per concurrent job.

        Never raises for an unreachable cluster: the error is logged, trainings fail with a
        clear message and a background thread keeps trying to connect.
        """
        self.connection.loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.start_sync)

    def start_sync(self) -> None:
        with self._lock:
            if self._monitor is not None or self.closing:
                return
            self._monitor = threading.Thread(
                target=self._monitor_loop, name="fabulist-ray-monitor", daemon=True
            )
        self._monitor.start()
        if not self.connection.start_connecting(self.settings.connect_wait_seconds):
            logger.warning(
                "not connected to the Ray cluster after %.0f s: trainings fail until it is",
                self.settings.connect_wait_seconds,
            )

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self, timeout: float = 10.0) -> None:
        """Fail every open run, stop their Ray tasks, disconnect (blocking: call from a thread)."""
        with self._lock:
            self.closing = self.connection.closing = True
            monitor = self._monitor
        self._commands.put(("stop", None))
        if monitor is not None and monitor.is_alive():
            monitor.join(timeout)
        self.connection.disconnect()

    # -- tasks -------------------------------------------------------------------------------

    def submit(self, task: TrainingTask, on_progress: ProgressCallback | None = None) -> RayRun:
        """Hand ``task`` to the monitor thread (never blocks the loop)."""
        run = RayRun(self, task, on_progress, asyncio.get_running_loop())
        if self.connection.loop is None:
            self.connection.loop = run.loop
        if self.closing:
            run.resolve(TrainingOutcome(task.job_id, "failed", error=CLOSED))
            return run
        if self._monitor is None:
            # Connecting can take seconds: start in a thread, then the monitor takes the task.
            starting = asyncio.ensure_future(asyncio.to_thread(self.start_sync))
            starting.add_done_callback(lambda _: self._commands.put(("submit", run)))
        else:
            self._commands.put(("submit", run))
        return run

    def pid_for_job(self, job_id: int) -> int | None:
        """The Ray worker process running ``job_id`` (on node ``placements[job_id][0]``)."""
        where = self.placements.get(job_id)
        return None if where is None else where[1]

    def request_cancel(self, run: RayRun) -> None:
        self._commands.put(("cancel", run))

    # -- the monitor thread ------------------------------------------------------------------

    def _monitor_loop(self) -> None:
        while True:
            try:
                if not self._step():
                    break
            except Exception:
                logger.exception("Ray monitor step failed")
                time.sleep(POLL_SECONDS)
        self._shutdown_runs()

    def _step(self) -> bool:
        """One round: commands, finished tasks, progress. False when told to stop."""
        wait = POLL_SECONDS if self._running else 0.5
        try:
            commands = [self._commands.get(timeout=wait)]
        except queue.Empty:
            commands = []
        while True:
            try:
                commands.append(self._commands.get_nowait())
            except queue.Empty:
                break
        for kind, run in commands:
            if kind == "stop":
                return False
            assert run is not None
            if kind == "submit":
                self._submit(run)
            elif kind == "cancel":
                self._cancel(run)
        if self._running and self.connection.connected:
            self._collect()
        return True

    def _submit(self, run: RayRun) -> None:
        task = run.task
        run.task = None
        if run.cancelled or task is None:
            run.resolve(TrainingOutcome(run.job_id, "cancelled", error=CANCELLED))
            return
        if not self.connection.connected or self.connection.remote is None:
            run.resolve(TrainingOutcome(run.job_id, "failed", error=UNREACHABLE))
            self.connection.reconnect_later()
            return
        try:
            run.ref = self.connection.remote.remote(dataclasses.asdict(task), self.connection.board)
        except Exception:
            logger.exception("could not submit job %d to the Ray cluster", run.job_id)
            run.resolve(TrainingOutcome(run.job_id, "failed", error=UNREACHABLE))
            return
        self._running[run.ref] = run

    def _cancel(self, run: RayRun) -> None:
        import ray

        if run.ref is None or run.ref not in self._running:
            return  # not submitted yet (``_submit`` sees the flag) or already over
        with contextlib.suppress(Exception):
            self.connection.board.cancel.remote(run.job_id)
        with contextlib.suppress(Exception):
            ray.cancel(run.ref)

    def _collect(self) -> None:
        import ray

        refs = list(self._running)
        try:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=POLL_SECONDS)
        except Exception:
            logger.exception("ray.wait failed")
            ready = []
        for ref in ready:
            run = self._running.pop(ref)
            self.placements.pop(run.job_id, None)
            run.resolve(self._outcome(run, ref))
            with contextlib.suppress(Exception):
                self.connection.board.forget.remote(run.job_id)
        if not self._running:
            return
        try:
            posted, started = ray.get(self.connection.board.drain.remote(), timeout=BOARD_TIMEOUT)
        except Exception as exc:
            self._lost(exc)
            return
        by_job = {run.job_id: run for run in self._running.values()}
        for job_id, where in started.items():
            if job_id in by_job:
                self.placements[job_id] = where
        for job_id, data in posted:
            reporting = by_job.get(job_id)
            if reporting is not None:
                reporting.progress(data)

    def _outcome(self, run: RayRun, ref: Any) -> TrainingOutcome:
        import ray
        from ray import exceptions as rex

        job_id = run.job_id
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
        if result["state"] == "done":
            return TrainingOutcome(
                job_id,
                "done",
                blob=result["blob"],
                config=result["config"],
                vocabulary=result["vocabulary"],
                figures=result["figures"],
            )
        if result["state"] == "cancelled":
            return TrainingOutcome(job_id, "cancelled", error=CANCELLED)
        return TrainingOutcome(job_id, "failed", error=str(result.get("error")))

    def _lost(self, exc: BaseException) -> None:
        """The board stopped answering: the cluster (or our connection to it) is gone."""
        logger.error("lost the Ray cluster: %s: %s", type(exc).__name__, exc)
        self.connection.last_error = f"{type(exc).__name__}: {exc}"
        runs = list(self._running.values())
        self._running.clear()
        started = set(self.placements)
        self.placements.clear()
        for run in runs:
            # A task that never started was lost before it could train: say the cluster is gone.
            error = LOST if run.job_id in started else UNREACHABLE
            run.resolve(TrainingOutcome(run.job_id, "failed", error=error))
        self.connection.disconnect()
        self.connection.reconnect_later()

    def _shutdown_runs(self) -> None:
        import ray

        runs = list(self._running.values())
        self._running.clear()
        for run in runs:
            if self.connection.connected:
                with contextlib.suppress(Exception):
                    ray.cancel(run.ref, force=True)
            run.resolve(TrainingOutcome(run.job_id, "failed", error=CLOSED))
        while True:  # tasks handed over after the stop
            try:
                kind, late = self._commands.get_nowait()
            except queue.Empty:
                break
            if kind == "submit" and late is not None:
                late.resolve(TrainingOutcome(late.job_id, "failed", error=CLOSED))
