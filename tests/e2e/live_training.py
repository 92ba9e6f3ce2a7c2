"""A training that is live in the bot, for the SIGKILL (restart) and SIGTERM (shutdown) tests."""

from __future__ import annotations

import re
from pathlib import Path

from tests.fake_discord import BotProcess, FakeDiscord, FakeMessage
from tests.fake_discord.fixtures import StartBot

CORPORA = Path(__file__).resolve().parents[2] / "data" / "corpora"
CANCEL = "fabulist:cancel:"


async def train_until_live(
    fake: FakeDiscord, start_bot: StartBot
) -> tuple[BotProcess, FakeMessage, FakeMessage]:
    """Start the bot (one worker, started by this first training: ``workers.warm = false``,
    which a restarted bot keeps, so it starts none), /train a book slice and wait until an
    epoch is shown.

    Returns the bot, the /train reply and the channel's progress message (the one with Cancel).
    """
    world = fake.world
    assert world is not None
    bot = await start_bot({"workers": {"count": 1, "warm": False}})
    book = (CORPORA / "fables-of-aesop-jacobs.txt").read_bytes()[:30_000]
    attachment = fake.add_attachment("aesop.txt", book, channel=world.channel)
    handle = await fake.send_slash_command(
        "train", {"story": attachment}, user=world.admin, channel=world.channel
    )
    reply = await handle.wait_reply(30.0)
    progress = await fake.wait_for_message(
        lambda m: m.kind == "channel" and any(c.startswith(CANCEL) for c in m.custom_ids()),
        channel=world.channel,
        timeout=15.0,
    )
    await fake.wait_until(
        lambda: progress if re.search(r"epoch [1-9]", progress.content) else None,
        120.0,
        "live training progress",
    )
    return bot, reply, progress
