"""Helpers shared by the cogs: Discord -> service values, the bot of an interaction, the
permission check (replies and errors: ``bot.discord_adapter.replies``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord

from bot.core.api import ChannelRef, Member
from bot.discord_adapter.client import FabulistBot
from bot.discord_adapter.replies import Denied

if TYPE_CHECKING:
    from bot.config import Config


def bot_of(interaction: discord.Interaction[Any]) -> FabulistBot:
    client = interaction.client
    if not isinstance(client, FabulistBot):  # pragma: no cover - wiring bug
        raise RuntimeError("interaction does not belong to a FabulistBot")
    return client


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
        if config.permissions.train_role_ids:
            raise Denied(
                "You need the {permission} permission or a story-keeper role in this channel "
                "to do that.",
                permission=permission_label(config),
            )
        raise Denied(
            "You need the {permission} permission in this channel to do that.",
            permission=permission_label(config),
        )
    return True
