"""The store side of training jobs: an open job's state, its end recorded (a new model
activated, or why it did not end with one), results and ended jobs read back.

English here is the job's ``error`` for people, stored with the job and shown as it is.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from bot.config import Config
from bot.core.api import (
    ChannelRef,
    EndedJob,
    JobProgress,
    JobResult,
    JobState,
    TrainingFigures,
)
from bot.core.executor import CANCELLED, TrainingOutcome, TrainingRun
from bot.core.progress import ProgressSubscriber
from bot.core.store import JobRecord, NewModel, StoryStore
from bot.core.validation import JobOptions
from bot.errors import StorageError
from model import ModelError

logger = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = (
    "The bot restarted while this training was queued or running.{kept} "
    "Upload the story again to train it."
)
SHUTDOWN_MESSAGE = "The bot shut down during this training.{kept}"
KEPT = " The previous model is still active."
FORGOTTEN = "The channel was forgotten."
NOT_RECORDED = " (The bot could not record this in its database.)"
NOT_YET_RECORDED = " (The bot could not record this in its database yet; it keeps trying.)"
#: Seconds before each try to record a job's end the store refused: then the last, repeated.
RECORD_RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)


@dataclass
class OpenJob:
    job_id: int
    channel: ChannelRef
    requested_by: int | None
    story_ids: tuple[int, ...]
    options: JobOptions
    result: asyncio.Future[JobResult]
    state: JobState = JobState.QUEUED
    progress: dict[str, Any] | None = None
    started: float | None = None
    subscribers: list[ProgressSubscriber] = field(default_factory=list)
    cancel_requested: bool = False
    # "forgotten" | "interrupted" | "cancelled" (recorded already) | "elsewhere" (another
    # process ended it): the outcome is not stored
    discarded: str | None = None
    ended: JobResult | None = None  # the end of a job forgotten or ended elsewhere
    run: TrainingRun | None = None  # once handed to the executor
    last_saved: float = 0.0

    @property
    def stopped(self) -> bool:
        return self.cancel_requested or self.discarded is not None

    def report(self, queue_position: int | None, error: str | None = None) -> JobProgress:
        """The job's progress as adapters see it."""
        data = self.progress or {}
        cancelling = self.cancel_requested and self.state == JobState.RUNNING
        elapsed = data.get("elapsed_seconds")
        if elapsed is None:
            elapsed = 0.0 if self.started is None else time.monotonic() - self.started
        return JobProgress(
            job_id=self.job_id,
            state="cancelling" if cancelling else str(self.state),
            epoch=int(data.get("epoch", 0)),
            max_epochs=int(data.get("max_epochs", self.options.max_epochs)),
            loss=data.get("loss"),
            accuracy=data.get("accuracy"),
            learnable_accuracy=data.get("learnable_accuracy"),
            eta_seconds=data.get("eta_seconds"),
            elapsed_seconds=float(elapsed),
            queue_position=queue_position,
            val_accuracy=data.get("val_accuracy"),
            error=error,
            reason=self.options.reason,
            expected_epochs=data.get("expected_epochs"),
        )


def figures_of(figures: dict[str, Any], model_id: int) -> TrainingFigures | None:
    try:
        return TrainingFigures.from_dict(figures)
    except ModelError:
        logger.warning("model %d has unreadable figures", model_id)
        return None


class JobLedger:
    """Records job ends in the store and reads results back."""

    def __init__(self, config: Config, store: StoryStore) -> None:
        self.config = config
        self.store = store

    async def interrupt_orphans(self) -> None:
        """Mark the open jobs of processes that are gone as interrupted."""
        for record in await self.store.orphaned_jobs():
            kept = await self.kept(record.channel_id)
            await self.store.finish_job(
                record.id, JobState.INTERRUPTED, INTERRUPTED_MESSAGE.format(kept=kept)
            )
            logger.warning(
                "job %d (channel %d) was %s: interrupted",
                record.id,
                record.channel_id,
                record.state,
            )

    async def record_end(self, job: OpenJob, state: JobState, message: str) -> bool:
        """Store a job's end; False (logged) if the store refused it."""
        try:
            await self.store.finish_job(job.job_id, state, message)
        except Exception:
            logger.exception("could not record the end (%s) of job %d", state, job.job_id)
            return False
        return True

    async def record_end_later(self, job_id: int, state: JobState, message: str) -> None:
        """Retry storing a refused job end until the store takes it (a full disk freed).

        Without it the job's row would say "running" until the next start; cancelled at close,
        where the next start marks it interrupted instead.
        """
        for attempt in itertools.count():
            await asyncio.sleep(RECORD_RETRY_SECONDS[min(attempt, len(RECORD_RETRY_SECONDS) - 1)])
            try:
                await self.store.finish_job(job_id, state, message)
            except Exception as exc:
                if attempt == 0:
                    logger.warning("job %d: its end is still not recorded (%s)", job_id, exc)
                continue
            logger.info("job %d: its end (%s) recorded on retry %d", job_id, state, attempt + 1)
            return

    async def kept(self, channel_id: int) -> str:
        """:data:`KEPT` if the channel still has an active model, else an empty string."""
        kept = await self.store.active_model_id(channel_id) is not None
        return KEPT if kept else ""

    async def finish(self, job: OpenJob, outcome: TrainingOutcome) -> JobResult:
        if job.discarded is not None:
            if job.ended is not None:
                return job.ended
            if job.discarded == "cancelled":
                return JobResult(job.job_id, JobState.CANCELLED, CANCELLED, None, None)
            message = SHUTDOWN_MESSAGE.format(kept="")
            try:
                message = SHUTDOWN_MESSAGE.format(kept=await self.kept(job.channel.channel_id))
            except Exception:
                logger.exception("could not look up channel %d", job.channel.channel_id)
            return JobResult(job.job_id, JobState.CANCELLED, message, None, None)
        if outcome.state == "done" and job.cancel_requested:
            # The cancel came too late to stop the trainer: keep the promise, not the model.
            outcome = TrainingOutcome(job.job_id, "cancelled")
        if outcome.state == "done":
            return await self._activate(job, outcome)
        kept = await self.kept(job.channel.channel_id)
        if outcome.state == "cancelled":
            state, message = JobState.CANCELLED, CANCELLED + kept
        else:
            state, message = JobState.FAILED, (outcome.error or "Training failed.") + kept
        await self.store.finish_job(job.job_id, state, message)
        return JobResult(job.job_id, state, message, None, None)

    async def _activate(self, job: OpenJob, outcome: TrainingOutcome) -> JobResult:
        assert outcome.blob is not None and outcome.config is not None
        assert outcome.figures is not None and outcome.vocabulary is not None
        try:
            figures = TrainingFigures.from_dict(outcome.figures)
            record = await self.store.activate_model(
                job_id=job.job_id,
                channel_id=job.channel.channel_id,
                model=NewModel(
                    config=outcome.config,
                    vocabulary=outcome.vocabulary,
                    blob=outcome.blob,
                    figures=outcome.figures,
                    options=job.options.to_dict(),
                ),
                story_ids=job.story_ids,
                keep_versions=self.config.storage.model_versions_kept,
            )
        except (StorageError, ModelError) as exc:
            ended = await self.ended_elsewhere(job.job_id)
            if ended is not None:  # ended by another process just before the commit
                return ended
            message = f"The trained model could not be stored: {exc}"
            await self.store.finish_job(job.job_id, JobState.FAILED, message)
            return JobResult(job.job_id, JobState.FAILED, message, None, None)
        logger.info(
            "channel %d: model version %d active (job %d)",
            job.channel.channel_id,
            record.version,
            job.job_id,
        )
        return JobResult(job.job_id, JobState.DONE, None, record.version, figures)

    async def ended_elsewhere(self, job_id: int) -> JobResult | None:
        """The job's end as the store has it once another process ended it (or forgot its
        channel); None while it is open there."""
        record = await self.store.job(job_id)
        if record is None:
            return JobResult(job_id, JobState.CANCELLED, FORGOTTEN, None, None)
        return None if record.state.open else await self.result_of(record)

    async def result_of(self, record: JobRecord) -> JobResult:
        version: int | None = None
        figures: TrainingFigures | None = None
        model = None if record.model_id is None else await self.store.model(record.model_id)
        if model is not None:
            version = model.version
            figures = figures_of(model.figures, model.id)
        imported = record.options.get("mode") == "import"
        return JobResult(record.id, record.state, record.error, version, figures, imported)

    async def ended(self, record: JobRecord) -> EndedJob:
        story = (
            await self.store.story(record.channel_id, record.story_ids[-1])
            if record.story_ids
            else None
        )
        return EndedJob(
            channel=ChannelRef(guild_id=record.guild_id, channel_id=record.channel_id),
            filename=story.filename if story is not None else None,
            result=await self.result_of(record),
            message_id=record.progress_message_id,
            message_channel_id=record.progress_channel_id,
        )
