"""Replies to interactions, shared by the client and the cogs: mentions off, and errors as
friendly text (a member's mistake, a failed check) or a reference code (a bug, logged), in the
member's language."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import discord
from discord import app_commands

from bot.adapters.language import ENGLISH, Language
from bot.discord_adapter.i18n import Catalogue
from bot.discord_adapter.rendering import MESSAGE_LIMIT, escape_text, truncate
from bot.errors import UserError

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()


class Denied(app_commands.CheckFailure):
    """A check failed; ``template`` with ``params`` filled in is shown to the member."""

    def __init__(self, template: str, /, **params: object) -> None:
        self.message = template.format(**params) if params else template
        super().__init__(self.message)
        self.template = template
        self.params = params


def user_error_message(error: Exception, lang: Language = ENGLISH) -> str | None:
    """The friendly text for an expected error, or None for a bug."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, UserError):
        # UserError messages are plain text (none of ours uses markdown), yet many quote what the
        # member sent: prompt words, suggestions from the story, file and zip entry names. So
        # the whole message is escaped: our words still show exactly as written (a backslash
        # before a markdown character does not show), the quoted parts show literally, and
        # nothing a member sends can format, hide or link text in the reply.
        message = lang.gettext(error.template, **error.params)
        return truncate(escape_text(message), MESSAGE_LIMIT)
    if isinstance(error, Denied):
        return lang.gettext(error.template, **error.params)
    if isinstance(error, app_commands.NoPrivateMessage):
        return lang.gettext("This command only works in a server channel, not in direct messages.")
    if isinstance(error, app_commands.MissingPermissions | app_commands.MissingAnyRole):
        return lang.gettext("You are not allowed to do that here.")
    if isinstance(error, app_commands.BotMissingPermissions):
        missing = ", ".join(p.replace("_", " ") for p in error.missing_permissions)
        return lang.gettext("I am missing permissions in this channel: {missing}.", missing=missing)
    if isinstance(error, app_commands.TransformerError | app_commands.CommandSignatureMismatch):
        return lang.gettext("That option value is not valid; please try again.")
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


def catalogue_of(interaction: discord.Interaction[Any]) -> Catalogue | None:
    """The languages of the interaction's bot (None before they are loaded)."""
    try:
        catalogue = getattr(interaction.client, "catalogue", None)
    except RuntimeError:
        return None
    return catalogue if isinstance(catalogue, Catalogue) else None


def member_lang(interaction: discord.Interaction[Any]) -> Language:
    """The member's language, for a private answer."""
    catalogue = catalogue_of(interaction)
    return catalogue.language(interaction.locale) if catalogue is not None else ENGLISH


def server_lang(interaction: discord.Interaction[Any]) -> Language:
    """The server's language, for a message the channel sees."""
    catalogue = catalogue_of(interaction)
    return catalogue.language(interaction.guild_locale) if catalogue is not None else ENGLISH


async def report_error(interaction: discord.Interaction[Any], error: Exception) -> None:
    """Reply to a failed interaction: friendly text for user errors, a reference code otherwise;
    in the member's language."""
    lang = member_lang(interaction)
    message = user_error_message(error, lang)
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
        message = lang.gettext(
            "Something went wrong on my side, sorry. If it keeps happening, tell the bot's "
            "operator the reference code `{ref}`.",
            ref=ref,
        )
    await send_ephemeral(interaction, message)


class ErrorReportingView(discord.ui.View):
    """A view whose component errors get the same treatment as command errors."""

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        await report_error(interaction, error)
