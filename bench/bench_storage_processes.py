"""Part 3 of bench_storage.py: 2 bot processes (shards 0, 1 of 2) vs 1, one PostgreSQL.

The real bot processes (``python -m bot run``) against the fake Discord (tests/fake_discord) in
this process; 200 channels in 20 servers, a model per channel seeded in PostgreSQL, each process's
cache large enough for its channels (a server's channels live on one shard). After one warm-up
/continue per channel, ``REQUESTS`` /continue interactions are sent 16 at a time; requests/s and
the p99 of the time to the reply are measured. The fake Discord and this driver share the same
cores as the bots, so the figure is a lower bound of what separate machines would give.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._measure import pct
from bot.store.postgres import PostgresStoryStore as PostgresStore
from tests.fake_discord import FakeDiscord, make_bot_process
from tests.fake_discord.bot_process import BotProcess
from tests.fake_discord.models import FakeChannel, FakeUser
from tests.postgres_server import PostgresServer
from tests.support import STORY, seed_model

GUILDS = 20
CHANNELS_PER_GUILD = 10
REQUESTS = 600
IN_FLIGHT = 16
UNITS = 256
PROMPTS = ["had a general", "the mice", "the cat", "mouse", "a young mouse got up"]


async def _run_processes(
    fake: FakeDiscord, tmp: Path, url: str, count: int, targets: list[tuple[FakeChannel, FakeUser]]
) -> tuple[float, float]:
    config: dict[str, Any] = {
        "storage": {"url": url},
        "workers": {"count": 1},
        "cache": {"models": 256, "megabytes": 4096},
        "cooldowns": {"continue_seconds": 0.0},
    }
    processes: list[BotProcess] = []
    try:
        for shard in range(count):
            args = ["run"]
            if count > 1:
                args += ["--shard-ids", str(shard), "--shard-count", str(count)]
            process = make_bot_process(
                fake, tmp, config, args=tuple(args), name=f"bench-{count}-{shard}"
            )
            await process.start(wait_identify=True, timeout=120.0)
            processes.append(process)
        await asyncio.sleep(2.0)  # GUILD_CREATEs handled

        async def one(i: int) -> float:
            channel, user = targets[i % len(targets)]
            start = time.perf_counter()
            handle = await fake.send_slash_command(
                "continue", {"prompt": PROMPTS[i % len(PROMPTS)]}, user=user, channel=channel
            )
            reply = await handle.wait_reply(120.0)
            assert not reply.ephemeral, reply.content
            return time.perf_counter() - start

        semaphore = asyncio.Semaphore(IN_FLIGHT)

        async def limited(i: int) -> float:
            async with semaphore:
                return await one(i)

        await asyncio.gather(*(limited(i) for i in range(len(targets))))  # warm every cache
        start = time.perf_counter()
        times = await asyncio.gather(*(limited(i) for i in range(REQUESTS)))
        elapsed = time.perf_counter() - start
        return REQUESTS / elapsed, pct(list(times), 0.99)
    finally:
        for process in processes:
            await process.stop()


async def two_vs_one(server: PostgresServer) -> list[str]:
    url = server.create_database(template=None)
    fake = FakeDiscord()
    fake.default_world()
    await fake.start()
    try:
        targets: list[tuple[FakeChannel, FakeUser]] = []
        for g in range(GUILDS):
            guild = fake.add_guild(f"Bench {g}")
            reader = fake.add_member(guild, f"reader{g}")
            for c in range(CHANNELS_PER_GUILD):
                targets.append((fake.add_channel(guild, f"story{c}"), reader))
        shards = sum((ch.guild_id or 0) >> 22 & 1 for ch, _ in targets) // CHANNELS_PER_GUILD
        text = STORY.decode()
        store = await PostgresStore.open(url)
        try:
            for channel, _ in targets:
                await seed_model(store, channel.id, text, guild_id=channel.guild_id, units=UNITS)
        finally:
            await store.close()
        with tempfile.TemporaryDirectory() as tmp:
            sync = make_bot_process(fake, Path(tmp), {}, args=("sync",), name="sync")
            await sync.start(wait_identify=False)
            assert await sync.wait_exit(120.0) == 0, sync.log_tail()
            one = await _run_processes(fake, Path(tmp), url, 1, targets)
            two = await _run_processes(fake, Path(tmp), url, 2, targets)
    finally:
        await fake.stop()
    return [
        f"{GUILDS} servers x {CHANNELS_PER_GUILD} channels ({shards} servers on shard 1), "
        f"{UNITS}-unit models, {REQUESTS} /continue, {IN_FLIGHT} in flight",
        f"1 process : {one[0]:6.1f} req/s  p99 {one[1] * 1000:7.1f} ms",
        f"2 processes: {two[0]:6.1f} req/s  p99 {two[1] * 1000:7.1f} ms  "
        f"throughput ratio 2/1 = {two[0] / one[0]:.2f} (target >= 1.6)",
    ]
