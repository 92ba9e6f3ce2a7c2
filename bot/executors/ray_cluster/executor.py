"""The Ray executor: each training is a Ray task on a cluster, from a laptop to many GPU nodes.

The bot process is a Ray driver. ``start`` connects (``ray.init``: an address such as ``auto``,
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
it never runs on the monitor thread or the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.core.executor import CANCELLED, ProgressCallback, TrainingOutcome, TrainingTask

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how often finished tasks and progress are looked at
BOARD_TIMEOUT = 15.0  # a board that does not answer this long means the cluster is lost
RECONNECT_SECONDS = 10.0
# Object store of a local cluster the bot starts itself: models are megabytes, not gigabytes.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024

UNREACHABLE = "The training cluster cannot be reached right now; try again in a few minutes."
LOST = "The connection to the training cluster was lost during training."
WORKER_DIED = "The training process stopped unexpectedly (its Ray worker died)."
NODE_DIED = "The training stopped unexpectedly (the machine running it left the cluster)."
OUT_OF_MEMORY = "Training ran out of memory on the cluster; try a smaller story."
CLOSED = "The training service is shutting down."


@dataclass(frozen=True)
class RaySettings:
    """How to reach the cluster and what one training asks of it."""

    address: str | None = None  # None: start a local cluster in the bot process
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    max_concurrent_jobs: int = 1
    keras_backend: str | None = None  # KERAS_BACKEND of the trainings; None: the nodes' default
    # Only for a local cluster the bot starts (address None).
    local_cpus: int | None = None  # None: enough for max_concurrent_jobs
    local_object_store_bytes: int = LOCAL_OBJECT_STORE_BYTES

    def __post_init__(self) -> None:
        if self.cpus_per_job <= 0:
            raise ValueError("cpus_per_job must be positive")
        if self.gpus_per_job < 0 or (self.gpus_per_job > 1 and not self.gpus_per_job.is_integer()):
            raise ValueError("gpus_per_job must be 0, a fraction of one GPU, or whole GPUs")
        if self.max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")

    def env_vars(self) -> dict[str, str]:
        env: dict[str, str] = {"TF_CPP_MIN_LOG_LEVEL": "2"}
        if self.keras_backend is not None:
            env["KERAS_BACKEND"] = self.keras_backend
        if self.gpus_per_job > 0:
            # Several jobs may share a GPU (fractional num_gpus): no backend may grab all of it.
            env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
            env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        return env


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
        self._reconnector: threading.Thread | None = None
        self._connect_lock = threading.Lock()
        self._board: Any = None
        self._remote: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop that started us
        self._owns_ray = False  # this executor called ray.init (so it calls ray.shutdown)
        self._started_local = False
        self.connected = False
        self.closing = False
        self.last_error: str | None = None
        # job id -> (node ip, worker pid) of the running trainings (for operators and tests).
        self.placements: dict[int, tuple[str, int]] = {}

    @property
    def capacity(self) -> int:
        return self.settings.max_concurrent_jobs

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the cluster (in a thread) and warm one Ray worker per concurrent job.

        Never raises for an unreachable cluster: the error is logged, trainings fail with a
        clear message and a background thread keeps trying to connect.
        """
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.start_sync)

    def start_sync(self) -> None:
        with self._lock:
            if self._monitor is not None or self.closing:
                return
            self._monitor = threading.Thread(
                target=self._monitor_loop, name="fabulist-ray-monitor", daemon=True
            )
        if not self._connect(warm=True):
            self._reconnect_later()
        self._monitor.start()

    def _connect(self, *, warm: bool = False) -> bool:
        import ray

        from bot.executors.ray_cluster import trainer

        with self._connect_lock:
            if self.closing:
                return False
            settings = self.settings
            try:
                if not ray.is_initialized():
                    try:
                        ray.init(**self._init_options())
                    finally:
                        self._reclaim_signals()
                    self._owns_ray = True
                board_actor: Any = ray.remote(num_cpus=0, max_restarts=0)(trainer.JobBoard)
                board = board_actor.remote()
                ray.get(board.ping.remote(), timeout=60)
                self._remote = ray.remote(max_retries=0)(trainer.train).options(
                    num_cpus=settings.cpus_per_job,
                    num_gpus=settings.gpus_per_job,
                    runtime_env={"env_vars": settings.env_vars()},
                )
                self._board = board
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.error(
                    "cannot reach the Ray cluster at %s: %s",
                    settings.address or "(local)",
                    self.last_error,
                )
                self._disconnect()
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

    def _init_options(self) -> dict[str, Any]:
        settings = self.settings
        options: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "namespace": "fabulist",
            # The trainers' output (TensorFlow's start-up chatter) stays in the Ray session's log
            # files: relaying it costs the bot's loop and says nothing a failed outcome doesn't.
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

    def _disconnect(self) -> None:
        import ray

        self.connected = False
        self._board = None
        self._remote = None
        if self._owns_ray:
            with contextlib.suppress(Exception):
                ray.shutdown()
            self._owns_ray = False
            self._reclaim_signals()

    def _reclaim_signals(self) -> None:
        """Give SIGTERM/SIGINT back to the bot's handlers.

        Ray's core worker installs its own C-level handlers on ``ray.init`` and resets them to the
        default on ``ray.shutdown`` (then a SIGTERM kills the bot instead of stopping it
        cleanly). Re-setting the Python handlers re-installs Python's C handler; only the main
        thread may, so it runs on the loop that started the executor (the bot's main thread).
        """
        loop = self._loop
        if loop is None:
            return

        def reinstall() -> None:
            if threading.current_thread() is not threading.main_thread():
                return
            for number in (signal.SIGTERM, signal.SIGINT):
                handler = signal.getsignal(number)
                if handler is not None:
                    with contextlib.suppress(ValueError, OSError, TypeError):
                        signal.signal(number, handler)

        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(reinstall)

    def _reconnect_later(self) -> None:
        with self._lock:
            if self.closing or (self._reconnector is not None and self._reconnector.is_alive()):
                return
            self._reconnector = threading.Thread(
                target=self._reconnect_loop, name="fabulist-ray-reconnect", daemon=True
            )
            self._reconnector.start()

    def _reconnect_loop(self) -> None:
        while not self.closing and not self.connected:
            time.sleep(RECONNECT_SECONDS)
            if not self.closing and self._connect():
                logger.info("reconnected to the Ray cluster")

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self, timeout: float = 10.0) -> None:
        """Fail every open run, stop their Ray tasks, disconnect (blocking: call from a thread)."""
        with self._lock:
            self.closing = True
            monitor = self._monitor
        self._commands.put(("stop", None))
        if monitor is not None and monitor.is_alive():
            monitor.join(timeout)
        with self._connect_lock:
            self._disconnect()

    # -- tasks -------------------------------------------------------------------------------

    def submit(self, task: TrainingTask, on_progress: ProgressCallback | None = None) -> RayRun:
        """Hand ``task`` to the monitor thread (never blocks the loop)."""
        run = RayRun(self, task, on_progress, asyncio.get_running_loop())
        if self._loop is None:
            self._loop = run.loop
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
        if self._running and self.connected:
            self._collect()
        return True

    def _submit(self, run: RayRun) -> None:
        task = run.task
        run.task = None
        if run.cancelled or task is None:
            run.resolve(TrainingOutcome(run.job_id, "cancelled", error=CANCELLED))
            return
        if not self.connected or self._remote is None:
            run.resolve(TrainingOutcome(run.job_id, "failed", error=UNREACHABLE))
            self._reconnect_later()
            return
        try:
            run.ref = self._remote.remote(dataclasses.asdict(task), self._board)
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
            self._board.cancel.remote(run.job_id)
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
                self._board.forget.remote(run.job_id)
        if not self._running:
            return
        try:
            posted, started = ray.get(self._board.drain.remote(), timeout=BOARD_TIMEOUT)
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
        self.last_error = f"{type(exc).__name__}: {exc}"
        runs = list(self._running.values())
        self._running.clear()
        self.placements.clear()
        for run in runs:
            run.resolve(TrainingOutcome(run.job_id, "failed", error=LOST))
        with self._connect_lock:
            self._disconnect()
        self._reconnect_later()

    def _shutdown_runs(self) -> None:
        import ray

        runs = list(self._running.values())
        self._running.clear()
        for run in runs:
            if self.connected:
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
