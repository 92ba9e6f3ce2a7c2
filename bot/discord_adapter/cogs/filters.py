"""/filter add, remove and list: the words a server never lets its channels' models say.

Admins only (the same check as /train); every answer is ephemeral, since the list is the
words themselves. The matching and the cache live in the core (``bot.core.filters``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_adapter.cards import filter_change_text, filter_list_text
from bot.discord_adapter.common import admin_check, channel_ref, member_of
from bot.discord_adapter.rendering import MESSAGE_LIMIT, split_message
from bot.discord_adapter.replies import NO_MENTIONS, member_lang

if TYPE_CHECKING:
    from bot.core.service import StoryService
    from bot.discord_adapter.client import FabulistBot

WORD_LIMIT = 64


class FilterCog(commands.Cog):
    filter = app_commands.Group(
        name="filter",
        description="Words this server's stories never say",
        guild_only=True,
        default_permissions=discord.Permissions(manage_channels=True),
    )

    def __init__(self, bot: FabulistBot) -> None:
        self.bot = bot

    @property
    def service(self) -> StoryService:
        return self.bot.service

    async def cog_load(self) -> None:
        if self.bot.config.permissions.train_role_ids:
            # Role holders without the permission must still see the command; the check decides.
            self.filter.default_permissions = None

    @filter.command(name="add")
    @app_commands.describe(word="The word never to generate (any case or accents; CJK too)")
    @app_commands.check(admin_check)
    async def add(
        self, interaction: discord.Interaction[Any], word: app_commands.Range[str, 1, WORD_LIMIT]
    ) -> None:
        """Never generate this word in this server, and refuse prompts that contain it."""
        change = await self.service.add_filter(
            channel_ref(interaction), member_of(interaction), word
        )
        await interaction.response.send_message(
            filter_change_text(change, added=True, lang=member_lang(interaction)),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @filter.command(name="remove")
    @app_commands.describe(word="The filtered word to allow again")
    @app_commands.check(admin_check)
    async def remove(
        self, interaction: discord.Interaction[Any], word: app_commands.Range[str, 1, WORD_LIMIT]
    ) -> None:
        """Allow a filtered word again in this server."""
        change = await self.service.remove_filter(
            channel_ref(interaction), member_of(interaction), word
        )
        await interaction.response.send_message(
            filter_change_text(change, added=False, lang=member_lang(interaction)),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @filter.command(name="list")
    @app_commands.check(admin_check)
    async def list_words(self, interaction: discord.Interaction[Any]) -> None:
        """Show this server's filtered words (only you see the list)."""
        words = await self.service.list_filters(channel_ref(interaction), member_of(interaction))
        text = filter_list_text(words, member_lang(interaction))
        for index, page in enumerate(split_message(text, MESSAGE_LIMIT)):
            send = interaction.response.send_message if index == 0 else interaction.followup.send
            await send(page, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: commands.Bot) -> None:
    from bot.discord_adapter.client import FabulistBot

    assert isinstance(bot, FabulistBot)
    await bot.add_cog(FilterCog(bot))
