"""Reading a channel's history for ``/train source:history``, with a live progress message.

discord.py pages ``channel.history`` newest first, 100 messages a request with ``before=``, and
sleeps out 429 answers itself; reading starts just before the bot's own reading message. Every
message read goes to the core, which selects, counts and cleans. Of a member who opted out, and
of a system message (a join, a thread created, a pin...), only the facts are kept, never the
text.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import discord

from bot.adapters.language import ENGLISH, N_, Language
from bot.core.api import ChannelRef, HistoryMessage, HistoryRequest
from bot.discord_adapter.progress import PROGRESS_INTERVAL_SECONDS
from bot.discord_adapter.rendering import escape_text, progress_bar
from bot.discord_adapter.replies import NO_MENTIONS

if TYPE_CHECKING:
    from bot.discord_adapter.client import FabulistBot

log = logging.getLogger(__name__)

MESSAGE_CONTENT_OFF = N_(
    "Learning from channel history needs Discord's **Message Content** intent, which is off for "
    "this bot. Its operator can turn it on in two steps: in the Discord Developer Portal "
    "(Applications → this bot → Bot → Privileged Gateway Intents) switch on **Message Content "
    "Intent**, then set `message_content = true` under `[discord]` in the bot's config file and "
    "restart the bot. A server admin then allows it with `/privacy server history:on`."
)
# The types whose content its author wrote; every other type (joins, threads created, pins,
# boosts...) Discord writes itself: a system message.
_WRITTEN_TYPES = (
    discord.MessageType.default,
    discord.MessageType.reply,
    discord.MessageType.chat_input_command,
    discord.MessageType.context_menu_command,
)


def reading_text(label: str, read: int, limit: int, lang: Language = ENGLISH) -> str:
    bar = progress_bar(read / limit if limit else 1.0)
    reading = lang.gettext(
        "Reading {source}: {read} / {limit} messages",
        source=escape_text(label),
        read=lang.number(read),
        limit=lang.number(limit),
    )
    return f"📖 {reading}\n`{bar}`"


class HistoryReader:
    """Reads up to ``request.limit`` messages of ``channel`` (newest first) into values."""

    def __init__(
        self,
        bot: FabulistBot,
        channel: ChannelRef,
        request: HistoryRequest,
        lang: Language = ENGLISH,
    ) -> None:
        self.bot = bot
        self.channel = channel
        self.request = request
        self.lang = lang
        if channel.name:
            self.label = lang.gettext("#{channel}'s history", channel=channel.name)
        else:
            self.label = lang.gettext("the channel's history")
        self.message: discord.Message | None = None

    async def read(self) -> list[HistoryMessage]:
        messageable = self.bot.get_partial_messageable(
            self.channel.channel_id, guild_id=self.channel.guild_id
        )
        limit = self.request.limit
        try:
            self.message = await messageable.send(
                reading_text(self.label, 0, limit, self.lang), allowed_mentions=NO_MENTIONS
            )
        except discord.HTTPException as exc:
            log.warning("cannot post in channel %s: %s", self.channel.channel_id, exc)
        found: list[HistoryMessage] = []
        read = 0
        shown = time.monotonic()
        # What was there when the command ran: older than the reading message.
        async for message in messageable.history(limit=limit, before=self.message):
            read += 1
            system = message.type not in _WRITTEN_TYPES
            # An opted-out member's text is never kept, not even in memory: only that a
            # message was left out (the core counts it).
            opted_out = message.author.id in self.request.opted_out
            found.append(
                HistoryMessage(
                    message_id=message.id,
                    author_id=message.author.id,
                    content="" if opted_out or system else message.content,
                    created_at=message.created_at.isoformat(timespec="seconds"),
                    author_is_bot=message.author.bot,
                    webhook=message.webhook_id is not None,
                    system=system,
                )
            )
            if time.monotonic() - shown >= PROGRESS_INTERVAL_SECONDS:
                shown = time.monotonic()
                await self.show(reading_text(self.label, read, limit, self.lang))
        await self.show(reading_text(self.label, read, max(read, 1), self.lang))
        return found

    async def show(self, text: str, view: discord.ui.View | None = None) -> None:
        if self.message is None:
            return
        try:
            if view is None:
                await self.message.edit(content=text)
            else:
                await self.message.edit(content=text, view=view)
        except discord.HTTPException as exc:
            log.warning("could not update the reading message: %s", exc)
