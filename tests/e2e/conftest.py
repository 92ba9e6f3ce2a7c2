"""End-to-end fixtures: the fake Discord and the bot process (tests/fake_discord/README.md)."""

from __future__ import annotations

from tests.fake_discord.fixtures import bot, bot_config, fake_discord, start_bot

__all__ = ["bot", "bot_config", "fake_discord", "start_bot"]
