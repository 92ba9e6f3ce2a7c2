"""/story (a group: show, stats, list, remove, versions, rollback, export) and /forget.

Thin: each command calls one StoryService method and renders its answer. UserErrors raised here
reach the bot's error handler, which answers them ephemerally.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.language import Language
from bot.adapters.text import removal_text
from bot.discord_adapter.cards import story_card_embed, story_stats_embed
from bot.discord_adapter.common import admin_check, bot_of, channel_ref, member_of, permission_label
from bot.discord_adapter.rendering import (
    MESSAGE_LIMIT,
    escape_text,
    format_percent,
    format_timestamp,
    split_message,
    truncate,
)
from bot.discord_adapter.replies import NO_MENTIONS, ErrorReportingView, member_lang, server_lang
from bot.display import byte_size

if TYPE_CHECKING:
    from bot.core.service import StoryService
    from bot.discord_adapter.client import FabulistBot

log = logging.getLogger(__name__)

CONFIRM_SECONDS = 60.0


class ForgetConfirmation(ErrorReportingView):
    """Ephemeral Yes/No for /forget; only the member who asked can see and press it."""

    def __init__(self, requester_id: int, lang: Language) -> None:
        super().__init__(timeout=CONFIRM_SECONDS)
        self.requester_id = requester_id
        self.lang = lang
        self.confirm.label = lang.gettext("Forget everything")
        self.keep.label = lang.gettext("Keep it")
        self.interaction: discord.Interaction[Any] | None = None

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return interaction.user.id == self.requester_id

    @discord.ui.button(label="Forget everything", style=discord.ButtonStyle.danger)
    async def confirm(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        self.stop()
        await interaction.response.defer()
        await bot_of(interaction).service.forget(channel_ref(interaction), member_of(interaction))
        await interaction.edit_original_response(
            content=self.lang.gettext(
                "Done: this channel's stories, vocabulary and models are deleted."
            ),
            view=None,
        )

    @discord.ui.button(label="Keep it", style=discord.ButtonStyle.secondary)
    async def keep(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        self.stop()
        await interaction.response.edit_message(
            content=self.lang.gettext("Nothing was deleted."), view=None
        )

    async def on_timeout(self) -> None:
        if self.interaction is not None:
            with contextlib.suppress(discord.HTTPException):
                await self.interaction.edit_original_response(
                    content=self.lang.gettext("No answer; nothing was deleted."), view=None
                )


class StoryCog(commands.Cog):
    story = app_commands.Group(name="story", description="This channel's story", guild_only=True)

    def __init__(self, bot: FabulistBot) -> None:
        self.bot = bot

    @property
    def service(self) -> StoryService:
        return self.bot.service

    async def cog_load(self) -> None:
        if self.bot.config.permissions.train_role_ids:
            # Role holders without the permission must still see the command; the check decides.
            self.forget.default_permissions = None

    @story.command(name="show")
    async def show(self, interaction: discord.Interaction[Any]) -> None:
        """Show what this channel has learned: story, uploader, size, accuracy, training state."""
        card = await self.service.story_card(channel_ref(interaction))
        lang = server_lang(interaction)
        embed = story_card_embed(card, permission=permission_label(self.bot.config), lang=lang)
        await interaction.response.send_message(embed=embed, allowed_mentions=NO_MENTIONS)

    @story.command(name="stats")
    async def stats(self, interaction: discord.Interaction[Any]) -> None:
        """Show this channel's figures: symbols per story, vocabulary, versions, replies served."""
        channel = channel_ref(interaction)
        stats = await self.service.figures.stats(channel)
        name = getattr(interaction.channel, "name", None)
        embed = story_stats_embed(stats, name, server_lang(interaction))
        await interaction.response.send_message(embed=embed, allowed_mentions=NO_MENTIONS)

    @story.command(name="list")
    async def list_stories(self, interaction: discord.Interaction[Any]) -> None:
        """List this channel's stories: id, file, uploader, size and date."""
        stories = await self.service.figures.stories(channel_ref(interaction))
        lang = server_lang(interaction)
        if not stories:
            text = lang.gettext("This channel has no stories yet. Teach one with `/train`.")
        else:
            count = len(stories)
            lines = [lang.ngettext("**{count} story**", "**{count} stories**", count, count=count)]
            for story in stories:
                uploader = escape_text(story.uploader_name or lang.gettext("someone"))
                symbols = lang.gettext("{count} symbols", count=lang.number(story.symbols))
                lines.append(
                    f"`#{story.story_id}` {escape_text(story.filename)} · {uploader} · "
                    f"{symbols} · {format_timestamp(story.created_at)}"
                )
            text = "\n".join(lines)
        await send_pages(interaction, text)

    @story.command(name="remove")
    @app_commands.describe(id="The story's number, as /story list shows it")
    async def remove(
        self, interaction: discord.Interaction[Any], id: app_commands.Range[int, 1]
    ) -> None:
        """Remove a story (yours, or any if you manage the channel) and the models trained on it."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        removal = await self.service.remove_story(
            channel_ref(interaction), member_of(interaction), id
        )
        await interaction.followup.send(
            truncate(escape_text(removal_text(removal, member_lang(interaction))), MESSAGE_LIMIT),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @story.command(name="versions")
    async def versions(self, interaction: discord.Interaction[Any]) -> None:
        """List the kept model versions of this channel (the active one is marked)."""
        versions = await self.service.figures.versions(channel_ref(interaction))
        lang = server_lang(interaction)
        if not versions:
            text = lang.gettext("This channel has no trained model yet.")
        else:
            lines = [lang.gettext("**Model versions** (newest first)")]
            active = "**" + lang.gettext("active") + "** "
            for version in versions:
                details = lang.gettext(
                    "stories {stories} · learnable accuracy {learnable}",
                    stories=", ".join(f"#{i}" for i in version.story_ids),
                    learnable=format_percent(version.learnable_accuracy, lang),
                )
                lines.append(
                    f"{active if version.active else ''}`v{version.version}` · "
                    f"{format_timestamp(version.created_at)} · {details}"
                )
            text = "\n".join(lines)
        await send_pages(interaction, text)

    @story.command(name="rollback")
    @app_commands.describe(version="The version to make active (default: the one before)")
    @app_commands.check(admin_check)
    async def rollback(
        self,
        interaction: discord.Interaction[Any],
        version: app_commands.Range[int, 1] | None = None,
    ) -> None:
        """Make an earlier kept model version answer /continue again."""
        rolled = await self.service.rollback(
            channel_ref(interaction), member_of(interaction), version
        )
        await interaction.response.send_message(
            server_lang(interaction).gettext(
                "Model version v{version} is active now.", version=rolled.version
            ),
            allowed_mentions=NO_MENTIONS,
        )

    @story.command(name="export")
    @app_commands.check(admin_check)
    async def export(self, interaction: discord.Interaction[Any]) -> None:
        """Download this channel's stories and active model as one file (import it with /train)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        channel = channel_ref(interaction)
        filename, data = await self.service.export_channel(channel, member_of(interaction))
        limit = interaction.guild.filesize_limit if interaction.guild is not None else 10 << 20
        if len(data) > limit:
            guild = "" if channel.guild_id is None else f" --guild-id {channel.guild_id}"
            command = f"python -m bot export --channel-id {channel.channel_id}{guild}"
            await interaction.followup.send(
                member_lang(interaction).gettext(
                    "The export is {size}, more than this server lets me upload ({limit}). Run "
                    "`{command}` on the bot's machine instead.",
                    size=byte_size(len(data)),
                    limit=byte_size(limit),
                    command=command,
                ),
                ephemeral=True,
                allowed_mentions=NO_MENTIONS,
            )
            return
        await interaction.followup.send(
            member_lang(interaction).gettext(
                "This channel's stories and active model. Import it into a channel with "
                "`/train` and this file as the story."
            ),
            file=discord.File(io.BytesIO(data), filename=filename),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @app_commands.command(name="forget")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_channels=True)
    @app_commands.check(admin_check)
    async def forget(self, interaction: discord.Interaction[Any]) -> None:
        """Delete this channel's stories, vocabulary and models (asks for confirmation first)."""
        lang = member_lang(interaction)
        view = ForgetConfirmation(interaction.user.id, lang)
        view.interaction = interaction
        await interaction.response.send_message(
            lang.gettext(
                "Forget this channel's story? This deletes its stories, vocabulary and every "
                "model version, and cannot be undone."
            ),
            view=view,
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )


async def send_pages(interaction: discord.Interaction[Any], text: str) -> None:
    """Answer with ``text`` in as many messages as it needs (split between lines)."""
    for index, page in enumerate(split_message(text, MESSAGE_LIMIT)):
        if index == 0:
            await interaction.response.send_message(page, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.followup.send(page, allowed_mentions=NO_MENTIONS)


async def setup(bot: commands.Bot) -> None:
    from bot.discord_adapter.client import FabulistBot

    assert isinstance(bot, FabulistBot)
    await bot.add_cog(StoryCog(bot))
