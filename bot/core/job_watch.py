"""Open jobs that another process ended: this process's trainings stop within a second.

Several processes share one store (shards on PostgreSQL; the bot and a CLI on one SQLite file).
When one of them deletes a member's data it ends, in the deletion's transaction, the open jobs
of the affected channels, another process's trainings among them; ``forget`` deletes a
channel's jobs. The owning process looks its open jobs up in the store every
:data:`WATCH_SECONDS` while it has any (``StoryStore.still_open``, one small query), and a job
no longer open there is discarded here: its queue place goes, its trainer is cancelled, and its
outcome is never stored (``activate_model`` refuses an ended job anyway, should the trainer
finish first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from bot.core.api import JobResult
from bot.core.job_records import JobLedger, OpenJob

logger = logging.getLogger(__name__)

WATCH_SECONDS = 0.25  # the promise is 1 s, with the trainer's cancel after it
# An outage fails every round: one warning when it starts and one a minute while it lasts, not
# four a second.
OUTAGE_WARNING_SECONDS = 60.0


class JobWatch:
    """Polls the store for this process's open jobs while there are any (see the module doc)."""

    def __init__(
        self,
        ledger: JobLedger,
        open_jobs: Callable[[], Collection[OpenJob]],
        on_ended: Callable[[OpenJob, JobResult], None],
    ) -> None:
        self.ledger = ledger
        self._open_jobs = open_jobs
        self._on_ended = on_ended
        self._task: asyncio.Future[Any] | None = None

    def start(self, spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Future[Any]]) -> None:
        """Watch from now on until no job is open (``spawn`` runs and keeps the task)."""
        if self._task is None or self._task.done():
            self._task = spawn(self._watch())

    async def _watch(self) -> None:
        failing_since: float | None = None
        warned_at = 0.0
        while self._open_jobs():
            await asyncio.sleep(WATCH_SECONDS)
            watched = {job.job_id: job for job in self._open_jobs() if job.discarded is None}
            if not watched:
                continue
            try:
                still_open = await self.ledger.store.still_open(list(watched))
                for job_id in set(watched) - still_open:
                    ended = await self.ledger.ended_elsewhere(job_id)
                    job = watched[job_id]
                    if ended is not None and job.discarded is None and not job.result.done():
                        logger.info("job %d was ended by another process: %s", job_id, ended.state)
                        self._on_ended(job, ended)
            except Exception as exc:  # a lost connection: look again at the next round
                now = time.monotonic()
                if failing_since is None or now - warned_at >= OUTAGE_WARNING_SECONDS:
                    failing_since = now if failing_since is None else failing_since
                    warned_at = now
                    logger.warning(
                        "could not look up the open jobs in the store for %.0f s: %s",
                        now - failing_since,
                        exc,
                    )
            else:
                if failing_since is not None:
                    logger.info("the open jobs can be looked up in the store again")
                failing_since = None
