"""A server's word filters (``/filter``): kept in the store, cached per server, applied to
generation (``model.filtering``), to prompts and to uploaded stories.

Matching is ``model.filtering``'s: case- and accent-insensitive, whole words, runs of characters
in spaceless scripts (CJK). The blocked-id tables live on each cached model
(``model_cache.CachedModel.blocked``). Each process caches a server's words with the store's
``filters_version`` of the server, read again (one small query) at a use that comes more than
:data:`VERSION_FRESH_SECONDS` after the last read: a change made by another process (a CLI,
another shard) applies here within that time, one made here at the next prompt, upload or reply.
Channels outside a server (console, CLI) have no filters.
"""

from __future__ import annotations

import logging
import time

from bot.config import Config
from bot.core.api import FilterChange, FilteredWord
from bot.core.store import StoryStore
from bot.errors import InvalidOption, InvalidUpload, NotAllowed, NotFound
from bot.messages import Phrase, Plural
from model.filtering import WordFilter, filter_rule, mask_text

logger = logging.getLogger(__name__)

MAX_WORD_CHARACTERS = 64
MAX_WORD_SYMBOLS = 8
# Issue 24 promises a filter change everywhere within 1 s; half of it spares a busy channel one
# query per reply.
VERSION_FRESH_SECONDS = 0.5


def filter_key(word: str) -> str:
    """The stored key of a filtered word: its folded symbols, space-separated."""
    return " ".join(filter_rule(word))


class GuildFilters:
    """Each server's filtered words, kept while its filters version stays (see the module doc)."""

    def __init__(self, config: Config, store: StoryStore) -> None:
        self.config = config
        self.store = store
        self._filters: dict[int, tuple[int, WordFilter]] = {}  # guild -> (version, filter)
        self._version_read: dict[int, float] = {}  # guild -> when its version was last read

    # -- reading ---------------------------------------------------------------------------

    async def word_filter(self, guild_id: int | None) -> WordFilter:
        """The server's filter (empty outside servers or when it has none)."""
        if guild_id is None:
            return WordFilter()
        cached = self._filters.get(guild_id)
        now = time.monotonic()
        if cached is not None and now - self._version_read[guild_id] < VERSION_FRESH_SECONDS:
            return cached[1]
        # The version first: a change landing between the two reads makes the next use reload.
        version = await self.store.filters_version(guild_id)
        self._version_read[guild_id] = now
        if cached is not None and cached[0] == version:
            return cached[1]
        records = await self.store.guild_filters(guild_id)
        word_filter = WordFilter.of(record.word for record in records)
        self._filters[guild_id] = (version, word_filter)
        return word_filter

    async def words(self, guild_id: int | None) -> list[FilteredWord]:
        if guild_id is None:
            return []
        return [
            FilteredWord(record.word, record.added_by, record.created_at)
            for record in await self.store.guild_filters(guild_id)
        ]

    # -- changing --------------------------------------------------------------------------

    def _check(self, guild_id: int | None, is_admin: bool) -> int:
        if guild_id is None:
            raise InvalidOption("Word filters belong to a server; use /filter in a server channel.")
        if not is_admin:
            raise NotAllowed("Only the server's story keepers can change its word filters.")
        return guild_id

    @staticmethod
    def _clean(word: str) -> tuple[str, str]:
        word = " ".join(word.split())
        if not word:
            raise InvalidOption("Give the word to filter.")
        if len(word) > MAX_WORD_CHARACTERS:
            raise InvalidOption(
                "A filtered word has at most {limit} characters.", limit=MAX_WORD_CHARACTERS
            )
        rule = filter_rule(word)
        if not any(any(ch.isalnum() for ch in symbol) for symbol in rule):
            raise InvalidOption("A filtered word needs at least one letter or digit.")
        if len(rule) > MAX_WORD_SYMBOLS:
            raise InvalidOption(
                "Filter a word or a short phrase (at most {limit} words and marks).",
                limit=MAX_WORD_SYMBOLS,
            )
        return word, " ".join(rule)

    async def add(
        self, guild_id: int | None, is_admin: bool, user_id: int, word: str
    ) -> FilterChange:
        guild = self._check(guild_id, is_admin)
        word, key = self._clean(word)
        existing = await self.store.guild_filters(guild)
        if any(record.folded == key for record in existing):
            return FilterChange(word, False, len(existing))
        if len(existing) >= self.config.filters.max_words:
            raise InvalidOption(
                "This server already filters {count} words (the limit); remove one first.",
                count=len(existing),
            )
        added = await self.store.add_guild_filter(guild, key, word, user_id)
        self._filters.pop(guild, None)  # this process's next use reads the change
        logger.info("guild %d: filter added (%d words)", guild, len(existing) + int(added))
        return FilterChange(word, added, len(existing) + int(added))

    async def remove(self, guild_id: int | None, is_admin: bool, word: str) -> FilterChange:
        guild = self._check(guild_id, is_admin)
        word, key = self._clean(word)
        removed = await self.store.remove_guild_filter(guild, key)
        self._filters.pop(guild, None)
        if removed is None:
            raise NotFound(
                "“{word}” is not filtered in this server; /filter list shows the words.", word=word
            )
        count = len(await self.store.guild_filters(guild))
        logger.info("guild %d: filter removed (%d words)", guild, count)
        return FilterChange(removed.word, True, count)

    # -- applying --------------------------------------------------------------------------

    @staticmethod
    def check_prompt(tokens: list[str], word_filter: WordFilter) -> None:
        """A prompt holding a filtered word is refused: the reply would repeat it."""
        if word_filter.matches(tokens):
            raise InvalidOption("Your words contain a word this server filters; try others.")

    def story_text(self, text: str, word_filter: WordFilter) -> tuple[str, int]:
        """The story to store: masked (with the count of words cut) or refused, by config."""
        masked, cut = mask_text(text, word_filter)
        if not cut:
            return text, 0
        if self.config.filters.on_story == "refuse":
            distinct = sorted(set(cut))
            shown = ", ".join(f"“{word}”" for word in distinct[:5])
            raise InvalidUpload(
                "The story contains {words} this server filters ({shown}). "
                "Remove them and upload it again.",
                words=Plural("{count} word", "{count} words", len(cut), count=len(cut)),
                shown=Phrase("{words} and others", words=shown) if len(distinct) > 5 else shown,
            )
        return masked, len(cut)
