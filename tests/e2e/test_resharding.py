"""Resharding without downtime: from 2 to 3 shard processes against the fake Discord.

The old set (shards 0 and 1 of 2) serves; the new set (0, 1 and 2 of 3) starts next to it, so
the fake (as Discord) sends each guild's interactions to one process of each set. A training
runs in a guild whose shard changes (2 -> 3) while ``python -m bot reshard --shard-count 3``
switches the sets; /continue goes to guilds on every shard before, during and after. Every
interaction gets exactly one initial response (the fake counts them; a second is a 40060
violation), the training ends once in its old process with one model version, and the new set
then serves the moved guild from the shared SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import pytest

from bot.store.sqlite import SqliteStoryStore
from tests.e2e.live_training import CORPORA
from tests.fake_discord import (
    BotProcess,
    FakeDiscord,
    InteractionHandle,
    Perm,
    make_bot_process,
)
from tests.fake_discord.fixtures import StartBot
from tests.fake_discord.models import FakeChannel, FakeGuild, FakeUser

pytestmark = pytest.mark.e2e

CONFIG: dict[str, Any] = {
    # Trainers start at a process's first training: one of the five processes trains.
    "workers": {"count": 1, "warm": False},
    "training": {"units": 32, "embedding_dim": 16, "max_epochs": 200, "max_seconds": 40.0},
    "cooldowns": {"continue_seconds": 0.0},
}
STREAM_SECONDS = 0.3  # one /continue this often, guilds in turn


def _shard(guild: FakeGuild, count: int) -> int:
    return (guild.id >> 22) % count


async def _guilds(fake: FakeDiscord) -> tuple[list[tuple[FakeChannel, FakeUser]], FakeGuild]:
    """Guilds on every shard of 2 and of 3, one of them moving (its shard index changes)."""
    wanted = {(2, s) for s in range(2)} | {(3, s) for s in range(3)}
    places: list[tuple[FakeChannel, FakeUser]] = []
    moving: FakeGuild | None = None
    for number in range(200):  # snowflakes grow with the clock: shards change every ms
        if not wanted and moving is not None:
            break
        guild = fake.add_guild(f"Server {number}")
        covers = {(2, _shard(guild, 2)), (3, _shard(guild, 3))} & wanted
        moves = _shard(guild, 2) != _shard(guild, 3)
        if covers or (moves and moving is None):
            channel = fake.add_channel(guild, "tale")
            user = fake.add_member(guild, f"teller{number}", permissions=Perm.MANAGE_CHANNELS)
            places.append((channel, user))
            wanted -= covers
            if moves and moving is None:
                moving = guild
        await asyncio.sleep(0.002)
    assert not wanted and moving is not None, "no guild spread found"
    return places, moving


class Stream:
    """A steady stream of /continue to the given channels until stopped."""

    def __init__(self, fake: FakeDiscord, places: list[tuple[FakeChannel, FakeUser]]) -> None:
        self.fake = fake
        self.places = places
        self.handles: list[InteractionHandle] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        turn = 0
        while True:
            channel, user = self.places[turn % len(self.places)]
            turn += 1
            self.handles.append(
                await self.fake.send_slash_command(
                    "continue", {"prompt": "the fox", "seed": 3}, user=user, channel=channel
                )
            )
            await asyncio.sleep(STREAM_SECONDS)

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_two_to_three_shards_without_downtime(
    fake_discord: FakeDiscord, start_bot: StartBot, tmp_path: Path
) -> None:
    fake = fake_discord
    world = fake.world
    assert world is not None
    places, moving = await _guilds(fake)
    train_channel, train_user = next(p for p in places if p[0].guild_id == moving.id)
    sync = make_bot_process(fake, tmp_path, {}, args=("sync",), name="sync")
    await sync.start(wait_identify=False)  # global commands, for the servers beyond the dev one
    assert await sync.wait_exit(60.0) == 0, sync.log_tail()

    async def start(shard: int, count: int) -> BotProcess:
        args = ("run", "--shard-ids", str(shard), "--shard-count", str(count))
        return await start_bot(CONFIG, args=args, name=f"s{shard}of{count}")

    old = [await start(shard, 2) for shard in range(2)]  # the first records 2 as active
    stream = Stream(fake, places)
    stream.start()
    new = [await start(shard, 3) for shard in range(3)]
    for process in new:
        await process.wait_for_log("it answers no interactions until", 30.0)

    # Long enough that the training still runs when ``reshard`` (a new process) counts it:
    # 30 KB plateaued ~3 s after its first epoch, as long as the command took to start (CI,
    # 2026-12-07); 150 KB trains about five times as long per epoch.
    book = (CORPORA / "aesops-fables-vernon-jones.txt").read_bytes()[:150_000]
    attachment = fake.add_attachment("aesop.txt", book, channel=train_channel)
    reply = await (
        await fake.send_slash_command(
            "train", {"story": attachment}, user=train_user, channel=train_channel
        )
    ).wait_reply(60.0)
    assert "Training job #" in reply.content, reply.content
    progress = await fake.wait_for_message(
        lambda m: (
            m.kind == "channel" and any(c.startswith("fabulist:cancel:") for c in m.custom_ids())
        ),
        channel=train_channel,
        timeout=60.0,
    )
    await fake.wait_until(
        lambda: progress if re.search(r"epoch [1-9]", progress.content) else None,
        120.0,
        "live training progress",
    )

    reshard = make_bot_process(
        fake, tmp_path, {}, args=("reshard", "--shard-count", "3"), name="reshard"
    )
    await reshard.start(wait_identify=False)
    assert await reshard.wait_exit(60.0) == 0, reshard.log_tail()
    said = reshard.log_text()
    assert "Shard count 3 answers every interaction created from" in said, said
    assert "Open trainings now: 1" in said and "running" in said, said  # it spans the switch

    await fake.wait_until(
        lambda: progress if progress.content.startswith("**Finished**") else None,
        180.0,
        "the training finished in its old process",
    )
    for process in old:
        await process.wait_for_log("it can be stopped", 60.0)
        assert await process.stop() == 0
    await asyncio.sleep(3 * STREAM_SECONDS * len(places))  # the new set alone, every guild
    await stream.stop()

    # Every interaction of the stream answered once: none twice (the fake refuses a second
    # initial response with 40060 and records a violation), none left unanswered.
    await fake.wait_until(
        lambda: all(h.response_type is not None for h in stream.handles) or None,
        60.0,
        "an initial response to every /continue",
    )
    assert [h for h in stream.handles if h.initial_responses != 1] == []
    assert fake.violations == []
    assert len(stream.handles) >= 3 * len(places)

    # The moved guild: one training, one model version, now served by the new set.
    handle = await fake.send_slash_command(
        "continue", {"prompt": "the fox", "seed": 3}, user=train_user, channel=train_channel
    )
    answer = await handle.wait_reply(60.0)
    assert not answer.ephemeral, answer.content
    store = await SqliteStoryStore.open(tmp_path / "fabulist.sqlite3")
    try:
        assert [m.version for m in await store.list_models(train_channel.id)] == [1]
        assert [j.state for j in await store.jobs(train_channel.id)] == ["done"]
    finally:
        await store.close()
    for process in (*old, *new):
        process.assert_log_clean()
