"""Continuing stories: a channel's model answers a prompt off the event loop, with the
member's cooldown, the server's word filters and the replies counter; word completion; the
training plot."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from bot.config import Config
from bot.core.api import ChannelRef, Continuation, ContinueOptions, Member
from bot.core.cooldowns import Cooldowns
from bot.core.filters import GuildFilters
from bot.core.job_records import figures_of
from bot.core.model_cache import ModelCache, generate_with_share
from bot.core.recent_replies import RecentReplies
from bot.core.store import StoryStore
from bot.core.validation import RequestChecks
from bot.errors import InvalidOption, NoModel, ShuttingDown
from model import ModelError, detokenize, tokenize
from model.errors import EverythingFiltered

logger = logging.getLogger(__name__)


class Storyteller:
    """Answers ``/continue`` (and autocomplete) from the model cache in generation threads."""

    def __init__(
        self,
        config: Config,
        store: StoryStore,
        cache: ModelCache,
        threads: Executor,
        checks: RequestChecks,
        filters: GuildFilters,
    ) -> None:
        self.config = config
        self.store = store
        self.cache = cache
        self._threads = threads
        self.checks = checks
        self.filters = filters
        self.cooldowns = Cooldowns(config.cooldowns.continue_seconds)
        self.recent = RecentReplies()
        # Set when the service closes: then the threads refuse work, and a request that raced
        # close() is told ShuttingDown, not the pool's RuntimeError.
        self.closing = False

    async def continue_story(
        self,
        channel: ChannelRef,
        prompt: str,
        options: ContinueOptions,
        *,
        member: Member | None = None,
    ) -> Continuation:
        """Continue ``prompt`` with the channel's active model (off the loop), from its known
        words: the words the story never uses are not refused but named in the reply
        (``Continuation.unknown_words``). An unseeded sampled reply (the default) does not
        repeat the 4-grams of the channel's recent replies (:mod:`bot.core.recent_replies`).

        With ``member``, the per-user cooldown ``cooldowns.continue_seconds`` applies. It is
        charged up front (so concurrent requests cannot slip through) and refunded when the
        request fails, so a member can correct a refused prompt at once.
        """
        if self.closing:
            raise ShuttingDown()
        generation = self.checks.continue_options(options)
        tokens = self.checks.prompt(prompt)
        word_filter = await self.filters.word_filter(channel.guild_id)
        self.filters.check_prompt(tokens, word_filter)
        charge = None if member is None else self.cooldowns.charge(member.user_id)
        try:
            entry = await self.cache.model_for(channel.channel_id)
            avoid = self.recent.to_avoid(channel.channel_id, entry.version, generation)
            loop = asyncio.get_running_loop()
            try:
                reply, share = await loop.run_in_executor(
                    self._threads,
                    generate_with_share,
                    entry,
                    tokens,
                    generation,
                    word_filter,
                    avoid,
                )
            except EverythingFiltered:
                raise InvalidOption("Every word this model knows is filtered.") from None
            except ModelError as exc:
                # The checks above keep the options in the model's ranges; its own words
                # (English only: model/ has no catalogue) are the last resort.
                raise InvalidOption.untranslated(str(exc)) from None
        except BaseException as exc:
            if member is not None and charge is not None:
                self.cooldowns.refund(member.user_id, charge)
            if isinstance(exc, RuntimeError) and self.closing:
                raise ShuttingDown() from None
            raise
        self.recent.add(channel.channel_id, entry.version, reply.symbols)
        try:
            await self.store.count_reply(channel.channel_id)
        except Exception:  # a figure for /story stats must never cost the member the reply
            logger.warning("could not count a reply in channel %d", channel.channel_id)
        return Continuation(
            prompt_symbols=tokens,
            symbols=reply.symbols,
            text=detokenize([*tokens, *reply.symbols]),
            model_version=entry.version,
            original_share=share,
            unknown_words=reply.unknown,
        )

    def message_prompt(self, text: str) -> str:
        """The last words of a message as the prompt that continues it ("Continue this")."""
        return self.checks.message_prompt(text)

    async def complete_word(self, channel: ChannelRef, prefix: str, limit: int = 25) -> list[str]:
        """Vocabulary words starting with ``prefix`` (autocomplete); [] without a model."""
        try:
            entry = await self.cache.model_for(channel.channel_id)
        except NoModel:
            return []
        words = tokenize(prefix)
        last = words[-1] if words and not prefix.endswith(" ") else ""
        return entry.model.vocabulary.complete(last, max(1, min(limit, 25)))

    async def training_plot(self, channel: ChannelRef) -> bytes | None:
        """PNG of the active model's loss and accuracy per epoch (rendered off the loop)."""
        model = await self.store.active_model(channel.channel_id)
        figures = None if model is None else figures_of(model.figures, model.id)
        if figures is None or not figures.history:
            return None
        from bot.plot import training_plot_png

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, training_plot_png, figures)
