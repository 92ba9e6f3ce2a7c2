"""SIGTERM while a training runs: the bot exits cleanly and its progress message says so."""

from __future__ import annotations

import pytest

from tests.e2e.live_training import train_until_live
from tests.fake_discord import FakeDiscord
from tests.fake_discord.fixtures import StartBot

pytestmark = pytest.mark.e2e


async def test_sigterm_during_training_marks_the_progress_message(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    bot, _, progress = await train_until_live(fake_discord, start_bot)
    assert await bot.stop(timeout=30.0) == 0, bot.log_tail()
    assert progress.content.startswith("**Interrupted**"), progress.content
    assert "shut down" in progress.content
    assert not progress.custom_ids(), "no Cancel button on an ended job"
    bot.assert_log_clean()
