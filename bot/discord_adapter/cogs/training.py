"""/train, /cancel, the Cancel button and the live progress message."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.core.api import MAX_SEED, ChannelRef, JobProgress, TrainOptions
from bot.discord_adapter.common import (
    NO_MENTIONS,
    admin_check,
    bot_of,
    channel_ref,
    member_of,
    report_error,
)
from bot.discord_adapter.rendering import escape_text, progress_text, result_text
from bot.display import format_bytes
from bot.errors import InvalidUpload
from model.config import MAX_N_INPUT

if TYPE_CHECKING:
    from bot.core.api import EndedJob, JobResult, TrainingJob
    from bot.core.service import StoryService
    from bot.discord_adapter.client import FabulistBot

log = logging.getLogger(__name__)

# Discord allows 5 edits per 5 s per channel; one edit every 2 s leaves room for everything else.
PROGRESS_INTERVAL_SECONDS = 2.0
DOWNLOAD_CHUNK_BYTES = 64 * 1024
DOWNLOAD_TIMEOUT_SECONDS = 60.0
FINAL_EDIT_SECONDS = 5.0


class ProgressMessage:
    """Throttled edits of one channel message from a stream of ``JobProgress`` updates.

    The message is a regular channel message, not the interaction response, because
    interaction tokens expire after 15 minutes and trainings may run longer.
    """

    def __init__(self, filename: str, interval: float = PROGRESS_INTERVAL_SECONDS) -> None:
        self.filename = filename
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
            text = progress_text(self.filename, progress)
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


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"fabulist:cancel:(?P<job_id>[0-9]+)"
):
    """Cancel a training job; the job id lives in the custom id, so it survives restarts."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel",
                style=discord.ButtonStyle.danger,
                custom_id=f"fabulist:cancel:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: Any,
        /,
    ) -> CancelButton:
        return cls(int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            text = await cancel_job(interaction, self.job_id)
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except Exception as error:
            await report_error(interaction, error)


async def cancel_job(interaction: discord.Interaction[Any], job_id: int | None) -> str:
    """Cancel this channel's job (only ``job_id`` if given); returns the reply text."""
    service = bot_of(interaction).service
    channel = channel_ref(interaction)
    if job_id is not None:
        current = await service.job_progress(channel)
        if current is None or current.job_id != job_id:
            return await _show_ended(interaction, job_id)
    progress = await service.cancel(channel, member_of(interaction))
    if progress is None:
        return "Nothing is training in this channel."
    return f"Cancelling training job #{progress.job_id}…"


async def _show_ended(interaction: discord.Interaction[Any], job_id: int) -> str:
    """A Cancel click on the progress message of an ended job: say so there too.

    Normally the message shows the end (without the button) as soon as the job ends; a click
    gets here when the process that ran the job was killed before it could edit the message and
    this one has not (yet) done so at start-up.
    """
    service = bot_of(interaction).service
    ended = await service.ended_job(channel_ref(interaction), job_id)
    if ended is None:
        return f"Training job #{job_id} has already ended."
    message = interaction.message
    if message is not None:
        try:
            await message.edit(content=_ended_text(ended), view=None)
        except discord.HTTPException as exc:
            log.warning("could not update the progress message of job %s: %s", job_id, exc)
        else:
            if ended.message_id == message.id:
                await service.progress_message_updated(job_id)
    return f"Training job #{job_id} has already ended ({ended.result.state})."


def _ended_text(ended: EndedJob) -> str:
    return result_text(ended.filename or "story", ended.result)


class TrainingCog(commands.Cog):
    def __init__(self, bot: FabulistBot) -> None:
        self.bot = bot
        self._watchers: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._stale_task: asyncio.Task[None] | None = None

    @property
    def service(self) -> StoryService:
        return self.bot.service

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CancelButton)
        if self.bot.config.permissions.train_role_ids:
            # Role holders without the permission must still see the command; the check decides.
            self.train.default_permissions = None
        if self.bot.has_service:
            self._stale_task = asyncio.create_task(
                self._update_stale_messages(), name="stale-progress-messages"
            )

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(CancelButton)
        if self._stale_task is not None:
            self._stale_task.cancel()
            await asyncio.gather(self._stale_task, return_exceptions=True)
            self._stale_task = None
        if self._watchers:
            # On shutdown the service has just settled open jobs as interrupted: let the
            # watchers say so in their progress messages before the connection closes.
            _, pending = await asyncio.wait(self._watchers, timeout=FINAL_EDIT_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    @app_commands.command(name="train")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_channels=True)
    @app_commands.check(admin_check)
    @app_commands.describe(
        story="A plain-text (UTF-8) story, or a fabulist export file to import",
        layers="LSTM layers: 1 (default) or 2",
        n_input="How many previous words the model looks at (1-10, default 3)",
        seed="Random seed, for a reproducible training",
        mode="replace: learn this story alone (default); append: add it to the earlier ones",
        max_seconds="Training time budget in seconds (at most the server's configured limit)",
    )
    async def train(
        self,
        interaction: discord.Interaction[Any],
        story: discord.Attachment,
        layers: app_commands.Range[int, 1, 2] | None = None,
        n_input: app_commands.Range[int, 1, MAX_N_INPUT] | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
        mode: Literal["replace", "append"] = "replace",
        max_seconds: app_commands.Range[int, 1] | None = None,
    ) -> None:
        """Teach this channel a story from a text file (or import an export file)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        self.service.check_upload_size(story.size, story.filename)
        data = await self._download(story)
        options = TrainOptions(
            layers=layers, n_input=n_input, seed=seed, mode=mode, max_seconds=max_seconds
        )
        await self._start(interaction, story.filename, data, options)

    @app_commands.command(name="cancel")
    @app_commands.guild_only()
    async def cancel(self, interaction: discord.Interaction[Any]) -> None:
        """Stop this channel's training (yours, or anyone's if you manage the channel)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = await cancel_job(interaction, None)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _download(self, attachment: discord.Attachment) -> bytes:
        """Read the attachment, but never more than the configured limit (+1 byte to tell)."""
        limit = self.service.upload_limit(attachment.filename)
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_SECONDS)
            self._http = aiohttp.ClientSession(timeout=timeout)
        buffer = bytearray()
        try:
            async with self._http.get(attachment.url) as response:
                response.raise_for_status()
                async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                    buffer.extend(chunk)
                    if len(buffer) > limit:
                        break
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("downloading attachment %s failed: %r", attachment.id, exc)
            raise InvalidUpload("I couldn't download the attachment; please try again.") from None
        if len(buffer) > limit:
            # The metadata understated the size; the exact size is unknown (we stopped reading).
            raise InvalidUpload(
                f"The file is larger than the {format_bytes(limit)} limit (larger than its "
                "upload said). Upload a shorter story."
            )
        self.service.check_upload_size(len(buffer), attachment.filename)
        return bytes(buffer)

    async def _start(
        self,
        interaction: discord.Interaction[Any],
        filename: str,
        data: bytes,
        options: TrainOptions,
    ) -> None:
        channel = channel_ref(interaction)
        tracker = ProgressMessage(filename)
        job = await self.service.train(
            channel, member_of(interaction), filename, data, options, on_progress=tracker.update
        )
        view = discord.ui.View(timeout=None)
        view.add_item(CancelButton(job.job_id))
        intro = progress_text(filename, _initial_progress(job))
        messageable = self.bot.get_partial_messageable(
            channel.channel_id, guild_id=channel.guild_id
        )
        message: discord.Message | None = None
        try:
            message = await messageable.send(intro, view=view, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("cannot post progress in channel %s: %s", channel.channel_id, exc)
        if message is not None:
            tracker.attach(message)
            where = f" Progress: {message.jump_url}"
            try:
                await self.service.set_progress_message(job.job_id, message.channel.id, message.id)
            except Exception:
                # Only the after-crash update of this message depends on it.
                log.exception("could not record the progress message of job %s", job.job_id)
        else:
            where = " (I cannot post in this channel, so there is no live progress.)"
        task = asyncio.create_task(
            self._watch(job.job_id, channel, filename, tracker), name=f"watch-job-{job.job_id}"
        )
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        await interaction.followup.send(
            f"Training job #{job.job_id} on {escape_text(filename)} {_state_phrase(job)}.{where}",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    async def _watch(
        self, job_id: int, channel: ChannelRef, filename: str, tracker: ProgressMessage
    ) -> None:
        try:
            try:
                result = await self.service.wait_for_job(job_id)
            finally:
                await tracker.stop()
            await self._finish(result, channel, filename, tracker.message)
        except Exception:
            log.exception("could not report the end of training job %s", job_id)

    async def _finish(
        self,
        result: JobResult,
        channel: ChannelRef,
        filename: str,
        message: discord.Message | discord.PartialMessage | None,
    ) -> None:
        png: bytes | None = None
        if result.state == "done":
            png = await self.service.training_plot(channel)
        text = result_text(filename, result)
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
                await message.edit(content=_ended_text(ended), view=None)
            except (discord.NotFound, discord.Forbidden) as exc:
                # Deleted message or channel, or no access any more: nothing left to update.
                log.info("progress message of job %s is out of reach: %s", job_id, exc)
            except discord.HTTPException as exc:
                # Kept: the next start tries again.
                log.warning("could not update the progress message of job %s: %s", job_id, exc)
                return
        await self.service.progress_message_updated(job_id)


def _state_phrase(job: TrainingJob) -> str:
    if job.state == "done":
        count = len(job.story_ids)
        return (
            f"was an export file: imported {count} stor{'y' if count == 1 else 'ies'} "
            "and the trained model"
        )
    if job.state == "queued":
        return f"is queued (position {job.queue_position})" if job.queue_position else "is queued"
    return "has started"


def _initial_progress(job: TrainingJob) -> JobProgress:
    return JobProgress(
        job_id=job.job_id,
        state=job.state,
        epoch=0,
        max_epochs=0,
        loss=None,
        accuracy=None,
        learnable_accuracy=None,
        eta_seconds=None,
        elapsed_seconds=0.0,
        queue_position=job.queue_position,
    )


async def setup(bot: commands.Bot) -> None:
    from bot.discord_adapter.client import FabulistBot

    assert isinstance(bot, FabulistBot)
    await bot.add_cog(TrainingCog(bot))
