"""Replies to interactions, shared by the client and the cogs: mentions off, and errors as
friendly text (a member's mistake, a failed check) or a reference code (a bug, logged)."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import discord
from discord import app_commands

from bot.discord_adapter.rendering import MESSAGE_LIMIT, escape_text, truncate
from bot.errors import UserError

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
GENERIC_ERROR = (
    "Something went wrong on my side, sorry. If it keeps happening, tell the bot's operator "
    "the reference code `{ref}`."
)


class Denied(app_commands.CheckFailure):
    """A check failed; ``message`` is shown to the member."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def user_error_message(error: Exception) -> str | None:
    """The friendly text for an expected error, or None for a bug."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, UserError):
        # UserError messages are plain text (none of ours uses markdown), yet many quote what the
        # member sent: prompt words, suggestions from the story, file and zip entry names. So
        # the whole message is escaped: our words still show exactly as written (a backslash
        # before a markdown character does not show), the quoted parts show literally, and
        # nothing a member sends can format, hide or link text in the reply.
        return truncate(escape_text(error.message), MESSAGE_LIMIT)
    if isinstance(error, Denied):
        return error.message
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server channel, not in direct messages."
    if isinstance(error, app_commands.MissingPermissions | app_commands.MissingAnyRole):
        return "You are not allowed to do that here."
    if isinstance(error, app_commands.BotMissingPermissions):
        missing = ", ".join(p.replace("_", " ") for p in error.missing_permissions)
        return f"I am missing permissions in this channel: {missing}."
    if isinstance(error, app_commands.TransformerError | app_commands.CommandSignatureMismatch):
        return "That option value is not valid; please try again."
    return None


async def send_ephemeral(interaction: discord.Interaction[Any], text: str) -> None:
    """Answer privately, whether or not the interaction was already acknowledged."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=NO_MENTIONS
            )
    except discord.HTTPException:
        log.warning("could not send an error reply to interaction %s", interaction.id)


async def report_error(interaction: discord.Interaction[Any], error: Exception) -> None:
    """Reply to a failed interaction: friendly text for user errors, a reference code otherwise."""
    message = user_error_message(error)
    if message is None:
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        ref = secrets.token_hex(4).upper()
        command = interaction.command.qualified_name if interaction.command else "component"
        log.error(
            "unexpected error [ref %s] in %s (guild %s, channel %s, user %s)",
            ref,
            command,
            interaction.guild_id,
            interaction.channel_id,
            interaction.user.id,
            exc_info=original,
        )
        message = GENERIC_ERROR.format(ref=ref)
    await send_ephemeral(interaction, message)


class ErrorReportingView(discord.ui.View):
    """A view whose component errors get the same treatment as command errors."""

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        await report_error(interaction, error)
