"""A fake Discord (gateway + REST + CDN) for end-to-end tests with the real discord.py client.

See README.md in this folder for the harness API.
"""

from __future__ import annotations

from tests.fake_discord.bot_process import BotProcess, bot_config, dump_toml, make_bot_process
from tests.fake_discord.handles import InteractionHandle, RateLimitInjection, Violation
from tests.fake_discord.models import (
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMessage,
    FakeRole,
    FakeUser,
    MessageFlag,
    Perm,
    RecordedRequest,
    RegisteredCommand,
)
from tests.fake_discord.server import FakeDiscord, World

__all__ = [
    "BotProcess",
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeMessage",
    "FakeRole",
    "FakeUser",
    "InteractionHandle",
    "MessageFlag",
    "Perm",
    "RateLimitInjection",
    "RecordedRequest",
    "RegisteredCommand",
    "Violation",
    "World",
    "bot_config",
    "dump_toml",
    "make_bot_process",
]
