"""Discord adapter: slash commands over ``StoryService`` (discord.py 2.x).

``runner.run_bot`` / ``runner.sync_commands`` are the entry points used by ``python -m bot run``
and ``python -m bot sync``; ``client.FabulistBot`` is the bot; ``cogs/`` holds one extension per
feature; ``rendering`` turns service results into text and embeds.
"""

from __future__ import annotations

from bot.discord_adapter.client import FabulistBot, ShardedFabulistBot, create_bot
from bot.discord_adapter.runner import run_bot, sync_commands

__all__ = ["FabulistBot", "ShardedFabulistBot", "create_bot", "run_bot", "sync_commands"]
