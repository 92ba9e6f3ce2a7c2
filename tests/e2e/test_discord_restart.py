"""SIGKILL while a training runs: after a restart the orphaned progress message says so."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.live_training import CANCEL, train_until_live
from tests.fake_discord import BotProcess, FakeDiscord, FakeMessage
from tests.fake_discord.fixtures import StartBot

pytestmark = pytest.mark.e2e

EDIT_ROUTE = "PATCH /channels/{channel_id}/messages/{message_id}"


async def _training_killed(
    fake: FakeDiscord, start_bot: StartBot
) -> tuple[BotProcess, FakeMessage]:
    """/train a book slice, wait for live progress, then SIGKILL the bot."""
    bot, reply, progress = await train_until_live(fake, start_bot)
    # The reply comes after the progress message was posted and recorded.
    assert "Training job #" in reply.content
    bot.kill()
    await bot.wait_exit(30.0)
    assert progress.content.startswith("**Training**"), progress.content
    assert progress.custom_ids()
    return bot, progress


def _interrupted(message: FakeMessage) -> FakeMessage | None:
    return message if message.content.startswith("**Interrupted**") else None


async def _recorded_messages(db: Path | None, expected: list[int]) -> list[int]:
    """The progress messages the database holds, polled until they are ``expected`` (10 s)."""
    assert db is not None
    rows: list[int] = []
    for _ in range(100):
        with sqlite3.connect(db) as connection:
            rows = [
                row[0]
                for row in connection.execute(
                    "SELECT progress_message_id FROM jobs WHERE progress_message_id IS NOT NULL"
                )
            ]
        if rows == expected:
            break
        await asyncio.sleep(0.1)
    return rows


async def test_restart_updates_the_progress_message_of_a_killed_training(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    world = fake_discord.world
    assert world is not None
    bot, progress = await _training_killed(fake_discord, start_bot)
    assert await _recorded_messages(bot.db_path, [progress.id]) == [progress.id]
    await bot.start(wait_commands_for=world.guild.id)
    await fake_discord.wait_until(lambda: _interrupted(progress), 30.0, "the interrupted message")
    assert "aesop.txt" in progress.content
    assert "restarted" in progress.content and "again" in progress.content, progress.content
    assert not progress.custom_ids(), "no Cancel button on an ended job"
    assert not progress.pings_anyone()
    # Once: the database forgets the message, so a later start leaves it alone.
    assert await _recorded_messages(bot.db_path, []) == []
    bot.assert_log_clean()


async def test_cancel_on_a_message_left_by_a_killed_bot_says_it_ended(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    world = fake_discord.world
    assert world is not None
    bot, progress = await _training_killed(fake_discord, start_bot)
    # Hold back the restarted bot's own update of the message, so the button is still there.
    limit = fake_discord.inject_rate_limit(EDIT_ROUTE, count=1, retry_after=4.0)
    await bot.start(wait_commands_for=world.guild.id)
    await fake_discord.wait_until(lambda: limit.served, 30.0, "the held-back update")
    cancel = next(c for c in progress.custom_ids() if c.startswith(CANCEL))
    click = await fake_discord.send_component_click(progress, cancel, world.admin)
    reply = await click.wait_reply(15.0)
    assert reply.ephemeral and "already ended (interrupted)" in reply.content, reply.content
    await fake_discord.wait_until(lambda: _interrupted(progress), 30.0, "the interrupted message")
    assert "restarted" in progress.content
    assert not progress.custom_ids()
    bot.assert_log_clean()
