"""The Ray driver process's program (``spawn``ed by ``bot.executors.ray_cluster.executor``).

The bot process never imports Ray: ``ray.init`` builds Ray's C++ core worker without releasing
the GIL (1-2 s), so in the bot it would stall the event loop at every reconnect. This process is
the Ray driver instead: its connect thread joins the cluster (and rejoins it after a loss,
``connection``), and its main thread reads the bot's pipe and watches the tasks
(``task_monitor``). Messages are tuples of plain picklable values::

    bot -> driver   ("submit", task_dict) | ("cancel", job_id) | ("stop",)
    driver -> bot   ("status", connected, error) | ("started", job_id, node_ip, worker_pid)
                    | ("progress", job_id, dict) | ("outcome", TrainingOutcome)

A cluster the driver starts itself (no address) lives as long as this process: Ray ties its
processes to the thread that started them, and that thread lives until the disconnect; they are
in this process's own process group, which the bot kills once this process ended (Ray's agents
would otherwise linger for a minute after a SIGKILL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from bot.core.executor import CANCELLED, TrainingOutcome
from bot.executors.ray_cluster.connection import RayConnection
from bot.executors.ray_cluster.settings import RaySettings
from bot.executors.ray_cluster.task_monitor import TaskMonitor

logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.25  # how long the idle driver waits for the bot's next message
# Above the bot (0), below the trainers (trainer.TRAINER_NICENESS): the driver relays outcomes.
DRIVER_NICENESS = 5
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def driver_main(conn: Connection, settings: RaySettings, log_level: int) -> None:
    """Entry point of the spawned driver: serve the bot until it says stop or goes away."""
    # A process group of its own, which a local cluster's processes (GCS, raylet, Ray's agents)
    # join: when this process dies, the bot kills what is left of the group (``killpg``). Not a
    # session of its own (setsid): with the kernel's autogroup scheduling a new session is a
    # new CPU group that competes with the bot's as an equal whatever the trainers' niceness
    # (measured: the bot's loop lagged 60-100 ms while trainings ran, 5-10 ms in its session).
    os.setpgrp()
    _ignore_stop_signals()
    # Background work, like the trainers: the bot's event loop must win the CPU over this
    # process and over a local cluster it starts (its processes inherit the niceness).
    with contextlib.suppress(OSError):
        os.nice(DRIVER_NICENESS)
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    RayDriver(conn, settings).run()


def _ignore_stop_signals() -> None:
    """Ctrl-C in a terminal reaches the whole process group, a service manager may signal every
    process of the bot: the bot decides when its driver stops (it says so on the pipe)."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)


class RayDriver:
    """The driver process's main loop: the bot's messages, the connection's state, the tasks."""

    def __init__(self, conn: Connection, settings: RaySettings) -> None:
        self.conn = conn
        self.connection = RayConnection(settings)
        self.monitor = TaskMonitor(self.connection, self.send)
        self._waiting: list[dict[str, Any]] = []  # submitted before the first connect ended
        self._deadline = time.monotonic() + settings.connect_wait_seconds
        self._reported: bool | None = None  # the connection state the bot was last told
        self.bot_gone = False

    def send(self, message: tuple[Any, ...]) -> None:
        if self.bot_gone:
            return
        try:
            self.conn.send(message)
        except (OSError, ValueError):  # the bot process is gone
            self.bot_gone = True

    def run(self) -> None:
        self.connection.reconnect_later()
        try:
            while self._step():
                pass
        finally:
            self.connection.closing = True
            try:
                self.monitor.shutdown()
            finally:
                self.connection.disconnect()

    def _step(self) -> bool:
        """One round; False when told to stop or the bot is gone."""
        busy = self.monitor.running and self.connection.connected
        try:
            if self.conn.poll(0 if busy else IDLE_POLL_SECONDS):
                while True:
                    if not self._handle(self.conn.recv()):
                        return False
                    if not self.conn.poll():
                        break
        except (EOFError, OSError):
            logger.warning("the bot process is gone: the Ray driver stops")
            self.bot_gone = True
            return False
        if self.connection.signals_touched.is_set():
            self.connection.signals_touched.clear()
            _ignore_stop_signals()
        self._report_connection()
        if self._waiting and (self.connection.attempted or time.monotonic() > self._deadline):
            waiting, self._waiting = self._waiting, []
            for task in waiting:
                self.monitor.submit(task)
        self.monitor.collect()
        return not self.bot_gone

    def _handle(self, message: tuple[Any, ...]) -> bool:
        kind = message[0]
        if kind == "stop":
            return False
        if kind == "submit":
            if self.connection.attempted or time.monotonic() > self._deadline:
                self.monitor.submit(message[1])
            else:  # the first connection attempt is still under way: wait for it
                self._waiting.append(message[1])
        elif kind == "cancel":
            job_id = message[1]
            waiting = [task for task in self._waiting if task["job_id"] == job_id]
            if waiting:
                self._waiting.remove(waiting[0])
                self.send(("outcome", TrainingOutcome(job_id, "cancelled", error=CANCELLED)))
            else:
                self.monitor.cancel(job_id)
        return True

    def _report_connection(self) -> None:
        if not self.connection.attempted:
            return
        connected = self.connection.connected
        if connected != self._reported:
            self._reported = connected
            error = None if connected else self.connection.last_error
            self.send(("status", connected, error))
