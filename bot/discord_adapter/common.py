"""Helpers shared by the cogs: Discord -> service values, permission check, replies, errors."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands

from bot.core.api import ChannelRef, Member
from bot.discord_adapter.rendering import MESSAGE_LIMIT, escape_text, truncate
from bot.errors import UserError

if TYPE_CHECKING:
    from bot.config import Config
    from bot.discord_adapter.client import FabulistBot

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


def bot_of(interaction: discord.Interaction[Any]) -> FabulistBot:
    # By its marker, not isinstance: client.py imports this module, not the other way round.
    client = interaction.client
    if not getattr(client, "is_fabulist", False):  # pragma: no cover - wiring bug
        raise RuntimeError("interaction does not belong to a FabulistBot")
    return cast("FabulistBot", client)


def channel_ref(interaction: discord.Interaction[Any]) -> ChannelRef:
    if interaction.channel_id is None:  # pragma: no cover - slash commands always carry one
        raise Denied("This command only works in a channel.")
    name = getattr(interaction.channel, "name", None)
    return ChannelRef(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        name=name if isinstance(name, str) else None,
    )


def is_admin(config: Config, interaction: discord.Interaction[Any]) -> bool:
    """May this member train, forget, and cancel other people's jobs in this channel?

    Uses the member's resolved permissions in the channel (sent by Discord with the interaction)
    and the configured role ids; DMs never qualify.
    """
    user = interaction.user
    if interaction.guild_id is None or not isinstance(user, discord.Member):
        return False
    if getattr(interaction.permissions, config.permissions.train_permission, False):
        return True
    # The raw role ids also count roles that are missing from the guild cache.
    role_ids = {role.id for role in user.roles} | set(getattr(user, "_roles", ()))
    return bool(role_ids.intersection(config.permissions.train_role_ids))


def member_of(interaction: discord.Interaction[Any]) -> Member:
    user = interaction.user
    return Member(
        user_id=user.id,
        display_name=user.display_name,
        is_admin=is_admin(bot_of(interaction).config, interaction),
    )


def permission_label(config: Config) -> str:
    return config.permissions.train_permission.replace("_", " ").title()


def admin_check(interaction: discord.Interaction[Any]) -> bool:
    """``app_commands.check`` predicate: the member may manage this channel's story."""
    config = bot_of(interaction).config
    if interaction.guild_id is None:
        raise Denied("This command only works in a server channel, not in direct messages.")
    if not is_admin(config, interaction):
        raise Denied(
            f"You need the {permission_label(config)} permission"
            + (" or a story-keeper role" if config.permissions.train_role_ids else "")
            + " in this channel to do that."
        )
    return True


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
