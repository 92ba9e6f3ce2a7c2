"""/train, /cancel and the Cancel button; the live progress lives in ``progress``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.language import Language
from bot.adapters.text import history_text, retraining_label
from bot.core.api import (
    MAX_N_INPUT,
    MAX_SEED,
    ChannelRef,
    JobProgress,
    ProgressCallback,
    RetrainReason,
    TrainOptions,
)
from bot.discord_adapter.cards import job_state_word
from bot.discord_adapter.common import admin_check, bot_of, channel_ref, member_of
from bot.discord_adapter.download import CappedDownloader
from bot.discord_adapter.history import MESSAGE_CONTENT_OFF, HistoryReader
from bot.discord_adapter.i18n import guild_language
from bot.discord_adapter.progress import (
    JobWatchers,
    ProgressMessage,
    StaleMessageRepair,
    ended_text,
)
from bot.discord_adapter.rendering import escape_text, progress_text
from bot.discord_adapter.replies import (
    NO_MENTIONS,
    Denied,
    member_lang,
    report_error,
    server_lang,
)

if TYPE_CHECKING:
    from bot.core.api import TrainingJob
    from bot.core.service import StoryService
    from bot.discord_adapter.client import FabulistBot

log = logging.getLogger(__name__)


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"fabulist:cancel:(?P<job_id>[0-9]+)"
):
    """Cancel a training job; the job id lives in the custom id, so it survives restarts."""

    def __init__(self, job_id: int, label: str = "Cancel") -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
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

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return await bot_of(interaction).answers(interaction)

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
    lang = member_lang(interaction)
    if job_id is not None:
        current = await service.job_progress(channel)
        if current is None or current.job_id != job_id:
            return await _show_ended(interaction, job_id)
    progress = await service.cancel(channel, member_of(interaction))
    if progress is None:
        return lang.gettext("Nothing is training in this channel.")
    return lang.gettext("Cancelling training job #{job}…", job=progress.job_id)


async def _show_ended(interaction: discord.Interaction[Any], job_id: int) -> str:
    """A Cancel click on the progress message of an ended job: say so there too.

    Normally the message shows the end (without the button) as soon as the job ends; a click
    gets here when the process that ran the job was killed before it could edit the message and
    this one has not (yet) done so at start-up.
    """
    service = bot_of(interaction).service
    lang = member_lang(interaction)
    ended = await service.ended_job(channel_ref(interaction), job_id)
    if ended is None:
        return lang.gettext("Training job #{job} has already ended.", job=job_id)
    message = interaction.message
    if message is not None:
        try:
            await message.edit(content=ended_text(ended, server_lang(interaction)), view=None)
        except discord.HTTPException as exc:
            log.warning("could not update the progress message of job %s: %s", job_id, exc)
        else:
            if ended.message_id == message.id:
                await service.progress_message_updated(job_id)
    return lang.gettext(
        "Training job #{job} has already ended ({state}).",
        job=job_id,
        state=job_state_word(ended.result.state, lang),
    )


class TrainingCog(commands.Cog):
    def __init__(self, bot: FabulistBot) -> None:
        self.bot = bot
        self._watchers = JobWatchers(bot)
        self._downloader = CappedDownloader()
        self._repair = StaleMessageRepair(bot)
        self._retrainings: set[asyncio.Task[None]] = set()
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def service(self) -> StoryService:
        return self.bot.service

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CancelButton)
        if self.bot.config.permissions.train_role_ids:
            # Role holders without the permission must still see the command; the check decides.
            self.train.default_permissions = None
        if self.bot.has_service:
            self._repair.start()
            self._unsubscribe = self.service.on_retraining(self._on_retraining)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(CancelButton)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await asyncio.gather(*self._retrainings, return_exceptions=True)
        await self._repair.stop()
        await self._watchers.close()
        await self._downloader.close()

    @app_commands.command(name="train")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_channels=True)
    @app_commands.check(admin_check)
    @app_commands.describe(
        story="A plain-text (UTF-8) story, or a fabulist export file to import",
        source="file: the attached story (default); history: this channel's recent messages",
        messages="With source history: how many recent messages to read (server's cap applies)",
        layers="LSTM layers: 1 (default) or 2",
        n_input="How many previous words the model looks at (1-10, default 3)",
        seed="Random seed, for a reproducible training",
        mode="replace: learn this story alone (default); append: add it to the earlier ones",
        max_seconds="Training time budget in seconds (at most the server's configured limit)",
    )
    async def train(
        self,
        interaction: discord.Interaction[Any],
        story: discord.Attachment | None = None,
        source: Literal["file", "history"] = "file",
        messages: app_commands.Range[int, 1] | None = None,
        layers: app_commands.Range[int, 1, 2] | None = None,
        n_input: app_commands.Range[int, 1, MAX_N_INPUT] | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
        mode: Literal["replace", "append"] = "replace",
        max_seconds: app_commands.Range[int, 1] | None = None,
    ) -> None:
        """Teach this channel a story: an attached text file, an export file, or its history."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        options = TrainOptions(
            layers=layers, n_input=n_input, seed=seed, mode=mode, max_seconds=max_seconds
        )
        if source == "history":
            if story is not None:
                raise Denied("Attach a story or use source:history, not both.")
            await self._train_history(interaction, messages, options)
            return
        if story is None:
            raise Denied("Attach a story file (or use source:history to learn this channel).")
        if messages is not None:
            raise Denied("messages: goes with source:history only.")
        self.service.check_upload_size(story.size, story.filename)
        data = await self._downloader.download(story, self.service.upload_limit(story.filename))
        self.service.check_upload_size(len(data), story.filename)
        await self._start(interaction, story.filename, data, options)

    async def _train_history(
        self, interaction: discord.Interaction[Any], messages: int | None, options: TrainOptions
    ) -> None:
        if not self.bot.config.discord.message_content:
            raise Denied(MESSAGE_CONTENT_OFF)
        channel, member = channel_ref(interaction), member_of(interaction)
        request = await self.service.history_request(channel, member, messages, options)
        reader = HistoryReader(self.bot, channel, request, server_lang(interaction))
        read = await reader.read()
        label = reader.label
        tracker = ProgressMessage(label, server_lang(interaction))
        try:
            learned = await self.service.train_history(
                channel, member, read, options, on_progress=tracker.update
            )
        except Exception:
            await reader.show(
                server_lang(interaction).gettext(
                    "Read {source}: nothing was learned.", source=escape_text(reader.label)
                )
            )
            raise
        note = history_text(learned, member_lang(interaction))
        await self._show_job(interaction, learned.job, label, tracker, reader, note)

    @app_commands.command(name="cancel")
    @app_commands.guild_only()
    async def cancel(self, interaction: discord.Interaction[Any]) -> None:
        """Stop this channel's training (yours, or anyone's if you manage the channel)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = await cancel_job(interaction, None)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _start(
        self,
        interaction: discord.Interaction[Any],
        filename: str,
        data: bytes,
        options: TrainOptions,
    ) -> None:
        channel = channel_ref(interaction)
        tracker = ProgressMessage(filename, server_lang(interaction))
        job = await self.service.train(
            channel, member_of(interaction), filename, data, options, on_progress=tracker.update
        )
        await self._show_job(interaction, job, filename, tracker, None, "")

    async def _show_job(
        self,
        interaction: discord.Interaction[Any],
        job: TrainingJob,
        filename: str,
        tracker: ProgressMessage,
        reader: HistoryReader | None,
        note: str,
    ) -> None:
        """Show the job's live progress in a channel message (the history reading message, or
        a new one) with its Cancel button, and answer the member privately."""
        lang = member_lang(interaction)
        intro = _initial_progress(job.job_id, job.state, job.queue_position)
        message = await self._post_progress(job.channel, intro, tracker, reader)
        if message is not None:
            where = " " + lang.gettext("Progress: {link}", link=message.jump_url)
        else:
            where = " " + lang.gettext(
                "(I cannot post in this channel, so there is no live progress.)"
            )
        if job.filtered_words:
            count = job.filtered_words
            where += "\n" + lang.ngettext(
                "{count} word this server filters was left out of the story.",
                "{count} words this server filters were left out of the story.",
                count,
                count=count,
            )
        await interaction.followup.send(
            _state_sentence(job, escape_text(filename), lang) + f"{note}{where}",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    async def _post_progress(
        self,
        channel: ChannelRef,
        intro: JobProgress,
        tracker: ProgressMessage,
        reader: HistoryReader | None = None,
    ) -> discord.Message | None:
        """Show the job's progress (with Cancel) in the history reading message or a new one,
        and watch the job: the message follows its progress and shows its end."""
        view = discord.ui.View(timeout=None)
        view.add_item(CancelButton(intro.job_id, tracker.lang.gettext("Cancel")))
        text = progress_text(tracker.filename, intro, tracker.lang)
        message: discord.Message | None = None
        if reader is not None and reader.message is not None:
            await reader.show(text, view)
            message = reader.message
        else:
            messageable = self.bot.get_partial_messageable(
                channel.channel_id, guild_id=channel.guild_id
            )
            try:
                message = await messageable.send(text, view=view, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as exc:
                log.warning("cannot post progress in channel %s: %s", channel.channel_id, exc)
        if message is not None:
            tracker.attach(message)
            try:
                await self.service.set_progress_message(
                    intro.job_id, message.channel.id, message.id
                )
            except Exception:
                # Only the after-crash update of this message depends on it.
                log.exception("could not record the progress message of job %s", intro.job_id)
        self._watchers.watch(intro.job_id, channel, tracker.filename, tracker)
        return message

    def _on_retraining(
        self, channel: ChannelRef, job_id: int, reason: RetrainReason
    ) -> ProgressCallback:
        """A retraining the bot queued itself: shown in its channel like a /train."""
        lang = guild_language(self.bot, channel.guild_id, self.bot.catalogue)
        tracker = ProgressMessage(retraining_label(reason, lang), lang)
        task = asyncio.create_task(
            self._show_retraining(channel, job_id, tracker), name=f"retraining-{job_id}"
        )
        self._retrainings.add(task)
        task.add_done_callback(self._retrainings.discard)
        return tracker.update

    async def _show_retraining(
        self, channel: ChannelRef, job_id: int, tracker: ProgressMessage
    ) -> None:
        try:
            current = await self.service.job_progress(channel)
            if current is None or current.job_id != job_id:
                current = _initial_progress(job_id, "queued", None)
            await self._post_progress(channel, current, tracker)
        except Exception:
            log.exception("could not show retraining job %s in its channel", job_id)


def _state_sentence(job: TrainingJob, filename: str, lang: Language) -> str:
    if job.state == "done":
        count = len(job.story_ids)
        return lang.ngettext(
            "Training job #{job} on {filename} was an export file: imported {count} story and "
            "the trained model.",
            "Training job #{job} on {filename} was an export file: imported {count} stories "
            "and the trained model.",
            count,
            job=job.job_id,
            filename=filename,
            count=count,
        )
    if job.state == "queued" and job.queue_position:
        return lang.gettext(
            "Training job #{job} on {filename} is queued (position {position}).",
            job=job.job_id,
            filename=filename,
            position=job.queue_position,
        )
    if job.state == "queued":
        return lang.gettext(
            "Training job #{job} on {filename} is queued.", job=job.job_id, filename=filename
        )
    return lang.gettext(
        "Training job #{job} on {filename} has started.", job=job.job_id, filename=filename
    )


def _initial_progress(job_id: int, state: str, queue_position: int | None) -> JobProgress:
    return JobProgress(
        job_id=job_id,
        state=state,
        epoch=0,
        max_epochs=0,
        loss=None,
        accuracy=None,
        learnable_accuracy=None,
        eta_seconds=None,
        elapsed_seconds=0.0,
        queue_position=queue_position,
    )


async def setup(bot: commands.Bot) -> None:
    from bot.discord_adapter.client import FabulistBot

    assert isinstance(bot, FabulistBot)
    await bot.add_cog(TrainingCog(bot))
