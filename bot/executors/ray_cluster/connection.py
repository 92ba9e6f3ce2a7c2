"""The Ray driver process's connection to the cluster: ``ray.init``, the job board, reconnects.

Runs in the driver process only (``driver_process``), never in the bot's. ``ray.init`` to an
address that does not answer can block for minutes and holds the GIL in places, so it runs in a
connect thread that retries every ``RECONNECT_SECONDS``, never on the driver's main thread
(which keeps reading the bot's pipe and watching the tasks).
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from typing import Any

from bot.executors.ray_cluster.settings import RaySettings

logger = logging.getLogger(__name__)

RECONNECT_SECONDS = 10.0


class RayConnection:
    """Connected or not; when connected, the job board actor and the remote training task."""

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self.lock = threading.RLock()  # one connect/disconnect at a time
        self._thread_lock = threading.Lock()
        self.board: Any = None
        self.remote: Any = None
        # Set after every ray.init and ray.shutdown: Ray's core worker installs its own C-level
        # SIGINT/SIGTERM handlers and resets them to the default, so the driver process's main
        # thread (the only one that may) puts its own dispositions back.
        self.signals_touched = threading.Event()
        self._owns_ray = False  # we called ray.init (so we call ray.shutdown)
        self._reconnector: threading.Thread | None = None
        self._attempted = threading.Event()  # the first connection attempt has ended
        self._released = threading.Event()  # set by a disconnect: a local cluster's thread ends
        self.connected = False
        self.closing = False
        self.last_error: str | None = None

    def connect(self, *, warm: bool = False) -> bool:
        import ray

        from bot.executors.ray_cluster import trainer

        with self.lock:
            if self.closing:
                return False
            settings = self.settings
            try:
                if not ray.is_initialized():
                    try:
                        ray.init(**self.init_options())
                    finally:
                        self.signals_touched.set()
                    self._owns_ray = True
                board_actor: Any = ray.remote(num_cpus=0, max_restarts=0)(trainer.JobBoard)
                board = board_actor.remote()
                ray.get(board.ping.remote(), timeout=60)
                self.remote = ray.remote(max_retries=0)(trainer.train).options(
                    num_cpus=settings.cpus_per_job,
                    num_gpus=settings.gpus_per_job,
                    runtime_env={"env_vars": settings.env_vars()},
                )
                self.board = board
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.error(
                    "cannot reach the Ray cluster at %s: %s",
                    settings.address or "(local)",
                    self.last_error,
                )
                self.disconnect()
                return False
            self.connected = True
            self.last_error = None
            resources = ray.cluster_resources()
            logger.info(
                "connected to the Ray cluster at %s (%s CPUs, %s GPUs)",
                settings.address or "(local)",
                resources.get("CPU", 0),
                resources.get("GPU", 0),
            )
            if settings.gpus_per_job > 0 and resources.get("GPU", 0) < settings.gpus_per_job:
                logger.warning(
                    "workers.gpus_per_job is %s but the Ray cluster has %s GPUs now: trainings "
                    "wait until a GPU node joins",
                    settings.gpus_per_job,
                    resources.get("GPU", 0),
                )
            if warm:
                self._warm_up(resources)
            return True

    def init_options(self) -> dict[str, Any]:
        settings = self.settings
        options: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "namespace": "fabulist",
            # The trainers' output (TensorFlow's start-up chatter) stays in the Ray session's log
            # files: relaying it costs the driver and says nothing a failed outcome does not.
            "log_to_driver": False,
        }
        if settings.address is None:
            cpus = settings.local_cpus or math.ceil(
                settings.cpus_per_job * settings.max_concurrent_jobs
            )
            options.update(
                address="local",
                num_cpus=cpus,
                object_store_memory=settings.local_object_store_bytes,
            )
        else:
            options["address"] = settings.address
        return options

    def _warm_up(self, resources: dict[str, float]) -> None:
        """Fire one import-only task per job that can run at once (results ignored)."""
        import ray

        from bot.executors.ray_cluster import trainer

        settings = self.settings
        fit = int(resources.get("CPU", 0) // settings.cpus_per_job)
        count = min(settings.max_concurrent_jobs, fit)
        warm = ray.remote(max_retries=0)(trainer.warm_up).options(
            num_cpus=settings.cpus_per_job,
            num_gpus=settings.gpus_per_job,
            runtime_env={"env_vars": settings.env_vars()},
        )
        for _ in range(count):
            warm.remote()

    def disconnect(self) -> None:
        # A connect stuck in ray.init (an address that does not answer) holds the lock: then
        # there is nothing to disconnect, and its daemon thread ends with the process.
        if not self.lock.acquire(timeout=5.0):
            return
        try:
            self._disconnect()
        finally:
            self.lock.release()

    def _disconnect(self) -> None:
        import ray

        self.connected = False
        self.board = None
        self.remote = None
        if self._owns_ray:
            with contextlib.suppress(Exception):
                ray.shutdown()
            self._owns_ray = False
            self.signals_touched.set()
        self._released.set()

    @property
    def attempted(self) -> bool:
        """Whether the first connection attempt has ended (connected or not)."""
        return self._attempted.is_set()

    def reconnect_later(self) -> None:
        with self._thread_lock:
            if self.closing or (self._reconnector is not None and self._reconnector.is_alive()):
                return
            self._reconnector = threading.Thread(
                target=self._reconnect_loop, name="fabulist-ray-connect", daemon=True
            )
            self._reconnector.start()

    def _reconnect_loop(self) -> None:
        first = not self._attempted.is_set()
        reported = False
        while not self.closing and not self.connected:
            # ray.init against an address that refuses connections can hold the GIL for tens of
            # seconds after a ray.shutdown (the driver would stop answering the bot): knock first.
            if answers(self.settings.address) is False:
                self.last_error = f"nothing answers at {self.settings.address}"
                if not reported:
                    logger.error(
                        "cannot reach the Ray cluster: %s (retrying every %.0f s)",
                        self.last_error,
                        RECONNECT_SECONDS,
                    )
                    reported = True
                connected = False
            else:
                self._released.clear()
                connected = self.connect(warm=True)
            self._attempted.set()
            if connected:
                if not first:
                    logger.info("reconnected to the Ray cluster")
                if self.settings.address is None and self._owns_ray:
                    # Ray ties the processes of a cluster it starts (GCS, raylet) to the thread
                    # that started them (PR_SET_PDEATHSIG): they are killed when this thread
                    # ends, so it waits for the disconnect, then reconnects unless closing.
                    self._released.wait()
                    first = False
                    continue
                return
            time.sleep(RECONNECT_SECONDS)


def answers(address: str | None) -> bool | None:
    """Whether something accepts TCP connections at ``host:port`` (also ``ray://host:port``);
    None when the address names no port (a local cluster, "auto")."""
    if address is None or ":" not in address:
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2.0):
            return True
    except (OSError, ValueError):
        return False
