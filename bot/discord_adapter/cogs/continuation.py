"""/continue with prompt autocomplete, its Reroll and Continue buttons, and the message context
menu "Continue this" (right-click a message -> Apps), which continues the message's last words."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.language import ENGLISH, N_, Language
from bot.core.api import MAX_N_INPUT, MAX_SEED, ChannelRef, ContinueOptions
from bot.discord_adapter.common import bot_of, channel_ref, member_of
from bot.discord_adapter.rendering import (
    continuation_text,
    message_story_text,
    split_message,
    word_choices,
)
from bot.discord_adapter.replies import (
    NO_MENTIONS,
    member_lang,
    report_error,
    send_ephemeral,
    server_lang,
)
from bot.errors import UserError

if TYPE_CHECKING:
    from bot.core.api import Continuation
    from bot.core.service import StoryService
    from bot.discord_adapter.client import FabulistBot

log = logging.getLogger(__name__)

# Discord wants an answer within 3 s. A reply ready within this long is the answer itself; a
# slower one (a model to load from storage, generations queued, a busy machine) is acknowledged
# ("thinking") and follows. Acknowledging at once whenever a reply would wait cost one more
# interaction call for most replies under load (bench/RESULTS.md, "Processes under CPU quotas").
ACKNOWLEDGE_AFTER_SECONDS = 1.0
# Reroll means "another take": sample even when the original was greedy.
REROLL_TEMPERATURE = 0.8
# Button state is kept in memory for this many recent replies; older buttons say they expired.
REMEMBERED_REPLIES = 2000
EXPIRED = N_("These buttons have expired; use `/continue` again.")
CONTINUE_THIS = "Continue this"


@dataclass(frozen=True)
class ReplyState:
    """What the buttons under one /continue reply need to redo or extend it."""

    channel: ChannelRef
    prompt: str
    options: ContinueOptions
    symbols: tuple[str, ...]


class ContinuationButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"fabulist:(?P<action>reroll|more):(?P<token>[0-9a-f]{1,32})",
):
    """Reroll / Continue. The custom id names a remembered reply, so stale buttons answer too."""

    def __init__(self, action: str, token: str, lang: Language = ENGLISH) -> None:
        # The label only shows when the bot sends the button; a click rebuilds it unseen.
        label, style = (lang.gettext("Reroll"), discord.ButtonStyle.secondary)
        if action == "more":
            label, style = (lang.gettext("Continue"), discord.ButtonStyle.primary)
        super().__init__(
            discord.ui.Button(label=label, style=style, custom_id=f"fabulist:{action}:{token}")
        )
        self.action = action
        self.token = token

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: Any,
        /,
    ) -> ContinuationButton:
        return cls(match["action"], match["token"])

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return await bot_of(interaction).answers(interaction)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            cog = bot_of(interaction).get_cog(ContinuationCog.__cog_name__)
            if not isinstance(cog, ContinuationCog):
                raise RuntimeError("the continuation cog is not loaded")
            await cog.press(interaction, self.action, self.token)
        except Exception as error:
            await report_error(interaction, error)


class ContinuationCog(commands.Cog):
    def __init__(self, bot: FabulistBot) -> None:
        self.bot = bot
        self._replies: OrderedDict[str, ReplyState] = OrderedDict()
        # Context menus cannot live in a cog's class body: built here, added to the tree on load.
        self.continue_menu = app_commands.ContextMenu(
            name=CONTINUE_THIS,
            callback=self.continue_this,
            allowed_contexts=app_commands.AppCommandContext(guild=True),
        )

    @property
    def service(self) -> StoryService:
        return self.bot.service

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ContinuationButton)
        self.bot.tree.add_command(self.continue_menu)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ContinuationButton)
        self.bot.tree.remove_command(CONTINUE_THIS, type=discord.AppCommandType.message)

    async def continue_this(
        self, interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        """Continue the message's last words with this channel's story."""
        own = self.bot.user is not None and message.author.id == self.bot.user.id
        prompt = self.service.message_prompt(message_story_text(message.content, own=own))
        options = ContinueOptions(length=None, temperature=None, seed=None)
        await self.serve(interaction, channel_ref(interaction), prompt, options, lead="…")

    @app_commands.command(name="continue")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="A few words from the story to start from",
        length="How many words and punctuation marks to add",
        temperature="0 = always the likeliest next word; higher = more surprising (default 0.8)",
        seed="Random seed, to get the same sampled text again",
    )
    async def continue_(
        self,
        interaction: discord.Interaction[Any],
        prompt: str,
        length: int | None = None,
        temperature: float | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
    ) -> None:
        """Continue this channel's story from your words."""
        options = ContinueOptions(length=length, temperature=temperature, seed=seed)
        await self.serve(interaction, channel_ref(interaction), prompt, options)

    @continue_.autocomplete("prompt")
    async def prompt_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        try:
            # The service picks the word being typed (the last one) out of the whole prompt.
            words = await self.service.complete_word(channel_ref(interaction), current, limit=25)
        except UserError:
            return []
        except Exception:
            log.exception("autocomplete failed in channel %s", interaction.channel_id)
            return []
        return [
            app_commands.Choice(name=name, value=value)
            for name, value in word_choices(current, words)
        ]

    async def press(self, interaction: discord.Interaction[Any], action: str, token: str) -> None:
        state = self._replies.get(token)
        if state is None or state.channel.channel_id != interaction.channel_id:
            await send_ephemeral(interaction, member_lang(interaction).gettext(EXPIRED))
            return
        if action == "reroll":
            options = replace(
                state.options,
                temperature=max(state.options.temperature or 0.0, REROLL_TEMPERATURE),
                seed=None,
            )
            await self.serve(interaction, state.channel, state.prompt, options)
        else:
            # The largest context any model reads; the reply repeats only these few words.
            keep = min(MAX_N_INPUT, self.bot.config.limits.prompt_symbols)
            prompt = " ".join(state.symbols[-keep:])
            await self.serve(interaction, state.channel, prompt, state.options, lead="…")

    async def serve(
        self,
        interaction: discord.Interaction[Any],
        channel: ChannelRef,
        prompt: str,
        options: ContinueOptions,
        *,
        lead: str = "",
    ) -> None:
        """Generate and reply; acknowledge first ("thinking") only if the reply is not ready
        within ACKNOWLEDGE_AFTER_SECONDS. Errors within that time answer privately."""
        # The service applies the per-user cooldown (cooldowns.continue_seconds) given a member.
        request = self.service.continue_story(
            channel, prompt, options, member=member_of(interaction)
        )
        task = asyncio.ensure_future(request)
        done, _ = await asyncio.wait({task}, timeout=ACKNOWLEDGE_AFTER_SECONDS)
        deferred = not done
        if deferred:
            try:
                await interaction.response.defer(thinking=True)
            except BaseException:
                task.cancel()
                raise
        try:
            result = await task
        except Exception:
            if deferred:
                # The "thinking" placeholder is public; drop it so the error can be private.
                with contextlib.suppress(discord.HTTPException):
                    await interaction.delete_original_response()
            raise
        token = self._remember(channel, prompt, options, result)
        lang = server_lang(interaction)  # the reply is public
        chunks = render_reply(result, lead, lang)
        view = discord.ui.View(timeout=None)
        view.add_item(ContinuationButton("reroll", token, lang))
        view.add_item(ContinuationButton("more", token, lang))
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            kwargs: dict[str, Any] = {"allowed_mentions": NO_MENTIONS, "suppress_embeds": True}
            if last:
                kwargs["view"] = view
            if index == 0 and not interaction.response.is_done():
                await interaction.response.send_message(chunk, **kwargs)
            else:
                await interaction.followup.send(chunk, **kwargs)

    def _remember(
        self, channel: ChannelRef, prompt: str, options: ContinueOptions, result: Continuation
    ) -> str:
        token = secrets.token_hex(8)
        symbols = tuple(result.prompt_symbols) + tuple(result.symbols)
        self._replies[token] = ReplyState(channel, prompt, options, symbols)
        while len(self._replies) > REMEMBERED_REPLIES:
            self._replies.popitem(last=False)
        return token


def render_reply(result: Continuation, lead: str = "", lang: Language = ENGLISH) -> list[str]:
    """The reply's messages: usually one; a very long continuation is split at 2,000 chars."""
    text = continuation_text(
        result.text,
        model_version=result.model_version,
        original_share=result.original_share,
        lead=lead,
        unknown_words=result.unknown_words,
        lang=lang,
    )
    return split_message(text)


async def setup(bot: commands.Bot) -> None:
    from bot.discord_adapter.client import FabulistBot

    assert isinstance(bot, FabulistBot)
    await bot.add_cog(ContinuationCog(bot))
