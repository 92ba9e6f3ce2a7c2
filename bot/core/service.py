"""StoryService: the one object the adapters (CLI, console, Discord cogs) call.

A small facade over parts with one job each: ``validation`` and ``uploads`` check every request
before any work starts, ``jobs`` queues trainings in front of a ``TrainingExecutor``,
``model_cache`` answers ``/continue`` off the loop, ``library`` keeps stories and versions,
``transfer`` exports and imports. It is typed against the ``StoryStore`` and
``TrainingExecutor`` protocols; ``bot.app.open_app`` wires the real ones. Nothing here imports
TensorFlow: only the executor's trainers do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial

from bot.config import Config
from bot.core.api import (
    CacheStats,
    ChannelRef,
    Continuation,
    ContinueOptions,
    DataDeletion,
    EndedJob,
    FilterChange,
    FilteredWord,
    HistoryMessage,
    HistoryRequest,
    HistoryTraining,
    ImportResult,
    JobProgress,
    JobResult,
    JobState,
    Member,
    MemberData,
    ProgressCallback,
    RetrainingListener,
    ShardChange,
    StoryCard,
    StoryRemoval,
    TrainingJob,
    TrainOptions,
)
from bot.core.executor import TrainingExecutor
from bot.core.figures import ChannelFigures, ModelVersion
from bot.core.filters import GuildFilters
from bot.core.history import HistoryLearning
from bot.core.jobs import TrainingScheduler
from bot.core.library import Library
from bot.core.model_cache import ModelCache
from bot.core.privacy import Privacy
from bot.core.shard_plan import ShardGate, reshard
from bot.core.store import StoryStore
from bot.core.storyteller import Storyteller
from bot.core.transfer import Transfer
from bot.core.uploads import check_upload_size, is_export_name
from bot.core.validation import RequestChecks
from bot.cpu_share import generation_threads
from bot.errors import NotAllowed, ShuttingDown
from bot.export import ExportLimits, looks_like_export

logger = logging.getLogger(__name__)


class StoryService:
    def __init__(self, config: Config, store: StoryStore, executor: TrainingExecutor) -> None:
        self.config = config
        self.store = store
        self.executor = executor
        self._threads = ThreadPoolExecutor(
            max_workers=generation_threads(config.workers.generation_threads),
            thread_name_prefix="fabulist-gen",
        )
        self.checks = RequestChecks(config)
        self.scheduler = TrainingScheduler(config, store, executor)
        self.cache = ModelCache(
            store, self._threads, max_models=config.cache.models, megabytes=config.cache.megabytes
        )
        self.filters = GuildFilters(config, store)
        # read-only figures: adapters call service.figures.NAME(channel) (core/figures.py)
        self.figures = ChannelFigures(store)
        self.library = Library(config, store, self.scheduler, self.cache, self.checks, self.figures)
        self.transfer = Transfer(self.library)
        self.history = HistoryLearning(self.library, self.filters)
        self.privacy = Privacy(self.library)
        self.storyteller = Storyteller(
            config, store, self.cache, self._threads, self.checks, self.filters
        )
        self.cooldowns = self.storyteller.cooldowns
        self.shards = ShardGate(store)
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(
        self, *, warm_workers: bool | None = None, shard_count: int | None = None
    ) -> None:
        """Interrupt the open jobs of processes that are gone; start the trainers if
        ``warm_workers`` (None: as ``workers.warm`` says). ``shard_count``: the Discord shard
        count this process serves (``answers_interaction``)."""
        if not self.store.read_only:  # else reading commands only: every write is refused
            await self.scheduler.interrupt_orphans()
        await self.shards.start(shard_count)
        if self.config.workers.warm if warm_workers is None else warm_workers:
            await self.executor.start()

    async def close(self) -> None:
        """Interrupt open jobs and stop the generation threads; never blocks the loop.

        The executor and the store belong to whoever opened them (``open_app``). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.storyteller.closing = True
        await self.shards.close()
        await self.scheduler.close()
        await asyncio.to_thread(self._threads.shutdown, wait=True)

    async def answers_interaction(self, created_at: float) -> bool:
        """Whether this process answers an interaction created then (``core/shard_plan.py``)."""
        return await self.shards.answers(created_at)

    async def reshard(self, shard_count: int) -> ShardChange:
        """Make ``shard_count`` the cluster's active shard count (``python -m bot reshard``)."""
        return await reshard(self.store, shard_count)

    def _check_open(self) -> None:
        if self.scheduler.closing:
            raise ShuttingDown()

    # -- uploads -----------------------------------------------------------------------------

    @property
    def export_limits(self) -> ExportLimits:
        return self.transfer.limits

    def upload_limit(self, filename: str | None = None) -> int:
        """The most bytes to download for an upload: an export file (by name) may be larger."""
        if is_export_name(filename):
            return max(self.config.limits.story_bytes, self.export_limits.file_bytes)
        return self.config.limits.story_bytes

    def check_upload_size(self, size: int, filename: str | None = None) -> None:
        """Reject by the attachment's declared size (an export file by name: the export limit)."""
        check_upload_size(size, self.upload_limit(filename))

    # -- training ----------------------------------------------------------------------------

    async def train(
        self,
        channel: ChannelRef,
        member: Member,
        filename: str,
        data: bytes,
        options: TrainOptions,
        on_progress: ProgressCallback | None = None,
    ) -> TrainingJob:
        """Validate, store the story, queue the job and return at once (UserError if refused).

        An export file (see ``bot.export``) is imported instead: the returned job is already
        ``done`` and ``wait_for_job`` reports the imported model (``JobResult.imported``).
        """
        self._check_open()
        if not member.is_admin:
            raise NotAllowed("You are not allowed to train fabulist in this channel.")
        if looks_like_export(data):
            imported = await self.import_channel(channel, member, data)
            return TrainingJob(
                job_id=imported.job_id,
                channel=channel,
                state=JobState.DONE,
                queue_position=None,
                story_id=imported.story_ids[-1],
                story_ids=imported.story_ids,
                requested_by=member.user_id,
            )
        check_upload_size(len(data), self.config.limits.story_bytes)
        job_options = self.checks.job_options(options)
        self.scheduler.check_not_busy(channel)
        self.scheduler.check_queue()
        word_filter = await self.filters.word_filter(channel.guild_id)
        text_filter = partial(self.filters.story_text, word_filter=word_filter)
        job, cut = await self.library.queue_story(
            channel,
            member,
            filename,
            data,
            options.mode == "append",
            job_options,
            on_progress,
            text_filter=text_filter if word_filter else None,
        )
        return replace(job, filtered_words=cut) if cut else job

    def on_retraining(self, listener: RetrainingListener) -> Callable[[], None]:
        """Be told of each retraining the bot queues itself (``/story remove``...) in time to
        follow its progress as ``train``'s ``on_progress``. Returns the unsubscribe call."""
        return self.scheduler.retraining.add(listener)

    async def history_request(
        self, channel: ChannelRef, member: Member, messages: int | None, options: TrainOptions
    ) -> HistoryRequest:
        """Check a history training before the adapter reads (how many, whom to skip)."""
        return await self.history.request(channel, member, messages, options)

    async def train_history(
        self,
        channel: ChannelRef,
        member: Member,
        messages: Sequence[HistoryMessage],
        options: TrainOptions,
        on_progress: ProgressCallback | None = None,
    ) -> HistoryTraining:
        """Learn the channel's messages (as read, any order) as one story; queue its job."""
        return await self.history.train(channel, member, messages, options, on_progress)

    async def wait_for_job(self, job_id: int) -> JobResult:
        return await self.scheduler.wait_for_job(job_id)

    async def cancel(self, channel: ChannelRef, member: Member) -> JobProgress | None:
        """Cancel the channel's queued or running job; None if there is none."""
        return await self.scheduler.cancel(channel, member)

    async def job_progress(self, channel: ChannelRef) -> JobProgress | None:
        return self.scheduler.progress(channel)

    # -- progress messages (kept for adapters across restarts) ---------------------------------

    async def set_progress_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Record the message that shows ``job_id``'s progress until ``progress_message_updated``.

        A process killed before it updates the message leaves it showing a running job (and
        its Cancel button); the next process finds it in ``stale_progress_messages``.
        """
        await self.store.set_progress_message(job_id, channel_id, message_id)

    async def progress_message_updated(self, job_id: int) -> None:
        """The job's progress message now shows its end (or is gone): forget it."""
        await self.store.clear_progress_message(job_id)

    async def stale_progress_messages(self) -> list[EndedJob]:
        """Recorded progress messages of ended jobs that were never updated to show the end.

        Call after ``start``: the jobs a killed process left open are interrupted by then.
        """
        return [
            await self.scheduler.ledger.ended(record)
            for record in await self.store.stale_progress_messages()
        ]

    async def ended_job(self, channel: ChannelRef, job_id: int) -> EndedJob | None:
        """``job_id`` of this channel if it has ended; None while it is open, or if unknown."""
        return await self.scheduler.ended_job(channel, job_id)

    # -- generation --------------------------------------------------------------------------

    async def continue_story(
        self,
        channel: ChannelRef,
        prompt: str,
        options: ContinueOptions,
        *,
        member: Member | None = None,
    ) -> Continuation:
        """Continue ``prompt`` with the channel's active model (off the loop); with ``member``,
        the per-user cooldown applies (refunded when the request fails)."""
        return await self.storyteller.continue_story(channel, prompt, options, member=member)

    def message_prompt(self, text: str) -> str:
        """The last words of a message as the prompt that continues it ("Continue this")."""
        return self.checks.message_prompt(text)

    async def complete_word(self, channel: ChannelRef, prefix: str, limit: int = 25) -> list[str]:
        """Vocabulary words starting with ``prefix`` (autocomplete); [] without a model."""
        return await self.storyteller.complete_word(channel, prefix, limit)

    @property
    def cached_models(self) -> int:
        return self.cache.stats.models

    @property
    def cache_stats(self) -> CacheStats:
        return self.cache.stats

    # -- word filters (per server) ----------------------------------------------------------

    async def add_filter(self, channel: ChannelRef, member: Member, word: str) -> FilterChange:
        """Never generate ``word`` in this channel's server (admins; see ``core.filters``)."""
        return await self.filters.add(channel.guild_id, member.is_admin, member.user_id, word)

    async def remove_filter(self, channel: ChannelRef, member: Member, word: str) -> FilterChange:
        return await self.filters.remove(channel.guild_id, member.is_admin, word)

    async def list_filters(self, channel: ChannelRef, member: Member) -> list[FilteredWord]:
        """The server's filtered words (admins only: the list is the words themselves)."""
        if not member.is_admin:
            raise NotAllowed("Only the server's story keepers can see its word filters.")
        return await self.filters.words(channel.guild_id)

    # -- library -----------------------------------------------------------------------------

    async def story_card(self, channel: ChannelRef) -> StoryCard:
        return await self.library.story_card(channel)

    async def rollback(
        self, channel: ChannelRef, member: Member, version: int | None = None
    ) -> ModelVersion:
        """Make a kept version active (default: the one before the active one)."""
        return await self.library.rollback(channel, member, version)

    async def remove_story(
        self,
        channel: ChannelRef,
        member: Member,
        story_id: int,
        on_progress: ProgressCallback | None = None,
    ) -> StoryRemoval:
        """Delete a story and every model trained on it; queue a retraining on what remains."""
        self._check_open()
        return await self.library.remove_story(channel, member, story_id, on_progress)

    async def forget(self, channel: ChannelRef, member: Member) -> None:
        """Delete the channel's stories, models and jobs (cancelling an open job)."""
        await self.library.forget(channel, member)

    async def training_plot(self, channel: ChannelRef) -> bytes | None:
        """PNG of the active model's loss and accuracy per epoch (rendered off the loop)."""
        return await self.storyteller.training_plot(channel)

    # consent and a member's data (bot/core/privacy.py); learning from history (core/history.py)
    async def set_history_learning(self, guild_id: int | None, member: Member, on: bool) -> None:
        await self.history.set_enabled(guild_id, member, on)

    async def history_learning(self, guild_id: int | None) -> bool:
        return await self.history.enabled(guild_id)

    async def set_opted_out(self, guild_id: int | None, user_id: int, opted_out: bool) -> None:
        await self.privacy.set_opted_out(guild_id, user_id, opted_out)

    async def member_data(self, user_id: int, guild_id: int | None = None) -> MemberData:
        return await self.privacy.member_data(user_id, guild_id)

    async def delete_user_data(self, user_id: int, guild_id: int | None = None) -> DataDeletion:
        """Delete a member's uploads, history messages and models trained on them; retrain."""
        self._check_open()
        return await self.privacy.delete_user_data(user_id, guild_id)

    # -- transfer ----------------------------------------------------------------------------

    async def export_channel(
        self, channel: ChannelRef, member: Member | None = None
    ) -> tuple[str, bytes]:
        """(file name, bytes) of the channel's export: stories, active model, its card.

        With ``member``, only admins may export (the file holds every uploaded text).
        """
        return await self.transfer.export_channel(channel, member)

    async def import_channel(
        self, channel: ChannelRef, member: Member, data: bytes
    ) -> ImportResult:
        """Restore an export into ``channel`` (its model becomes the active new version)."""
        self._check_open()
        return await self.transfer.import_channel(channel, member, data)
