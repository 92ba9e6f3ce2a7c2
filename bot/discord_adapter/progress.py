"""The live progress of a training on Discord, outside the cog: a throttled progress message,
the watchers that show each job's end there, and the start-up repair of messages a killed
process left showing a running job."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from typing import TYPE_CHECKING

import discord

from bot.adapters.language import ENGLISH, Language
from bot.core.api import ChannelRef, EndedJob, JobProgress, JobResult
from bot.discord_adapter.i18n import guild_language
from bot.discord_adapter.rendering import progress_text, result_text
from bot.discord_adapter.replies import NO_MENTIONS

if TYPE_CHECKING:
    from bot.core.service import StoryService
    from bot.discord_adapter.client import FabulistBot

log = logging.getLogger(__name__)

# Discord allows 5 edits per 5 s per channel; one edit every 2 s leaves room for everything else.
PROGRESS_INTERVAL_SECONDS = 2.0
FINAL_EDIT_SECONDS = 5.0


class ProgressMessage:
    """Throttled edits of one channel message from a stream of ``JobProgress`` updates.

    The message is a regular channel message, not the interaction response, because
    interaction tokens expire after 15 minutes and trainings may run longer.
    """

    def __init__(
        self,
        filename: str,
        lang: Language = ENGLISH,
        interval: float = PROGRESS_INTERVAL_SECONDS,
    ) -> None:
        self.filename = filename
        self.lang = lang  # the server's: the channel reads it
        self.interval = interval
        self.message: discord.Message | discord.PartialMessage | None = None
        self._latest: JobProgress | None = None
        self._shown: str | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def update(self, progress: JobProgress) -> None:
        """The service's ``on_progress`` callback (runs on the event loop, must not block)."""
        self._latest = progress
        self._changed.set()

    def attach(self, message: discord.Message | discord.PartialMessage) -> None:
        self.message = message
        self._shown = message.content if isinstance(message, discord.Message) else None
        self._task = asyncio.create_task(self._run(), name=f"progress-{message.id}")

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            progress = self._latest
            if progress is None or self.message is None:
                continue
            text = progress_text(self.filename, progress, self.lang)
            if text == self._shown:
                continue
            started = time.monotonic()
            try:
                await self.message.edit(content=text)
                self._shown = text
            except discord.HTTPException as exc:
                log.warning("progress edit of message %s failed: %s", self.message.id, exc)
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def ended_text(ended: EndedJob, lang: Language = ENGLISH) -> str:
    return result_text(ended.filename or lang.gettext("story"), ended.result, lang)


class JobWatchers:
    """One task per started job: waits for its end and shows it in the progress message."""

    def __init__(self, bot: FabulistBot) -> None:
        self.bot = bot
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def service(self) -> StoryService:
        return self.bot.service

    def watch(
        self, job_id: int, channel: ChannelRef, filename: str, tracker: ProgressMessage
    ) -> None:
        task = asyncio.create_task(
            self._watch(job_id, channel, filename, tracker), name=f"watch-job-{job_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            # On shutdown the service has just settled open jobs as interrupted: let the
            # watchers say so in their progress messages before the connection closes.
            _, pending = await asyncio.wait(self._tasks, timeout=FINAL_EDIT_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _watch(
        self, job_id: int, channel: ChannelRef, filename: str, tracker: ProgressMessage
    ) -> None:
        try:
            try:
                result = await self.service.wait_for_job(job_id)
            finally:
                await tracker.stop()
            await self._finish(result, channel, filename, tracker)
        except Exception:
            log.exception("could not report the end of training job %s", job_id)

    async def _finish(
        self,
        result: JobResult,
        channel: ChannelRef,
        filename: str,
        tracker: ProgressMessage,
    ) -> None:
        message = tracker.message
        png: bytes | None = None
        if result.state == "done":
            png = await self.service.training_plot(channel)
        text = result_text(filename, result, tracker.lang)
        files = [discord.File(io.BytesIO(png), filename="training.png")] if png else []
        if message is not None:
            await message.edit(content=text, view=None, attachments=files)
            try:
                await self.service.progress_message_updated(result.job_id)
            except Exception as exc:
                # The message is right; the next start would only show the same end again.
                log.warning(
                    "could not forget the progress message of job %s: %s", result.job_id, exc
                )
        else:
            messageable = self.bot.get_partial_messageable(
                channel.channel_id, guild_id=channel.guild_id
            )
            await messageable.send(text, files=files, allowed_mentions=NO_MENTIONS)


class StaleMessageRepair:
    """Once after start-up: progress messages of jobs that ended without saying so."""

    def __init__(self, bot: FabulistBot) -> None:
        self.bot = bot
        self._task: asyncio.Task[None] | None = None

    @property
    def service(self) -> StoryService:
        return self.bot.service

    def start(self) -> None:
        self._task = asyncio.create_task(self._update_stale_messages(), name="stale-messages")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _update_stale_messages(self) -> None:
        """Once after start-up: progress messages of jobs that ended without saying so.

        A killed process leaves its running jobs' messages at "Training" with a Cancel button;
        the service has marked those jobs interrupted by now, so each message gets its job's end.
        """
        await self.bot.wait_until_ready()
        try:
            stale = await self.service.stale_progress_messages()
        except Exception:
            log.exception("could not list the progress messages left by the previous run")
            return
        for ended in stale:
            try:
                await self._update_stale_message(ended)
            except Exception:
                log.exception(
                    "could not update the progress message of job %s", ended.result.job_id
                )

    async def _update_stale_message(self, ended: EndedJob) -> None:
        job_id = ended.result.job_id
        if ended.message_id is not None:
            channel_id = ended.message_channel_id or ended.channel.channel_id
            message = self.bot.get_partial_messageable(
                channel_id, guild_id=ended.channel.guild_id
            ).get_partial_message(ended.message_id)
            try:
                lang = guild_language(self.bot, ended.channel.guild_id, self.bot.catalogue)
                await message.edit(content=ended_text(ended, lang), view=None)
            except (discord.NotFound, discord.Forbidden) as exc:
                # Deleted message or channel, or no access any more: nothing left to update.
                log.info("progress message of job %s is out of reach: %s", job_id, exc)
            except discord.HTTPException as exc:
                # Kept: the next start tries again.
                log.warning("could not update the progress message of job %s: %s", job_id, exc)
                return
        await self.service.progress_message_updated(job_id)
