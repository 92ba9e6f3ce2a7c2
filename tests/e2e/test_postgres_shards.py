"""Two bot processes, shards 0 and 1 of 2, sharing one PostgreSQL (issue 13).

Each process is ``python -m bot run --shard-ids N --shard-count 2`` against the fake Discord and
one real PostgreSQL server (tests/postgres_server.py). The fake routes a guild's events to the
shard ``(guild_id >> 22) % 2``, as Discord does, so each process serves only its own guilds.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from bot.store.postgres import PostgresStoryStore as PostgresStore
from tests.fake_discord import FakeDiscord, FakeMessage, Perm, make_bot_process
from tests.fake_discord.fixtures import StartBot
from tests.fake_discord.handles import InteractionHandle
from tests.fake_discord.models import FakeChannel, FakeGuild, FakeUser
from tests.service.conftest import STORY, long_story

pytestmark = pytest.mark.e2e

PROMPT = "had a general"
TINY = {"units": 32, "embedding_dim": 16, "max_epochs": 200, "max_seconds": 60.0}


def _shard(guild: FakeGuild) -> int:
    return (guild.id >> 22) % 2


def _guild_on_other_shard(fake: FakeDiscord, than: FakeGuild) -> FakeGuild:
    while True:  # snowflakes grow; the shard bit flips every 2**22 ids at most
        guild = fake.add_guild("Second Server")
        if _shard(guild) != _shard(than):
            return guild


async def _train(
    fake: FakeDiscord, user: FakeUser, channel: FakeChannel, data: bytes
) -> FakeMessage:
    attachment = fake.add_attachment("story.txt", data, channel=channel)
    handle = await fake.send_slash_command(
        "train", {"story": attachment}, user=user, channel=channel
    )
    reply = await handle.wait_reply(60.0)
    assert "Training job #" in reply.content, reply.content
    return await fake.wait_for_message(
        lambda m: (
            m.kind == "channel" and any(c.startswith("fabulist:cancel:") for c in m.custom_ids())
        ),
        channel=channel,
        timeout=30.0,
    )


async def _finished(fake: FakeDiscord, progress: FakeMessage) -> None:
    await fake.wait_until(
        lambda: progress if progress.content.startswith("**Finished**") else None,
        180.0,
        "training finished",
    )


async def _continue(fake: FakeDiscord, user: FakeUser, channel: FakeChannel) -> InteractionHandle:
    return await fake.send_slash_command(
        "continue", {"prompt": PROMPT, "seed": 3}, user=user, channel=channel
    )


async def _continued(fake: FakeDiscord, user: FakeUser, channel: FakeChannel) -> str:
    reply = await (await _continue(fake, user, channel)).wait_reply(60.0)
    assert not reply.ephemeral, reply.content
    return reply.content


async def test_two_shard_processes_share_one_postgresql(
    postgres_url: str, fake_discord: FakeDiscord, start_bot: StartBot, tmp_path: Path
) -> None:
    # (postgres_url first: its database outlives the bot processes at teardown)
    fake = fake_discord
    world = fake.world
    assert world is not None
    second = _guild_on_other_shard(fake, world.guild)
    tale = fake.add_channel(second, "tale")
    carol = fake.add_member(second, "carol", permissions=Perm.MANAGE_CHANNELS)
    # Global commands (python -m bot sync) for the second server; run syncs only the dev guild.
    sync = make_bot_process(fake, tmp_path, {}, args=("sync",), name="sync")
    await sync.start(wait_identify=False)
    assert await sync.wait_exit(60.0) == 0, sync.log_tail()

    config: dict[str, Any] = {
        "storage": {"url": postgres_url},
        # Trainers start at a process's first training: the restarted and the single
        # process, which train nothing more, start none.
        "workers": {"count": 1, "warm": False},
        "training": TINY,
        "cooldowns": {"continue_seconds": 0.0},
        "limits": {"story_bytes": 400_000},
    }

    async def start_shard(shard: int) -> Any:
        return await start_bot(
            config,
            args=("run", "--shard-ids", str(shard), "--shard-count", "2"),
            name=f"shard{shard}",
        )

    first_shard = _shard(world.guild)
    processes = {first_shard: await start_shard(first_shard)}
    processes[1 - first_shard] = await start_shard(1 - first_shard)
    await fake.wait_for_identify(2)
    serving_first, serving_second = processes[first_shard], processes[1 - first_shard]

    # Each process trains its own server's channel; both land in the one database.
    progress_first = await _train(fake, world.admin, world.channel, STORY)
    progress_second = await _train(fake, carol, tale, STORY)
    await _finished(fake, progress_first)
    await _finished(fake, progress_second)
    before_first = await _continued(fake, world.member, world.channel)
    before_second = await _continued(fake, carol, tale)

    # Restart the second server's process: the first keeps serving; after the restart the
    # model the second trained (in PostgreSQL, not in its memory) answers the same.
    await serving_second.stop()
    assert await _continued(fake, world.member, world.channel) == before_first
    await serving_second.start(wait_commands_for=world.guild.id)
    assert await _continued(fake, carol, tale) == before_second

    # SIGKILL the second server's process mid-training.
    progress = await _train(fake, carol, tale, long_story(20_000))
    await fake.wait_until(
        lambda: progress if re.search(r"epoch [1-9]", progress.content) else None,
        120.0,
        "live training progress",
    )
    serving_second.kill()
    await serving_second.wait_exit(30.0)
    # Only that process served shard 1: its guild now gets no answer, while the other
    # process goes on serving its own.
    unanswered = await _continue(fake, carol, tale)
    assert await _continued(fake, world.member, world.channel) == before_first
    await asyncio.sleep(1.0)
    assert unanswered.response_type is None
    store = await PostgresStore.open(postgres_url)
    try:
        assert await store.integrity_check() == "ok"
        orphans = await store.orphaned_jobs()
        assert [j.state for j in orphans] == ["running"]  # the killed one, its lock gone
    finally:
        await store.close()
    # Back: the orphaned job is interrupted, the old model still answers, a new one trains.
    await serving_second.start(wait_commands_for=world.guild.id)
    await fake.wait_until(
        lambda: progress if progress.content.startswith("**Interrupted**") else None,
        60.0,
        "the interrupted message",
    )
    assert await _continued(fake, carol, tale) == before_second
    store = await PostgresStore.open(postgres_url)
    try:
        assert await store.orphaned_jobs() == []
        assert await store.integrity_check() == "ok"
    finally:
        await store.close()

    # The shard count changes (here 2 -> 1): nothing to migrate, one process serves both.
    await serving_first.stop()
    await serving_second.stop()
    single = await start_bot(config, name="single")
    assert await _continued(fake, world.member, world.channel) == before_first
    assert await _continued(fake, carol, tale) == before_second
    assert await single.stop() == 0
    for process in (serving_first, serving_second, single):
        process.assert_log_clean()
