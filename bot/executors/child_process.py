"""What the executors' spawned processes share: starting one, describing its end, and handing
what its reader thread received to the event loop.

TensorFlow and Ray are not fork-safe, so every child is started with the ``spawn`` context and
talks to the bot over one duplex pipe of plain picklable tuples. The bot side reads each pipe in
a thread of its own and posts to the loop with ``call_soon_threadsafe``; the loop never blocks
on a child.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any


def spawn_child(
    target: Callable[..., None], args: tuple[Any, ...], name: str
) -> tuple[BaseProcess, Connection]:
    """Start ``target(child_end, *args)`` in a fresh interpreter (``spawn``, daemonic): the
    process and the bot's end of the pipe. Blocks a few ms (fork and exec): call off the loop."""
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe(duplex=True)
    process = context.Process(target=target, args=(child_end, *args), name=name, daemon=True)
    process.start()
    child_end.close()
    return process, parent_end


def describe_exit(exitcode: int | None) -> str:
    """How a child ended, for people: "it was killed by SIGKILL", "it exited with code 1"."""
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"it was killed by {name}"
    return f"it exited with code {exitcode}"


def post(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> None:
    """Run ``callback(*args)`` on ``loop`` soon (from any thread); nothing if it closed."""
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(callback, *args)


def settle(future: asyncio.Future[Any], result: Any) -> None:
    """Set ``future``'s result from any thread, unless it is already done."""

    def set_result() -> None:
        if not future.done():
            future.set_result(result)

    post(future.get_loop(), set_result)
