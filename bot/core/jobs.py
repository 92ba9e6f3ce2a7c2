"""The training scheduler: one open job per channel, a global FIFO queue in front of the
executor's capacity, live progress, and the job's end recorded in the store.

Restart policy: on ``start`` every job that a process which is gone left queued or running is
marked interrupted with a message telling the member to train again; nothing is re-queued, so a
story that crashes training cannot crash-loop the bot. Jobs of a live process (the running bot,
seen from an offline ``python -m bot status``) are left alone (``bot.owner``).

Cancels: a job's cancel state lives here (``cancel_requested``/``discarded``) until it is
handed to the executor, and in its ``TrainingRun`` after: ``_run`` looks before the hand-over,
with no await in between, so a cancel or /forget that arrives first is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Iterator
from typing import Any

from bot.config import Config
from bot.core.api import (
    ChannelRef,
    EndedJob,
    JobProgress,
    JobResult,
    JobState,
    Member,
    ProgressCallback,
    TrainingJob,
)
from bot.core.executor import (
    CANCELLED,
    TrainingExecutor,
    TrainingOutcome,
    TrainingTask,
)
from bot.core.job_records import (
    FORGOTTEN,
    NOT_RECORDED,
    NOT_YET_RECORDED,
    SHUTDOWN_MESSAGE,
    JobLedger,
    OpenJob,
)
from bot.core.job_watch import JobWatch
from bot.core.progress import ProgressSubscriber, RetrainingListeners
from bot.core.store import JobRecord, StoryStore
from bot.core.validation import JobOptions
from bot.errors import Busy, NotAllowed, NotFound, QueueFull, StorageError

logger = logging.getLogger(__name__)


class TrainingScheduler:
    """Queues, runs and ends training jobs (see the module docstring)."""

    def __init__(self, config: Config, store: StoryStore, executor: TrainingExecutor) -> None:
        self.config = config
        self.store = store
        self.executor = executor
        self.ledger = JobLedger(config, store)
        self._jobs: dict[int, OpenJob] = {}
        self._by_channel: dict[int, OpenJob] = {}
        self._queue: deque[OpenJob] = deque()
        self._running: set[int] = set()
        self._reserved: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.retraining = RetrainingListeners()
        self.closing = False
        # jobs another process ended (a member's data deleted there) end here too
        self.watch = JobWatch(
            self.ledger, self._jobs.values, lambda job, end: self._discard(job, "elsewhere", end)
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def interrupt_orphans(self) -> None:
        """Mark the open jobs of processes that are gone as interrupted."""
        await self.ledger.interrupt_orphans()

    async def close(self) -> None:
        """Interrupt the open jobs (recording it) and stop their trainings."""
        self.closing = True
        for job in list(self._jobs.values()):
            job.discarded = "interrupted"
            message = SHUTDOWN_MESSAGE.format(kept="")
            try:
                message = SHUTDOWN_MESSAGE.format(
                    kept=await self.ledger.kept(job.channel.channel_id)
                )
                await self.store.finish_job(job.job_id, JobState.INTERRUPTED, message)
            except Exception:
                # The next start interrupts it (its owner is gone by then); say so meanwhile.
                logger.exception("could not record job %d as interrupted", job.job_id)
                message += NOT_RECORDED
            if job.run is not None:
                job.run.cancel()
            self._settle(job, JobResult(job.job_id, JobState.INTERRUPTED, message, None, None))
        self._queue.clear()
        for task in list(self._tasks):
            task.cancel()

    # -- admission -------------------------------------------------------------------------

    def check_not_busy(self, channel: ChannelRef) -> None:
        """Busy if the channel has an open job or another request is being checked for it."""
        job = self._by_channel.get(channel.channel_id)
        if job is not None:
            raise _busy(job.job_id, self._position(job), self._progress(job).epoch)
        if channel.channel_id in self._reserved:
            raise Busy("Another story for this channel is being checked right now.", 0, None)

    @contextlib.contextmanager
    def reserved(self, channel: ChannelRef) -> Iterator[None]:
        """Hold the channel while a request checks and stores (after ``check_not_busy``)."""
        self._reserved.add(channel.channel_id)
        try:
            yield
        finally:
            self._reserved.discard(channel.channel_id)

    def check_queue(self) -> None:
        waiting = len(self._queue)
        free = len(self._running) < self.executor.capacity
        if waiting >= self.config.workers.queue_length and not (free and waiting == 0):
            raise QueueFull(
                "The training queue is full ({waiting} waiting); try again in a few minutes.",
                waiting=waiting,
            )

    def enqueue(
        self, channel: ChannelRef, record: JobRecord, on_progress: ProgressCallback | None
    ) -> TrainingJob:
        """Queue a stored job; it runs when the executor has room."""
        job = OpenJob(
            job_id=record.id,
            channel=channel,
            requested_by=record.requested_by,
            story_ids=record.story_ids,
            options=JobOptions.from_dict(record.options),
            result=asyncio.get_running_loop().create_future(),
        )
        reason = job.options.reason  # set when the bot queued it itself: adapters show it
        for callback in self.retraining.callbacks(channel, job.job_id, reason, on_progress):
            job.subscribers.append(ProgressSubscriber(callback, self._tasks))
        self._jobs[job.job_id] = job
        self._by_channel[channel.channel_id] = job
        self._queue.append(job)
        self.watch.start(self._spawn_task)
        self._dispatch()
        if job.state == JobState.QUEUED:
            self._emit(job)
        return TrainingJob(
            job_id=job.job_id,
            channel=channel,
            state=job.state,
            queue_position=self._position(job),
            story_id=record.story_ids[-1] if record.story_ids else None,
            story_ids=record.story_ids,
            requested_by=record.requested_by,
        )

    # -- running ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while self._queue and not self.closing and len(self._running) < self.executor.capacity:
            job = self._queue.popleft()
            job.state = JobState.RUNNING
            job.started = time.monotonic()
            self._running.add(job.job_id)
            self._spawn_task(self._run(job))
            for waiting in self._queue:
                self._emit(waiting)

    def _spawn_task(self, coroutine: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, job: OpenJob) -> None:
        result: JobResult
        try:
            await self.store.start_job(job.job_id)
            self._emit(job)
            outcome = TrainingOutcome(job.job_id, "cancelled", error=CANCELLED)
            if not job.stopped:
                texts = await self.store.story_texts(job.story_ids)
                if not job.stopped:  # no await between this look and the hand-over
                    task = TrainingTask(
                        job_id=job.job_id,
                        texts=tuple(texts),
                        model=dict(job.options.model),
                        training=dict(job.options.training),
                        vocabulary_max_size=self.config.training.vocabulary_max_size,
                    )
                    del texts  # the texts live only as long as the hand-over
                    job.run = self.executor.submit(
                        task, lambda data: self._on_trainer_progress(job, data)
                    )
                    outcome = await job.run.outcome()
            result = await self.ledger.finish(job, outcome)
        except asyncio.CancelledError:
            if job.run is not None:
                job.run.cancel()
            raise
        except Exception as exc:
            logger.exception("training job %d failed in the service", job.job_id)
            message = (
                str(exc) if isinstance(exc, StorageError) else "Training failed (internal error)."
            )
            if job.discarded is None and not await self.ledger.record_end(
                job, JobState.FAILED, message
            ):
                self._spawn_task(self.ledger.record_end_later(job.job_id, JobState.FAILED, message))
                message += NOT_YET_RECORDED
            result = JobResult(job.job_id, JobState.FAILED, message, None, None)
        self._settle(job, result)

    def _settle(self, job: OpenJob, result: JobResult) -> None:
        self._running.discard(job.job_id)
        self._jobs.pop(job.job_id, None)
        if self._by_channel.get(job.channel.channel_id) is job:
            del self._by_channel[job.channel.channel_id]
        job.state = JobState(result.state)
        if not job.result.done():
            job.result.set_result(result)
        self._emit(job, error=result.error)
        self._dispatch()

    def _on_trainer_progress(self, job: OpenJob, data: dict[str, Any]) -> None:
        if job.job_id not in self._jobs:
            return
        job.progress = data
        self._emit(job)
        now = time.monotonic()
        if now - job.last_saved >= 1.0 and job.discarded is None:
            job.last_saved = now
            self._spawn_task(self._save_progress(job.job_id, data))

    async def _save_progress(self, job_id: int, data: dict[str, Any]) -> None:
        try:
            await self.store.update_job_progress(job_id, data)
        except Exception:
            logger.exception("could not save progress of job %d", job_id)

    # -- progress --------------------------------------------------------------------------

    def _position(self, job: OpenJob) -> int | None:
        for index, queued in enumerate(self._queue):
            if queued is job:
                return index + 1
        return None

    def _progress(self, job: OpenJob, error: str | None = None) -> JobProgress:
        return job.report(self._position(job), error)

    def _emit(self, job: OpenJob, error: str | None = None) -> None:
        if not job.subscribers:
            return
        progress = self._progress(job, error)
        for subscriber in job.subscribers:
            subscriber.deliver(progress)

    def progress(self, channel: ChannelRef) -> JobProgress | None:
        """The channel's open job's progress, or None."""
        job = self._by_channel.get(channel.channel_id)
        return None if job is None else self._progress(job)

    def open_job(self, channel: ChannelRef) -> tuple[tuple[int, ...], JobOptions] | None:
        """The stories and options of the channel's queued or running job here, if any."""
        job = self._by_channel.get(channel.channel_id)
        return None if job is None else (job.story_ids, job.options)

    def is_open(self, job_id: int) -> bool:
        return job_id in self._jobs

    async def ended_job(self, channel: ChannelRef, job_id: int) -> EndedJob | None:
        """``job_id`` of this channel if it has ended; None while it is open, or if unknown."""
        if job_id in self._jobs:
            return None
        record = await self.store.job(job_id)
        if record is None or record.channel_id != channel.channel_id or record.state.open:
            return None
        return await self.ledger.ended(record)

    # -- ends ------------------------------------------------------------------------------

    async def wait_for_job(self, job_id: int) -> JobResult:
        job = self._jobs.get(job_id)
        if job is not None:
            return await asyncio.shield(job.result)
        record = await self.store.job(job_id)
        if record is None:
            raise NotFound("There is no training job #{job}.", job=job_id)
        return await self.ledger.result_of(record)

    async def cancel(self, channel: ChannelRef, member: Member) -> JobProgress | None:
        """Cancel the channel's queued or running job; None if there is none."""
        job = self._by_channel.get(channel.channel_id)
        if job is None:
            return None
        if not member.is_admin and member.user_id != job.requested_by:
            raise NotAllowed("Only the member who started this training or an admin can cancel it.")
        if job.state == JobState.QUEUED:
            message = "Training was cancelled before it started."
            # Recorded first: if the store refuses (StorageUnavailable), the job stays queued.
            await self.store.finish_job(job.job_id, JobState.CANCELLED, message)
            if job.result.done():  # ended meanwhile (``JobWatch``)
                return self._progress(job)
            if job.state == JobState.QUEUED:
                self._queue.remove(job)
            else:  # dispatched meanwhile: its run must not store a model
                job.discarded = "cancelled"
                if job.run is not None:
                    job.run.cancel()
            self._settle(job, JobResult(job.job_id, JobState.CANCELLED, message, None, None))
            for waiting in self._queue:
                self._emit(waiting)
            return self._progress(job)
        job.cancel_requested = True
        if job.run is not None:
            job.run.cancel()
        self._emit(job)
        return self._progress(job)

    def discard(self, channel: ChannelRef) -> None:
        """The channel is being forgotten: end its job without storing anything."""
        job = self._by_channel.get(channel.channel_id)
        if job is not None:
            ended = JobResult(job.job_id, JobState.CANCELLED, FORGOTTEN, None, None)
            self._discard(job, "forgotten", ended)

    def _discard(self, job: OpenJob, why: str, ended: JobResult) -> None:
        """End ``job`` as ``ended`` without storing anything."""
        job.discarded, job.ended = why, ended
        if job.state == JobState.QUEUED:
            with contextlib.suppress(ValueError):
                self._queue.remove(job)
            self._settle(job, ended)
        elif job.run is not None:
            job.run.cancel()


def _busy(job_id: int, position: int | None, epochs: int) -> Busy:
    """The answer to a training request in a channel whose job is queued or running."""
    if position is not None:
        return Busy(
            "This channel already has a training (job #{job}, queued at position "
            "{position}). Wait for it or cancel it first.",
            job_id,
            position,
            job=job_id,
            position=position,
        )
    return Busy(
        "This channel already has a training (job #{job}, running, {epochs} epochs "
        "done). Wait for it or cancel it first.",
        job_id,
        position,
        job=job_id,
        epochs=epochs,
    )
