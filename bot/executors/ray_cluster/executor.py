"""The Ray executor: each training is a Ray task on a cluster, from a laptop to many GPU nodes.

The bot process never imports Ray. The executor owns one child process, the Ray driver
(``driver_process``, started with ``spawn``), which joins the cluster (an address such as
``auto``, ``host:6379`` or ``ray://host:10001``, or none for a local cluster it starts itself),
submits each task as one Ray task (``trainer.train``) with ``num_cpus``/``num_gpus`` of the
config, forwards cancels, and sends back progress, placements and outcomes; the model comes back
as its serialized bytes and the bot commits it exactly as with the local executor (only the bot
writes the database). ``ray.init`` holds the GIL for 1-2 s (Ray's core worker is built in C++
without releasing it): in the driver process that stalls nobody, not even at a reconnect.

Bot side, as with the local pool: a reader thread per driver blocks on its pipe and hands every
message to the submitting loop with ``call_soon_threadsafe``; a writer thread sends the tasks
(a story can be megabytes) and cancels in order, so the loop never blocks on the driver.

Failures become ``failed`` outcomes with a message for people (``task_monitor``): a Ray worker or
node that dies mid-training fails that job (the previous model keeps answering); a cluster that
stops answering fails the running jobs, and new ones fail at once with "cannot be reached" while
the driver reconnects in the background. A driver process that dies fails the trainings it was
running (``DRIVER_DIED``) and the executor starts a new one (with a new local cluster, if it
started one: the old one went with the old driver).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import queue
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bot.core.executor import CANCELLED, ProgressCallback, TrainingOutcome, TrainingTask
from bot.executors.child_process import describe_exit, post, settle, spawn_child
from bot.executors.ray_cluster.driver_process import driver_main
from bot.executors.ray_cluster.settings import RaySettings
from bot.executors.ray_cluster.task_monitor import (
    CLOSED,
    LOST,
    NODE_DIED,
    OUT_OF_MEMORY,
    UNREACHABLE,
    WORKER_DIED,
)

__all__ = [
    "CLOSED",
    "DRIVER_DIED",
    "LOST",
    "NODE_DIED",
    "OUT_OF_MEMORY",
    "UNREACHABLE",
    "WORKER_DIED",
    "RayRun",
    "RayTrainingExecutor",
]

logger = logging.getLogger(__name__)

DRIVER_DIED = "The training stopped unexpectedly: the bot's Ray driver process ended ({how})."
# What starting the driver process (the spawn, importing Ray) may add to connect_wait_seconds.
SPAWN_SECONDS = 30.0


class RayRun:
    """One submitted task (a ``TrainingRun``); settled on its loop by the driver's reader."""

    def __init__(
        self, job_id: int, on_progress: ProgressCallback | None, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._job_id = job_id
        self.on_progress = on_progress
        self.loop = loop
        self.future: asyncio.Future[TrainingOutcome] = loop.create_future()
        self.cancelled = False
        self.driver: _Driver | None = None  # once the task is on its way to a driver

    @property
    def job_id(self) -> int:
        return self._job_id

    def cancel(self) -> None:
        if self.cancelled or self.future.done():
            return
        self.cancelled = True
        if self.driver is not None:
            self.driver.writes.put(("cancel", self.job_id))

    async def outcome(self) -> TrainingOutcome:
        return await self.future

    def resolve(self, outcome: TrainingOutcome) -> None:
        settle(self.future, outcome)

    def progress(self, data: dict[str, Any]) -> None:
        on_progress = self.on_progress
        if on_progress is not None:

            def deliver() -> None:
                if not self.future.done():
                    on_progress(data)

            post(self.loop, deliver)


@dataclasses.dataclass
class _Driver:
    """One driver process and the bot's side of it."""

    process: BaseProcess
    conn: Connection
    writes: queue.SimpleQueue[tuple[Any, ...] | None] = dataclasses.field(
        default_factory=queue.SimpleQueue
    )
    runs: dict[int, RayRun] = dataclasses.field(default_factory=dict)  # under the executor lock
    # Set by the driver's first "status" (its first connection attempt ended) or its end.
    reported: threading.Event = dataclasses.field(default_factory=threading.Event)
    spoke: bool = False  # it reported at least once (it started well)
    alive: bool = True
    reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid


class RayTrainingExecutor:
    """Trainings as Ray tasks through a Ray driver process (a ``TrainingExecutor``); see the
    module docstring. Loop-agnostic: each run is settled on the loop that submitted it."""

    def __init__(self, settings: RaySettings | None = None) -> None:
        self.settings = settings or RaySettings()
        self._lock = threading.Lock()  # the driver and its runs
        self._spawn_lock = threading.Lock()  # one driver started at a time
        self._driver: _Driver | None = None
        self.closing = False
        self.connected = False  # as the driver last said
        self.last_error: str | None = None
        self.driver_restarts = 0
        # job id -> (node ip, worker pid) of the running trainings (for operators and tests).
        self.placements: dict[int, tuple[str, int]] = {}

    @property
    def capacity(self) -> int:
        return self.settings.max_concurrent_jobs

    @property
    def driver_pid(self) -> int | None:
        """The Ray driver process (None before it started or while it is being replaced)."""
        driver = self._driver
        return None if driver is None else driver.pid

    # -- lifecycle ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Start the driver process and wait for its first connection attempt (blocking, up to
        ``connect_wait_seconds``): the bot begins serving with the cluster joined."""
        self.start_sync()

    async def start(self) -> None:
        """Start the driver process and wait (in a thread) for its first connection attempt.

        Never raises for an unreachable cluster: the driver logs the error, trainings fail with
        a clear message, and it keeps trying to connect in the background.
        """
        await asyncio.to_thread(self.start_sync)

    def start_sync(self) -> None:
        driver = self._current_driver()
        if driver is None:
            return
        driver.reported.wait(self.settings.connect_wait_seconds + SPAWN_SECONDS)
        if not self.connected:
            logger.warning(
                "not connected to the Ray cluster after %.0f s: trainings fail until it is",
                self.settings.connect_wait_seconds,
            )

    def _current_driver(self) -> _Driver | None:
        """The live driver process, started now if there is none (blocks a few ms: the spawn);
        None when closing."""
        with self._spawn_lock:
            with self._lock:
                if self.closing or self._driver is not None:
                    return self._driver
            process, conn = spawn_child(
                driver_main,
                (self.settings, logging.getLogger().getEffectiveLevel()),
                "fabulist-ray-driver",
            )
            driver = _Driver(process, conn)
            with self._lock:
                if not self.closing:
                    self._driver = driver
        if self._driver is not driver:  # closed meanwhile
            process.kill()
            process.join()
            conn.close()
            return None
        name = f"fabulist-ray-driver-{driver.pid}"
        driver.reader = threading.Thread(target=self._read, args=(driver,), name=name, daemon=True)
        driver.reader.start()
        threading.Thread(target=self._write, args=(driver,), name=name, daemon=True).start()
        logger.info("Ray driver process %s started", driver.pid)
        return driver

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self, timeout: float = 15.0) -> None:
        """Stop the driver process (its running tasks are cancelled and end ``failed``; a local
        cluster it started stops with it); kill it if it does not stop in time. Blocking."""
        with self._lock:
            self.closing = True
            driver = self._driver
        if driver is None:
            return
        driver.writes.put(("stop",))
        driver.writes.put(None)
        driver.process.join(timeout)
        if driver.process.is_alive():
            logger.warning("the Ray driver process did not stop in %.0f s: killing it", timeout)
            driver.process.kill()
            driver.process.join(timeout)
        if driver.reader is not None:  # the outcomes the driver sent before it stopped
            driver.reader.join(timeout)
        self._end(driver)

    # -- tasks -------------------------------------------------------------------------------

    def submit(self, task: TrainingTask, on_progress: ProgressCallback | None = None) -> RayRun:
        """Hand ``task`` to the driver process (never blocks the loop)."""
        run = RayRun(task.job_id, on_progress, asyncio.get_running_loop())
        self._hand_over(run, ("submit", dataclasses.asdict(task)), spawn=True)
        return run

    def _hand_over(self, run: RayRun, message: tuple[str, dict[str, Any]], spawn: bool) -> None:
        """Queue ``message`` for the driver; without one, start one in a thread first."""
        if run.cancelled:
            run.resolve(TrainingOutcome(run.job_id, "cancelled", error=CANCELLED))
            return
        with self._lock:
            driver = self._driver
            if driver is not None and not self.closing:
                driver.runs[run.job_id] = run
                run.driver = driver
                driver.writes.put(message)  # under the lock: never after the driver's end
                return
        if self.closing or not spawn:
            run.resolve(TrainingOutcome(run.job_id, "failed", error=CLOSED))
            return

        def started(starting: asyncio.Future[_Driver | None]) -> None:
            if not starting.cancelled() and starting.exception() is not None:
                logger.error("could not start the Ray driver process: %s", starting.exception())
                run.resolve(TrainingOutcome(run.job_id, "failed", error=UNREACHABLE))
                return
            self._hand_over(run, message, spawn=False)

        # Starting the driver blocks a few ms (fork and exec): in a thread.
        asyncio.ensure_future(asyncio.to_thread(self._current_driver)).add_done_callback(started)

    def pid_for_job(self, job_id: int) -> int | None:
        """The Ray worker process running ``job_id`` (on node ``placements[job_id][0]``)."""
        where = self.placements.get(job_id)
        return None if where is None else where[1]

    # -- the driver's pipe -------------------------------------------------------------------

    def _write(self, driver: _Driver) -> None:
        while True:
            message = driver.writes.get()
            if message is None:
                return
            try:
                driver.conn.send(message)
            except (OSError, ValueError):  # the driver died: its reader fails the runs
                return

    def _read(self, driver: _Driver) -> None:
        while True:
            try:
                message = driver.conn.recv()
            except (EOFError, OSError):
                break
            except Exception:
                logger.exception("unreadable message from the Ray driver process")
                break
            self._handle(driver, message)
        driver.process.join(5.0)
        self._end(driver)

    def _handle(self, driver: _Driver, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "status":
            self.connected, self.last_error = message[1], message[2]
            driver.spoke = True
            driver.reported.set()
            return
        if kind == "outcome":
            outcome: TrainingOutcome = message[1]
            with self._lock:
                run = driver.runs.pop(outcome.job_id, None)
            self.placements.pop(outcome.job_id, None)
            if run is not None:
                run.resolve(outcome)
            return
        run = driver.runs.get(message[1])
        if run is None:
            return
        if kind == "started":
            self.placements[run.job_id] = (message[2], message[3])
        elif kind == "progress":
            run.progress(message[2])

    def _end(self, driver: _Driver) -> None:
        """The driver process ended: fail its runs; start a new one unless closing (or it died
        before its first connection attempt: then the next training starts one)."""
        with self._lock:
            if not driver.alive:
                return
            driver.alive = False
            runs, driver.runs = list(driver.runs.values()), {}
            if self._driver is driver:
                self._driver = None
            closing = self.closing
        driver.writes.put(None)
        driver.reported.set()
        self.connected = False
        for run in runs:
            self.placements.pop(run.job_id, None)
        if closing:
            error = CLOSED
        else:
            how = describe_exit(driver.process.exitcode)
            logger.error("the Ray driver process %s ended: %s", driver.pid, how)
            error = DRIVER_DIED.format(how=how)
        for run in runs:
            run.resolve(TrainingOutcome(run.job_id, "failed", error=error))
        with contextlib.suppress(OSError):
            driver.conn.close()
        if driver.pid is not None:
            # What is left of its process group: a local cluster's processes, if it started one
            # (they would go on their own, Ray's agents only after a minute).
            with contextlib.suppress(OSError):
                os.killpg(driver.pid, signal.SIGKILL)
        if not closing and driver.spoke:
            self.driver_restarts += 1
            try:
                self._current_driver()
            except Exception:  # the next training tries again
                logger.exception("could not start a new Ray driver process")
