"""/story (a command group: ``card`` now; list, remove, versions... later) and /forget."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_adapter.common import (
    NO_MENTIONS,
    ErrorReportingView,
    admin_check,
    bot_of,
    channel_ref,
    member_of,
)
from bot.discord_adapter.rendering import story_card_embed

if TYPE_CHECKING:
    from bot.discord_adapter.client import FabulistBot
    from bot.service import StoryService

log = logging.getLogger(__name__)

CONFIRM_SECONDS = 60.0


class ForgetConfirmation(ErrorReportingView):
    """Ephemeral Yes/No for /forget; only the member who asked can see and press it."""

    def __init__(self, requester_id: int) -> None:
        super().__init__(timeout=CONFIRM_SECONDS)
        self.requester_id = requester_id
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
            content="Done: this channel's stories, vocabulary and models are deleted.", view=None
        )

    @discord.ui.button(label="Keep it", style=discord.ButtonStyle.secondary)
    async def keep(
        self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]
    ) -> None:
        self.stop()
        await interaction.response.edit_message(content="Nothing was deleted.", view=None)

    async def on_timeout(self) -> None:
        if self.interaction is not None:
            with contextlib.suppress(discord.HTTPException):
                await self.interaction.edit_original_response(
                    content="No answer; nothing was deleted.", view=None
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

    @story.command(name="card")
    async def card(self, interaction: discord.Interaction[Any]) -> None:
        """Show what this channel has learned: story, uploader, size, accuracy, training state."""
        card = await self.service.story_card(channel_ref(interaction))
        await interaction.response.send_message(
            embed=story_card_embed(card), allowed_mentions=NO_MENTIONS
        )

    @app_commands.command(name="forget")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_channels=True)
    @app_commands.check(admin_check)
    async def forget(self, interaction: discord.Interaction[Any]) -> None:
        """Delete this channel's stories, vocabulary and models (asks for confirmation first)."""
        view = ForgetConfirmation(interaction.user.id)
        view.interaction = interaction
        await interaction.response.send_message(
            "Forget this channel's story? This deletes its stories, vocabulary and every model "
            "version, and cannot be undone.",
            view=view,
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )


async def setup(bot: commands.Bot) -> None:
    from bot.discord_adapter.client import FabulistBot

    assert isinstance(bot, FabulistBot)
    await bot.add_cog(StoryCog(bot))
