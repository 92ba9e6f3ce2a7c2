"""Training worker processes and the pool that feeds them.

TensorFlow is not fork-safe and importing it costs ~2 s, so each worker is a long-lived process
started with the ``spawn`` context; it imports TensorFlow once, then trains one job at a time.
The bot process never imports TensorFlow: messages across the boundary are tuples of plain
Python values (dicts, lists, str, bytes), never model classes.

Parent <-> worker protocol over one duplex ``multiprocessing`` pipe per worker::

    parent -> worker   ("train", task_dict) | ("cancel", job_id) | ("stop",)
    worker -> parent   ("ready", pid) | ("progress", job_id, dict)
                       | ("done", job_id, result_dict) | ("failed", job_id, message)
                       | ("cancelled", job_id)

Each worker has a reader thread in the bot process that blocks on the pipe and hands messages to
the event loop with ``call_soon_threadsafe``; the loop never blocks on a worker. A crashed or
killed worker shows up as EOF on the pipe: its job fails with a clear message and the reader
thread starts a replacement. Sends run in threads (a story can be megabytes), under a per-worker
lock so a cancel never interleaves with a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[dict[str, Any]], None]
CANCELLED = "Training was cancelled."


@dataclass(frozen=True)
class TrainingTask:
    """Everything a worker needs; plain values only (it crosses the process boundary)."""

    job_id: int
    texts: tuple[str, ...]
    model: dict[str, Any]  # ModelConfig fields except vocab_size
    training: dict[str, Any]  # TrainingConfig fields
    vocabulary_max_size: int | None = None


@dataclass(frozen=True)
class TrainingOutcome:
    job_id: int
    state: Literal["done", "failed", "cancelled"]
    error: str | None = None
    blob: bytes | None = None
    config: dict[str, Any] | None = None
    vocabulary: list[str] | None = None
    figures: dict[str, Any] | None = None


# -- the worker process ------------------------------------------------------------------------

NATIVE_LOGS_ENV = "FABULIST_TF_LOGS"


def quiet_native_stderr() -> None:
    """Keep TensorFlow's C++ log lines off the terminal, before TensorFlow is imported.

    ``TF_CPP_MIN_LOG_LEVEL`` does not cover the lines absl prints before its logging is
    initialised ("All log messages before absl::InitializeLog()...", "oneDNN custom operations
    are on..."), and they break the parent's progress bar. So file descriptor 2 goes to
    /dev/null for the worker's whole life, while Python's ``sys.stderr`` (tracebacks, logging)
    keeps writing to a duplicate of the original descriptor. ``FABULIST_TF_LOGS=1`` keeps
    TensorFlow's own logs (for debugging a worker).
    """
    if os.environ.get(NATIVE_LOGS_ENV, "") not in ("", "0"):
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        sys.stderr.flush()
        python_stderr = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no usable fd 2 (a daemon): nothing to protect
        return
    sys.stderr = open(  # noqa: SIM115 (lives as long as the process)
        python_stderr, "w", buffering=1, encoding="utf-8", errors="backslashreplace"
    )
    os.dup2(devnull, 2)
    os.close(devnull)


def worker_main(conn: Connection) -> None:
    """Entry point of a spawned worker: import TensorFlow once, then serve tasks until told."""
    quiet_native_stderr()
    # Ctrl-C in a terminal reaches the whole process group; the bot decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Training is batch work: on a busy machine the bot's event loop must win the CPU.
    with contextlib.suppress(OSError):
        os.nice(10)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s worker: %(message)s")
    import model.training  # noqa: F401  (warm-up: the first job must not pay the import)

    conn.send(("ready", os.getpid()))
    # A cancel can overtake its job's task (both are sent from threads): remember it.
    cancelled: set[int] = set()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        if message[0] == "cancel":
            cancelled.add(int(message[1]))
        if message[0] == "train":
            early = int(message[1]["job_id"]) in cancelled
            cancelled.clear()  # only the next task can be the one a cancel overtook
            if not _serve(conn, message[1], cancelled=early):
                return


def _serve(conn: Connection, task: dict[str, Any], *, cancelled: bool = False) -> bool:
    """Run one task (or answer "cancelled" at once if ``cancelled``); False when a stop
    arrived meanwhile."""
    from model import ModelError, TrainingCancelled, TrainingConfig, to_bytes, tokenize
    from model.training import train_model

    job_id = int(task["job_id"])
    state = {"cancelled": cancelled, "stop": False}

    def should_cancel() -> bool:
        try:
            while conn.poll():
                message = conn.recv()
                if message[0] == "cancel" and message[1] == job_id:
                    state["cancelled"] = True
                elif message[0] == "stop":
                    state["cancelled"] = state["stop"] = True
        except (EOFError, OSError):
            # The bot process is gone (killed): stop training and exit quietly.
            state["cancelled"] = state["stop"] = True
        return state["cancelled"]

    def on_progress(progress: Any) -> None:
        try:
            conn.send(("progress", job_id, dataclasses.asdict(progress)))
        except OSError:
            state["cancelled"] = state["stop"] = True

    try:
        if should_cancel():
            raise TrainingCancelled()
        tokens: list[str] = []
        for text in task["texts"]:
            tokens.extend(tokenize(text))
        model = train_model(
            tokens,
            dict(task["model"]),
            TrainingConfig(**task["training"]),
            on_progress=on_progress,
            should_cancel=should_cancel,
            vocabulary_max_size=task["vocabulary_max_size"],
        )
        if should_cancel():
            raise TrainingCancelled()
        result = {
            "blob": to_bytes(model),
            "config": model.config.to_dict(),
            "vocabulary": list(model.vocabulary.to_json()),
            "figures": model.figures.to_dict(),
        }
        reply: tuple[Any, ...] = ("done", job_id, result)
    except TrainingCancelled:
        reply = ("cancelled", job_id)
    except ModelError as exc:
        reply = ("failed", job_id, str(exc))
    except MemoryError:
        reply = ("failed", job_id, "Training ran out of memory; try a smaller story or model.")
    except Exception as exc:
        logging.getLogger(__name__).exception("training job %d failed", job_id)
        reply = ("failed", job_id, f"Training failed unexpectedly ({type(exc).__name__}).")
    try:
        conn.send(reply)
    except OSError:  # the bot process is gone
        return False
    return not state["stop"]


# -- the bot side ------------------------------------------------------------------------------


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


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"it was killed by {name}"
    return f"it exited with code {exitcode}"


class TrainingPool:
    """A fixed number of long-lived spawned training workers.

    Loop-agnostic: each ``run`` remembers the calling loop, so one pool can serve several
    services (tests share one). ``start`` is optional: ``run`` starts the workers on first use.
    """

    def __init__(self, size: int = 1) -> None:
        if size < 1:
            raise ValueError("a training pool needs at least one worker")
        self.size = size
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._closing = False
        self._started = False
        self._failed_starts = 0
        # Jobs cancelled before any worker had them (``run`` not yet called or still waiting for a
        # worker): ``run`` then answers "cancelled" without training. Oldest dropped past 1024.
        self._cancelled: dict[int, None] = {}
        self.restarts = 0
        self.broken = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start_sync(self) -> None:
        """Start the workers (blocking for a few ms per process: call from a thread)."""
        with self._lock:
            if self._started or self._closing:
                return
            self._started = True
        for _ in range(self.size):
            self._spawn()

    async def start(self) -> None:
        await asyncio.to_thread(self.start_sync)

    def _spawn(self) -> None:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main, args=(child_end,), name="fabulist-trainer", daemon=True
        )
        process.start()
        child_end.close()
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

    # -- jobs --------------------------------------------------------------------------------

    def pid_for_job(self, job_id: int) -> int | None:
        with self._lock:
            for worker in self._workers:
                if worker.assignment is not None and worker.assignment.job_id == job_id:
                    return worker.process.pid
        return None

    async def run(
        self, task: TrainingTask, on_progress: ProgressCallback | None = None
    ) -> TrainingOutcome:
        """Train ``task`` on an idle worker (waiting briefly for a restarting one).

        RuntimeError if the pool is closed or no worker can be started.
        """
        if not self._started:
            await self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[TrainingOutcome] = loop.create_future()
        deadline = loop.time() + 60.0
        while True:
            with self._lock:
                if task.job_id in self._cancelled:
                    del self._cancelled[task.job_id]
                    return TrainingOutcome(task.job_id, "cancelled", error=CANCELLED)
                if self._closing:
                    raise RuntimeError("the training pool is closed")
                worker = next((w for w in self._workers if w.alive and w.assignment is None), None)
                if worker is not None:
                    worker.assignment = _Assignment(task.job_id, loop, future, on_progress)
                    break
                broken = self.broken
            # A replacement worker may be starting after a crash.
            if broken or loop.time() > deadline:
                raise RuntimeError("no training worker is available")
            await asyncio.sleep(0.05)
        try:
            await asyncio.to_thread(self._send, worker, ("train", dataclasses.asdict(task)))
        except (OSError, ValueError):
            # The worker died under us; its reader thread resolves the future.
            logger.warning("could not hand job %d to worker %s", task.job_id, worker.process.pid)
        return await future

    async def cancel(self, job_id: int) -> bool:
        """Stop ``job_id``: True if a worker had it; else a later ``run`` of it is cancelled."""
        with self._lock:
            worker = next(
                (
                    w
                    for w in self._workers
                    if w.assignment is not None and w.assignment.job_id == job_id
                ),
                None,
            )
            if worker is None:
                self._cancelled[job_id] = None
                while len(self._cancelled) > 1024:
                    del self._cancelled[next(iter(self._cancelled))]
                return False
        try:
            await asyncio.to_thread(self._send, worker, ("cancel", job_id))
        except (OSError, ValueError):
            return False
        return True

    def forget_cancel(self, job_id: int) -> None:
        """Drop a remembered cancel of a job that will not ``run`` (a job id can be reused)."""
        with self._lock:
            self._cancelled.pop(job_id, None)

    @staticmethod
    def _send(worker: _Worker, message: tuple[Any, ...]) -> None:
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
            return
        with self._lock:
            assignment = worker.assignment
            if assignment is None or message[1] != assignment.job_id:
                return
            if kind != "progress":
                worker.assignment = None
        if kind == "progress":
            if assignment.on_progress is not None:
                _post(assignment.loop, assignment.on_progress, message[2])
            return
        job_id = assignment.job_id
        if kind == "done":
            result = message[2]
            outcome = TrainingOutcome(
                job_id,
                "done",
                blob=result["blob"],
                config=result["config"],
                vocabulary=result["vocabulary"],
                figures=result["figures"],
            )
        elif kind == "cancelled":
            outcome = TrainingOutcome(job_id, "cancelled", error=CANCELLED)
        else:
            outcome = TrainingOutcome(job_id, "failed", error=str(message[2]))
        _resolve(assignment, outcome)

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


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(callback, *args)


def _resolve(assignment: _Assignment, outcome: TrainingOutcome) -> None:
    def settle() -> None:
        if not assignment.future.done():
            assignment.future.set_result(outcome)

    _post(assignment.loop, settle)
