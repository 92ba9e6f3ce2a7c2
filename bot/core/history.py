"""Learning from a channel's history: which messages count, how each is cleaned, and the story
they make (pure functions; the adapter reads the messages, ``Privacy`` checks consent).

Every message read is counted once: learned, or left out as a system message (a join, a thread
created, a pin...), a bot or webhook message, a message starting with a command prefix, a message
of a member who opted out, or what is left empty after cleaning. Cleaning removes code blocks,
inline code, links and custom emoji, and replaces every mention (members, roles, channels,
@everyone/@here) by :data:`MENTION_SYMBOL`, so no name or id is learned and nothing generated can
ping. The server's filtered words are cut out of each message (:func:`mask_messages`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from bot.core.api import (
    ChannelRef,
    HistoryMessage,
    HistoryRequest,
    HistorySpan,
    HistoryTraining,
    Member,
    ProgressCallback,
    TrainOptions,
)
from bot.core.filters import GuildFilters
from bot.core.library import Library
from bot.core.store import RebuiltStory, StoryMessage
from bot.core.uploads import prepare_story
from bot.core.validation import check_int
from bot.errors import InvalidOption, InvalidUpload, NotAllowed, ShuttingDown
from model.filtering import WordFilter, mask_text

MENTION_SYMBOL = "◇"

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"<?\b(?:https?|ftp)://[^\s>]+>?|\bwww\.[^\s]+|\bdiscord\.gg/[^\s]+", re.I)
_CUSTOM_EMOJI = re.compile(r"<a?:\w+:\d+>")
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>|@everyone\b|@here\b")
_SPACES = re.compile(r"[ \t]+")
_WORD = re.compile(r"\w", re.UNICODE)


def clean_message(content: str) -> str | None:
    """The text to learn from a message, or None if nothing learnable is left."""
    text = _CODE_BLOCK.sub(" ", content)
    text = _INLINE_CODE.sub(" ", text)
    text = _LINK.sub(" ", text)
    text = _CUSTOM_EMOJI.sub(" ", text)
    text = _MENTION.sub(f" {MENTION_SYMBOL} ", text)
    return _learnable(text)


def _learnable(text: str) -> str | None:
    """``text`` with its spaces tidied, or None if no word is left in it."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    text = "\n".join(line for line in lines if line)
    if not _WORD.search(text.replace(MENTION_SYMBOL, "")):
        return None
    return text


def is_command(content: str, prefixes: Collection[str]) -> bool:
    stripped = content.lstrip()
    return any(stripped.startswith(prefix) for prefix in prefixes if prefix)


@dataclass(frozen=True)
class SelectedMessages:
    """What a history read yields: the kept messages, cleaned, oldest first, and the counts
    (``read`` is the kept messages plus every one skipped)."""

    messages: tuple[StoryMessage, ...]
    read: int
    skipped_system: int
    skipped_bots: int
    skipped_commands: int
    skipped_opted_out: int
    skipped_empty: int


def select_messages(
    messages: Sequence[HistoryMessage],
    *,
    prefixes: Collection[str],
    opted_out: Collection[int],
) -> SelectedMessages:
    """Keep and clean the learnable messages, oldest first (by message id)."""
    kept: list[StoryMessage] = []
    system = bots = commands = opted = empty = 0
    for message in sorted(messages, key=lambda m: m.message_id):
        if message.system:
            system += 1
        elif message.author_is_bot or message.webhook:
            bots += 1
        elif message.author_id in opted_out:
            opted += 1
        elif is_command(message.content, prefixes):
            commands += 1
        elif (text := clean_message(message.content)) is None:
            empty += 1
        else:
            kept.append(
                StoryMessage(message.message_id, message.author_id, text, message.created_at)
            )
    return SelectedMessages(tuple(kept), len(messages), system, bots, commands, opted, empty)


def mask_messages(
    messages: tuple[StoryMessage, ...], word_filter: WordFilter
) -> tuple[tuple[StoryMessage, ...], int, int]:
    """The messages with the server's filtered words cut out, the words cut, and how many
    messages were left without a word (dropped). Always masked, whatever ``filters.on_story``
    says: a channel's past cannot be edited and read again the way an upload can."""
    if not word_filter:
        return messages, 0, 0
    kept: list[StoryMessage] = []
    cut = dropped = 0
    for message in messages:
        masked, words = mask_text(message.text, word_filter)
        if not words:
            kept.append(message)
            continue
        cut += len(words)
        text = _learnable(masked)
        if text is None:
            dropped += 1
        else:
            kept.append(replace(message, text=text))
    return tuple(kept), cut, dropped


def story_text(texts: Sequence[str]) -> str:
    """A history story's text: its messages, one paragraph each."""
    return "\n\n".join(texts)


def rebuild_story(texts: Sequence[str], *, n_input: int, max_symbols: int) -> RebuiltStory | None:
    """A history story rebuilt from its remaining messages; None if too little is left."""
    if not texts:
        return None
    data = story_text(texts).encode("utf-8")
    try:
        prepared = prepare_story(data, n_input=n_input, max_symbols=max_symbols)
    except InvalidUpload:
        return None
    return RebuiltStory(
        text=prepared.text,
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        symbols=prepared.symbols,
        vocabulary_size=prepared.vocabulary_size,
    )


class HistoryLearning:
    """``/train source:history``: the checks before reading, then the story and its job."""

    def __init__(self, library: Library, filters: GuildFilters) -> None:
        self.library = library
        self.filters = filters
        self.config, self.store = library.config, library.store
        self.scheduler, self.checks = library.scheduler, library.checks

    async def set_enabled(self, guild_id: int | None, member: Member, enabled: bool) -> None:
        """A server admin allows (or stops) learning from its channels' history."""
        if guild_id is None:
            raise InvalidOption("Learning from history is set per server.")
        if not member.is_admin:
            raise NotAllowed("Only a server admin can allow or stop learning from history.")
        await self.store.set_history_enabled(guild_id, enabled, member.user_id)

    async def enabled(self, guild_id: int | None) -> bool:
        return guild_id is not None and await self.store.history_enabled(guild_id)

    async def request(
        self, channel: ChannelRef, member: Member, messages: int | None, options: TrainOptions
    ) -> HistoryRequest:
        """Every check before the adapter reads anything (UserError if refused)."""
        if not member.is_admin:
            raise NotAllowed("You are not allowed to train fabulist in this channel.")
        if channel.guild_id is None or not await self.store.history_enabled(channel.guild_id):
            raise NotAllowed(
                "This server has not allowed learning from channel history. A server admin can "
                "allow it with /privacy server history:on (members can opt out with "
                "/privacy optout)."
            )
        limits = self.config.history
        limit = limits.default_messages if messages is None else messages
        check_int("messages", limit, 1, limits.max_messages)
        self.checks.job_options(options)
        self.scheduler.check_not_busy(channel)
        self.scheduler.check_queue()
        return HistoryRequest(limit=limit, opted_out=await self.store.opted_out(channel.guild_id))

    async def train(
        self,
        channel: ChannelRef,
        member: Member,
        messages: Sequence[HistoryMessage],
        options: TrainOptions,
        on_progress: ProgressCallback | None,
    ) -> HistoryTraining:
        """Select and clean the messages (consent read again: it may have changed while the
        adapter read), store them as one story and queue its training."""
        if self.scheduler.closing:
            raise ShuttingDown()
        request = await self.request(channel, member, None, options)
        job_options = self.checks.job_options(options)
        selected = select_messages(
            messages[: self.config.history.max_messages],
            prefixes=self.config.history.command_prefixes,
            opted_out=request.opted_out,
        )
        word_filter = await self.filters.word_filter(channel.guild_id)
        messages_kept, cut, emptied = mask_messages(selected.messages, word_filter)
        if not messages_kept:
            raise InvalidUpload(
                "None of the {read} messages read can be learned (system messages, bots, "
                "webhooks, commands, links, code, filtered words and members who opted out are "
                "left out).",
                read=selected.read,
            )
        data = story_text([m.text for m in messages_kept]).encode("utf-8")
        filename = f"history of #{channel.name or channel.channel_id}"
        job, _ = await self.library.queue_story(
            channel,
            member,
            filename,
            data,
            options.mode == "append",
            job_options,
            on_progress,
            messages=messages_kept,
        )
        first, last = messages_kept[0], messages_kept[-1]
        return HistoryTraining(
            job=replace(job, filtered_words=cut),
            messages=len(messages_kept),
            read=selected.read,
            skipped_system=selected.skipped_system,
            skipped_bots=selected.skipped_bots,
            skipped_commands=selected.skipped_commands,
            skipped_opted_out=selected.skipped_opted_out,
            skipped_empty=selected.skipped_empty + emptied,
            span=HistorySpan(len(messages_kept), first.created_at, last.created_at),
        )
