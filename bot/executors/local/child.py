"""The training process's program (``spawn``ed by ``bot.executors.local.pool``).

It imports TensorFlow once, then trains one task at a time. Messages across the boundary are
tuples of plain Python values (dicts, lists, str, bytes), never model classes::

    parent -> child   ("train", task_dict) | ("cancel", job_id) | ("stop",)
    child -> parent   ("ready", pid) | ("progress", job_id, dict)
                      | ("done", job_id, result_dict) | ("failed", job_id, message)
                      | ("cancelled", job_id)

The parent sends a task's cancel only after its ``train`` (one lock orders a child's sends), so
a cancel never overtakes its task; one that arrives after the task ended is ignored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from bot.executors.training_task import import_training_code, run_training

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
    import_training_code()  # warm-up: the first job must not pay the import

    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        if message[0] == "train" and not _serve(conn, message[1]):
            return


def _serve(conn: Connection, task: dict[str, Any]) -> bool:
    """Run one task; False when a stop arrived meanwhile (or the parent is gone)."""
    job_id = int(task["job_id"])
    state = {"cancelled": False, "stop": False}

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

    def on_progress(progress: dict[str, Any]) -> None:
        try:
            conn.send(("progress", job_id, progress))
        except OSError:
            state["cancelled"] = state["stop"] = True

    outcome = run_training(task, on_progress, should_cancel)
    if outcome["state"] == "done":
        result = {key: outcome[key] for key in ("blob", "config", "vocabulary", "figures")}
        reply: tuple[Any, ...] = ("done", job_id, result)
    elif outcome["state"] == "cancelled":
        reply = ("cancelled", job_id)
    else:
        reply = ("failed", job_id, outcome["error"])
    try:
        conn.send(reply)
    except OSError:  # the bot process is gone
        return False
    return not state["stop"]
