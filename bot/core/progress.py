"""Progress fan-out: deliver a job's progress to its subscribers without ever blocking.

An awaitable callback (a Discord message edit) runs as a task; while it is busy, newer progress
replaces the pending one, so a slow subscriber sees the newest state and always the final one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable

from bot.core.api import JobProgress, ProgressCallback

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
