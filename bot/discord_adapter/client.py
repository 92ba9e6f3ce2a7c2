"""The Discord client: a ``commands.Bot`` wired to one ``StoryService``.

Start-up follows discord.py's "advanced startup" pattern: everything asynchronous happens in
``setup_hook`` (open the service, load the cogs, sync the commands to the dev guild), which runs
once after login and before the gateway connects; ``on_ready`` can fire again after every
reconnect, so it only logs. Global command sync is a separate deliberate step
(``python -m bot sync``, see ``runner.sync_commands``) because Discord rate-limits it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_adapter.i18n import Catalogue, CatalogueTranslator
from bot.discord_adapter.replies import NO_MENTIONS, report_error

if TYPE_CHECKING:
    from bot.config import Config
    from bot.core.service import StoryService

log = logging.getLogger(__name__)

COG_EXTENSIONS = (
    "bot.discord_adapter.cogs.training",
    "bot.discord_adapter.cogs.continuation",
    "bot.discord_adapter.cogs.story",
    "bot.discord_adapter.cogs.privacy",
    "bot.discord_adapter.cogs.filters",
)


def bot_intents(message_content: bool = False) -> discord.Intents:
    """No privileged intents by default: slash commands carry everything the cogs need. Message
    Content (``discord.message_content``) only lets /train source:history read messages' text;
    the history is read over REST, so no message events are needed."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.message_content = message_content
    return intents


class FabulistTree(app_commands.CommandTree[Any]):
    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        # False: discord.py drops the command or autocomplete unanswered (the other set answers).
        client = interaction.client
        return not isinstance(client, FabulistBot) or await client.answers(interaction)

    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        await report_error(interaction, error)


class FabulistBot(commands.Bot):
    """The bot. ``service`` is None only for ``sync_commands``, which never connects."""

    def __init__(
        self,
        config: Config,
        service: StoryService | None,
        *,
        sync_dev_guild: bool = True,
        shutdown: Callable[[], Awaitable[None]] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=bot_intents(config.discord.message_content),
            allowed_mentions=NO_MENTIONS,
            tree_cls=FabulistTree,
            **options,
        )
        self.config = config
        self._service = service
        # Closes the service (and what open_app opened for it: the trainers) before the
        # connection closes; default: the service alone.
        self._shutdown = shutdown if shutdown is not None else getattr(service, "close", None)
        self._sync_dev_guild = sync_dev_guild
        self._service_started = False
        self._service_closed = False
        self._catalogue: Catalogue | None = None

    @property
    def catalogue(self) -> Catalogue:
        """The adapter's languages, loaded in ``setup_hook``."""
        if self._catalogue is None:
            raise RuntimeError("the catalogue is loaded in setup_hook")
        return self._catalogue

    @property
    def has_service(self) -> bool:
        return self._service is not None

    @property
    def service(self) -> StoryService:
        if self._service is None:
            raise RuntimeError("this bot was built without a story service (sync only)")
        return self._service

    async def answers(self, interaction: discord.Interaction[Any]) -> bool:
        """Whether this process answers ``interaction``: while two sets of shard processes run
        side by side (resharding), each interaction reaches one of each, and only the active
        shard count's answers (``bot/core/shard_plan.py``). Commands, autocomplete and the
        buttons any process can answer ask this; a view only this process holds (the /forget
        confirmation) answers here regardless, since no other process knows it."""
        if self._service is None:
            return True
        if await self._service.answers_interaction(interaction.created_at.timestamp()):
            return True
        log.debug("interaction %s is the other shard set's to answer", interaction.id)
        return False

    async def setup_hook(self) -> None:
        await self.load_catalogue()
        if self._service is not None:
            await self._service.start(shard_count=self.config.discord.shard_count)
            self._service_started = True
        for extension in COG_EXTENSIONS:
            await self.load_extension(extension)
        guild_id = self.config.discord.dev_guild_id
        if self._sync_dev_guild and guild_id is not None:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to dev guild %s", len(synced), guild_id)

    async def load_catalogue(self) -> None:
        """Read the languages (before any command is synced: the translator names them)."""
        if self._catalogue is None:
            self._catalogue = await asyncio.to_thread(Catalogue.load)
            await self.tree.set_translator(CatalogueTranslator(self._catalogue))

    async def on_ready(self) -> None:
        user = self.user
        log.info(
            "connected as %s (id %s) to %d guilds",
            user,
            user.id if user else "?",
            len(self.guilds),
        )

    async def close(self) -> None:
        # Order matters: closing the service settles open jobs, the training cog's unload then
        # lets their progress messages say so, and only then does the connection close.
        if self._shutdown is not None and self._service_started and not self._service_closed:
            self._service_closed = True
            try:
                await self._shutdown()
            except Exception:
                log.exception("closing the story service failed")
        for extension in reversed(COG_EXTENSIONS):
            if extension in self.extensions:
                await self.unload_extension(extension)
        await super().close()


class ShardedFabulistBot(FabulistBot, commands.AutoShardedBot):
    """The same bot over discord.py's ``AutoShardedBot`` (one process, several shards)."""


def create_bot(
    config: Config,
    service: StoryService | None,
    *,
    sync_dev_guild: bool = True,
    shutdown: Callable[[], Awaitable[None]] | None = None,
) -> FabulistBot:
    """A ``ShardedFabulistBot`` when config names shards, else a plain ``FabulistBot``."""
    settings = config.discord
    if settings.shard_count is not None or settings.shard_ids is not None:
        shard_ids = list(settings.shard_ids) if settings.shard_ids is not None else None
        return ShardedFabulistBot(
            config,
            service,
            sync_dev_guild=sync_dev_guild,
            shutdown=shutdown,
            shard_count=settings.shard_count,
            shard_ids=shard_ids,
        )
    return FabulistBot(config, service, sync_dev_guild=sync_dev_guild, shutdown=shutdown)
