"""/privacy (a group: optout, optin, mydata, forget, server): a member's consent and data, and a
server admin's switch for learning from channel history. Every answer is private."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.text import member_data_json, member_data_text, own_deletion_text
from bot.core.api import Member
from bot.discord_adapter.replies import NO_MENTIONS, Denied, member_lang

if TYPE_CHECKING:
    from bot.core.service import StoryService
    from bot.discord_adapter.client import FabulistBot

# Discord refuses bigger uploads from bots in servers without boosts.
FILE_LIMIT = 10 * 1024 * 1024


class PrivacyCog(commands.Cog):
    def __init__(self, bot: FabulistBot) -> None:
        self.bot = bot

    @property
    def service(self) -> StoryService:
        return self.bot.service

    privacy = app_commands.Group(
        name="privacy", description="What fabulist keeps of you, and consent", guild_only=True
    )

    @privacy.command(name="optout")
    async def optout(self, interaction: discord.Interaction[Any]) -> None:
        """Never learn from your messages in this server (history trainings skip them)."""
        await self.service.set_opted_out(interaction.guild_id, interaction.user.id, True)
        await _reply(
            interaction,
            member_lang(interaction).gettext(
                "Done: fabulist will not read or learn your messages in this server. Messages "
                "of yours already in its stories stay until you use /privacy forget."
            ),
        )

    @privacy.command(name="optin")
    async def optin(self, interaction: discord.Interaction[Any]) -> None:
        """Allow learning from your messages in this server again."""
        await self.service.set_opted_out(interaction.guild_id, interaction.user.id, False)
        await _reply(
            interaction,
            member_lang(interaction).gettext(
                "Done: history trainings in this server may learn your messages again "
                "(/privacy optout stops it)."
            ),
        )

    @privacy.command(name="mydata")
    async def mydata(self, interaction: discord.Interaction[Any]) -> None:
        """Show what fabulist keeps of you in this server, with a file of all of it."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        data = await self.service.member_data(interaction.user.id, interaction.guild_id)
        lang = member_lang(interaction)
        text = member_data_text(data, lang)
        if not data.uploads and not data.messages:
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        payload = member_data_json(data)
        if len(payload) > FILE_LIMIT:
            text += "\n" + lang.gettext(
                "The file would be {size} MiB, more than Discord lets me send; ask the bot's "
                "operator for it.",
                size=lang.number(len(payload) / 1048576, 1),
            )
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        await interaction.followup.send(
            text,
            file=discord.File(io.BytesIO(payload), filename="fabulist-my-data.json"),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    @privacy.command(name="forget")
    @app_commands.describe(confirm="True to delete: it cannot be undone")
    async def forget(self, interaction: discord.Interaction[Any], confirm: bool) -> None:
        """Delete your uploaded stories and your messages from this server's stories, then
        retrain the channels that learned them."""
        if not confirm:
            raise Denied(
                "Nothing was deleted. Run `/privacy forget confirm:True` to delete your uploaded "
                "stories and your messages from this server's stories; the models that learned "
                "them are deleted and the channels retrain on what remains."
            )
        await interaction.response.defer(ephemeral=True, thinking=True)
        deleted = await self.service.delete_user_data(interaction.user.id, interaction.guild_id)
        await _reply(interaction, own_deletion_text(deleted, member_lang(interaction)))

    @privacy.command(name="server")
    @app_commands.describe(history="on: admins may train on channel history; off: nobody may")
    async def server(
        self, interaction: discord.Interaction[Any], history: Literal["on", "off"] | None = None
    ) -> None:
        """Allow or stop learning from this server's channel history (Manage Server)."""
        state = await self.service.history_learning(interaction.guild_id)
        if history is not None:
            perms = interaction.permissions
            member = Member(
                user_id=interaction.user.id,
                display_name=interaction.user.display_name,
                is_admin=bool(perms.manage_guild or perms.administrator),
            )
            if not member.is_admin:
                raise Denied("You need the Manage Server permission to change this.")
            state = history == "on"
            await self.service.set_history_learning(interaction.guild_id, member, state)
        lang = member_lang(interaction)
        if state:
            text = lang.gettext(
                "Learning from channel history is **on** in this server: members with the "
                "training permission can use `/train source:history`. Members who run "
                "`/privacy optout` are never learned from."
            )
        else:
            text = lang.gettext("Learning from channel history is **off** in this server.")
        await _reply(interaction, text)


async def _reply(interaction: discord.Interaction[Any], text: str) -> None:
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: commands.Bot) -> None:
    from bot.discord_adapter.client import FabulistBot

    assert isinstance(bot, FabulistBot)
    await bot.add_cog(PrivacyCog(bot))
