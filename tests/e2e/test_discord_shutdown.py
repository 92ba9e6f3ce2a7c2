"""SIGTERM while a training runs: the bot exits cleanly and its progress message says so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fake_discord import FakeDiscord
from tests.fake_discord.fixtures import StartBot

pytestmark = pytest.mark.e2e

CORPORA = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora"


async def test_sigterm_during_training_marks_the_progress_message(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    world = fake_discord.world
    assert world is not None
    bot = await start_bot({"workers": {"count": 1}})
    book = (CORPORA / "fables-of-aesop-jacobs.txt").read_bytes()[:30_000]
    attachment = fake_discord.add_attachment("aesop.txt", book, channel=world.channel)
    handle = await fake_discord.send_slash_command(
        "train", {"story": attachment}, user=world.admin, channel=world.channel
    )
    await handle.wait_reply(30.0)
    progress = await fake_discord.wait_for_message(
        lambda m: m.kind == "channel" and m.content.startswith("**Training**"),
        channel=world.channel,
        timeout=15.0,
    )
    await fake_discord.wait_until(
        lambda: progress if re.search(r"epoch [1-9]", progress.content) else None,
        120.0,
        "live training progress",
    )
    assert await bot.stop(timeout=30.0) == 0, bot.log_tail()
    assert progress.content.startswith("**Interrupted**"), progress.content
    assert "shut down" in progress.content
    assert not progress.custom_ids(), "no Cancel button on an ended job"
    bot.assert_log_clean()
