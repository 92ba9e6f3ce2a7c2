"""Progress fan-out: deliver a job's progress to its subscribers without ever blocking, and
tell the retraining listeners of the jobs the bot queues itself.

An awaitable callback (a Discord message edit) runs as a task; while it is busy, newer progress
replaces the pending one, so a slow subscriber sees the newest state and always the final one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

from bot.core.api import (
    ChannelRef,
    JobProgress,
    ProgressCallback,
    RetrainingListener,
    RetrainReason,
)

logger = logging.getLogger(__name__)


class ProgressSubscriber:
    """Delivers progress to one callback, coalescing while an awaitable callback is busy."""

    def __init__(self, callback: ProgressCallback, tasks: set[asyncio.Task[None]]) -> None:
        self._callback = callback
        self._tasks = tasks
        self._pending: JobProgress | None = None
        self._task: asyncio.Task[None] | None = None

    def deliver(self, progress: JobProgress) -> None:
        if self._task is not None and not self._task.done():
            self._pending = progress  # only the newest matters; the final one always arrives
            return
        try:
            result = self._callback(progress)
        except Exception:
            logger.exception("progress callback failed")
            return
        if inspect.isawaitable(result):
            self._task = asyncio.ensure_future(self._drain(result))
            self._tasks.add(self._task)
            self._task.add_done_callback(self._tasks.discard)

    async def _drain(self, first: Awaitable[None]) -> None:
        awaitable: Awaitable[None] | None = first
        while awaitable is not None:
            try:
                await awaitable
            except Exception:
                logger.exception("progress callback failed")
            awaitable = None
            if self._pending is not None:
                progress, self._pending = self._pending, None
                try:
                    result = self._callback(progress)
                except Exception:
                    logger.exception("progress callback failed")
                    continue
                if inspect.isawaitable(result):
                    awaitable = result


class RetrainingListeners:
    """Who wants to hear of the retrainings the bot queues itself (``on_retraining``): told of
    each job with a ``RetrainReason`` before it can start, they may follow its progress."""

    def __init__(self) -> None:
        self._listeners: list[RetrainingListener] = []

    def add(self, listener: RetrainingListener) -> Callable[[], None]:
        """Register ``listener``; returns the call that unregisters it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def callbacks(
        self,
        channel: ChannelRef,
        job_id: int,
        reason: RetrainReason | None,
        on_progress: ProgressCallback | None = None,
    ) -> list[ProgressCallback]:
        """A new job's progress callbacks: ``on_progress`` (its requester's), and, for a job the
        bot queued itself (``reason``), those the listeners return (a failing one is logged)."""
        callbacks = [] if on_progress is None else [on_progress]
        if reason is None:
            return callbacks
        for listener in list(self._listeners):
            try:
                callback = listener(channel, job_id, reason)
            except Exception:
                logger.exception("a retraining listener failed for job %d", job_id)
                continue
            if callback is not None:
                callbacks.append(callback)
        return callbacks
