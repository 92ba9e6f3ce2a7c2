"""The local executor: a fixed number of long-lived spawned training processes (``child``).

TensorFlow is not fork-safe and importing it costs ~2 s, so each trainer is a long-lived process
started with the ``spawn`` context; the bot process never imports TensorFlow.

Each process has a reader thread in the bot process that blocks on its pipe and hands messages to
the event loop with ``call_soon_threadsafe``; the loop never blocks on a trainer. A crashed or
killed trainer shows up as EOF on the pipe: its task fails with a clear message and the reader
thread starts a replacement. Sends run in threads (a story can be megabytes), under a per-process
lock so a cancel never interleaves with a task. A task's cancel state is its ``LocalRun``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bot.core.executor import CANCELLED, ProgressCallback, TrainingOutcome, TrainingTask
from bot.executors.child_process import describe_exit, post, settle, spawn_child
from bot.executors.local.child import worker_main
from bot.executors.training_task import training_outcome

__all__ = ["LocalProcessExecutor", "LocalRun", "TrainingPool", "describe_exit"]

logger = logging.getLogger(__name__)


@dataclass
class _Assignment:
    job_id: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[TrainingOutcome]
    on_progress: ProgressCallback | None


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    assignment: _Assignment | None = None
    alive: bool = True
    ready: bool = False
    reader: threading.Thread | None = None


class LocalRun:
    """One submitted task: waits for a free trainer, hands the task over, waits for its end."""

    def __init__(
        self, pool: LocalProcessExecutor, task: TrainingTask, on_progress: ProgressCallback | None
    ) -> None:
        self._pool = pool
        self._job_id = task.job_id
        self._task_data: TrainingTask | None = task
        self._on_progress = on_progress
        self._cancelled = False
        self._worker: _Worker | None = None  # once the task was sent to it
        self._driver = asyncio.ensure_future(self._drive())

    @property
    def job_id(self) -> int:
        return self._job_id

    def cancel(self) -> None:
        if self._cancelled or self._driver.done():
            return
        self._cancelled = True
        if self._worker is not None:
            self._pool.send_cancel(self._worker, self.job_id)

    async def outcome(self) -> TrainingOutcome:
        return await self._driver

    async def _drive(self) -> TrainingOutcome:
        pool = self._pool
        task = self._task_data
        assert task is not None
        if not pool.started:
            await pool.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[TrainingOutcome] = loop.create_future()
        deadline = loop.time() + 60.0
        while True:
            if self._cancelled:
                return TrainingOutcome(task.job_id, "cancelled", error=CANCELLED)
            worker = pool.assign(_Assignment(task.job_id, loop, future, self._on_progress))
            if worker is not None:
                break
            # A replacement trainer may be starting after a crash.
            if pool.broken or loop.time() > deadline:
                raise RuntimeError("no training worker is available")
            await asyncio.sleep(0.05)
        self._task_data = None  # the texts live only as long as the hand-over
        message = ("train", dataclasses.asdict(task))
        del task
        try:
            await asyncio.to_thread(pool.send, worker, message)
        except (OSError, ValueError):
            # The trainer died under us; its reader thread resolves the future.
            logger.warning("could not hand job %d to worker %s", self._job_id, worker.process.pid)
        else:
            self._worker = worker
            if self._cancelled:  # cancelled while the task was on its way
                pool.send_cancel(worker, self._job_id)
        del message
        return await future


class LocalProcessExecutor:
    """A fixed number of long-lived spawned training processes (a ``TrainingExecutor``).

    Loop-agnostic: each ``submit`` remembers the calling loop, so one pool can serve several
    services (tests share one). ``start`` is optional: ``submit`` starts the trainers on first use.
    """

    def __init__(self, size: int = 1) -> None:
        if size < 1:
            raise ValueError("a training pool needs at least one worker")
        self.size = size
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._closing = False
        self.started = False
        self._failed_starts = 0
        self._sends: set[asyncio.Future[None]] = set()
        self.restarts = 0
        self.broken = False

    @property
    def capacity(self) -> int:
        return self.size

    @property
    def ready_workers(self) -> int:
        """Workers that have imported the training code and wait for a job."""
        return sum(1 for worker in self._workers if worker.ready)

    # -- lifecycle ---------------------------------------------------------------------------

    def start_sync(self) -> None:
        """Start the workers (blocking for a few ms per process: call from a thread)."""
        with self._lock:
            if self.started or self._closing:
                return
            self.started = True
        for _ in range(self.size):
            self._spawn()

    def prepare(self) -> None:
        """Nothing to do before the loop: spawning the workers never holds the GIL for long."""

    async def start(self) -> None:
        await asyncio.to_thread(self.start_sync)

    def _spawn(self) -> None:
        process, parent_end = spawn_child(worker_main, (), "fabulist-trainer")
        worker = _Worker(process=process, conn=parent_end)
        worker.reader = threading.Thread(
            target=self._read, args=(worker,), name=f"fabulist-reader-{process.pid}", daemon=True
        )
        with self._lock:
            if self._closing:
                process.kill()
                return
            self._workers.append(worker)
        worker.reader.start()
        logger.info("training worker %s started", process.pid)

    def close_sync(self, timeout: float = 5.0) -> None:
        """Stop every worker, failing any running job (blocking: call from a thread)."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
        for worker in workers:
            with contextlib.suppress(OSError, ValueError), worker.send_lock:
                worker.conn.send(("stop",))
        for worker in workers:
            worker.process.join(timeout)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout)
            if worker.reader is not None:
                worker.reader.join(timeout)
            with contextlib.suppress(OSError):
                worker.conn.close()

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    # -- tasks -------------------------------------------------------------------------------

    def submit(self, task: TrainingTask, on_progress: ProgressCallback | None = None) -> LocalRun:
        """Train ``task`` on an idle trainer (waiting briefly for a restarting one).

        The run's ``outcome()`` raises RuntimeError if the pool is closed or no trainer starts.
        """
        return LocalRun(self, task, on_progress)

    def assign(self, assignment: _Assignment) -> _Worker | None:
        """Give the task to an idle live trainer; None if there is none (yet)."""
        with self._lock:
            if self._closing:
                raise RuntimeError("the training pool is closed")
            worker = next((w for w in self._workers if w.alive and w.assignment is None), None)
            if worker is not None:
                worker.assignment = assignment
            return worker

    def pid_for_job(self, job_id: int) -> int | None:
        with self._lock:
            for worker in self._workers:
                if worker.assignment is not None and worker.assignment.job_id == job_id:
                    return worker.process.pid
        return None

    def send_cancel(self, worker: _Worker, job_id: int) -> None:
        """Tell ``worker`` to stop ``job_id`` (from the loop, without blocking it)."""
        sending = asyncio.ensure_future(asyncio.to_thread(self._send_quietly, worker, job_id))
        self._sends.add(sending)
        sending.add_done_callback(self._sends.discard)

    def _send_quietly(self, worker: _Worker, job_id: int) -> None:
        with contextlib.suppress(OSError, ValueError):  # it died: its reader ends the task
            self.send(worker, ("cancel", job_id))

    @staticmethod
    def send(worker: _Worker, message: tuple[Any, ...]) -> None:
        with worker.send_lock:
            worker.conn.send(message)

    # -- reader thread -----------------------------------------------------------------------

    def _read(self, worker: _Worker) -> None:
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            except Exception:
                logger.exception("unreadable message from worker %s", worker.process.pid)
                break
            self._handle(worker, message)
        self._on_exit(worker)

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            self._failed_starts = 0
            logger.info("training worker ready (pid %d)", message[1])
            return
        with self._lock:
            assignment = worker.assignment
            if assignment is None or message[1] != assignment.job_id:
                return
            if kind != "progress":
                worker.assignment = None
        if kind == "progress":
            if assignment.on_progress is not None:
                post(assignment.loop, assignment.on_progress, message[2])
            return
        if kind == "done":
            result = {"state": "done", **message[2]}
        elif kind == "cancelled":
            result = {"state": "cancelled"}
        else:
            result = {"state": "failed", "error": message[2]}
        _resolve(assignment, training_outcome(assignment.job_id, result))

    def _on_exit(self, worker: _Worker) -> None:
        worker.process.join(5.0)
        exitcode = worker.process.exitcode
        with self._lock:
            worker.alive = False
            assignment, worker.assignment = worker.assignment, None
            if worker in self._workers:
                self._workers.remove(worker)
            replace = not self._closing
        with contextlib.suppress(OSError):
            worker.conn.close()
        if assignment is not None:
            how = describe_exit(exitcode)
            logger.error(
                "training worker %s died during job %d: %s",
                worker.process.pid,
                assignment.job_id,
                how,
            )
            _resolve(
                assignment,
                TrainingOutcome(
                    assignment.job_id,
                    "failed",
                    error=f"The training process stopped unexpectedly ({how}).",
                ),
            )
        elif replace:
            logger.warning("idle training worker %s exited: %s", worker.process.pid, exitcode)
        if replace and not worker.ready:
            self._failed_starts += 1
            if self._failed_starts >= 3:
                logger.error("training workers keep dying at start-up; not restarting them")
                self.broken = True
                replace = False
        if replace:
            self.restarts += 1
            try:
                self._spawn()
            except Exception:
                logger.exception("could not start a replacement training worker")


def _resolve(assignment: _Assignment, outcome: TrainingOutcome) -> None:
    settle(assignment.future, outcome)


TrainingPool = LocalProcessExecutor
