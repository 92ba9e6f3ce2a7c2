"""The bot as discord.py's AutoShardedBot when the config names shards."""

from __future__ import annotations

import pytest

from tests.fake_discord import FakeDiscord
from tests.fake_discord.fixtures import StartBot

pytestmark = pytest.mark.e2e


async def test_shard_count_runs_an_auto_sharded_bot(
    fake_discord: FakeDiscord, start_bot: StartBot
) -> None:
    world = fake_discord.world
    assert world is not None
    # Nothing trains here: no trainer to start (workers.warm).
    bot = await start_bot({"discord": {"shard_count": 2}, "workers": {"count": 1, "warm": False}})
    # One IDENTIFY per shard (the fake checks each names a valid [shard_id, 2]).
    await fake_discord.wait_for_identify(2)
    handle = await fake_discord.send_slash_command(
        "continue", {"prompt": "had a general"}, user=world.member, channel=world.channel
    )
    reply = await handle.wait_reply(15.0)
    assert reply.ephemeral and "/train" in reply.content
    assert await bot.stop() == 0
    bot.assert_log_clean()
