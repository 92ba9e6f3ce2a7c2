"""Part 3 of bench_storage.py: 2 bot processes (shards 0, 1 of 2) vs 1, one PostgreSQL.

The real bot processes (``python -m bot run``) against the fake Discord (tests/fake_discord) in
this process; 200 channels in 20 servers, a model per channel seeded in PostgreSQL, each process's
cache large enough for its channels (a server's channels live on one shard). After one warm-up
/continue per channel, ``REQUESTS`` /continue interactions are sent 16 at a time; requests/s and
the p99 of the time to the reply are measured. The fake Discord and this driver share the same
cores as the bots, so the figure is a lower bound of what separate machines would give.

Each variant runs with OpenBLAS's default threads (one per core) and with one BLAS thread per
bot process (``OPENBLAS_NUM_THREADS=1``, set here for the bench only; pinning inside generation
is the model's business). The CPU seconds of every process (bots, this one, PostgreSQL's) over
the measured window say where the time went: a bot that serves more requests per CPU-second
and a machine whose other load leaves it less CPU look alike in requests/s alone.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
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


# One BLAS thread per bot process (OpenBLAS, MKL, OpenMP): generation is matrix-vector products
# of a few hundred rows, where BLAS threads only spin against the other process's.
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def server_cpu_seconds(server: PostgresServer) -> dict[int, float]:
    """CPU seconds of the PostgreSQL server's processes (the postmaster and its children)."""
    assert server.directory is not None
    postmaster = int((server.directory / "data" / "postmaster.pid").read_text().split()[0])
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        pid = int(stat.parent.name)
        if pid == postmaster or int(fields[1]) == postmaster:
            found[pid] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


@dataclass
class Figures:
    rate: float  # requests/s
    p99: float  # seconds
    bot_cpu_ms: float  # CPU ms per request, all bot processes together
    driver_cpu_ms: float  # CPU ms per request of this process (the fake Discord and the driver)
    server_cpu_ms: float  # CPU ms per request of PostgreSQL's processes
    load: float  # 1-minute load average at the end

    @property
    def cpu_bound(self) -> float:
        """Requests/s that 2 whole cores would allow at this CPU cost per request."""
        return 2000 / (self.bot_cpu_ms + self.driver_cpu_ms + self.server_cpu_ms)


async def _run_processes(
    server: PostgresServer,
    fake: FakeDiscord,
    tmp: Path,
    url: str,
    count: int,
    targets: list[tuple[FakeChannel, FakeUser]],
    env: dict[str, str],
    requests: int,
) -> Figures:
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
                fake, tmp, config, args=tuple(args), env=env, name=f"bench-{count}-{shard}"
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
        bots = sum(cpu_seconds(p.pid) for p in processes)
        postgres = server_cpu_seconds(server)
        driver = time.process_time()
        start = time.perf_counter()
        times = await asyncio.gather(*(limited(i) for i in range(requests)))
        elapsed = time.perf_counter() - start
        bots = sum(cpu_seconds(p.pid) for p in processes) - bots
        driver = time.process_time() - driver
        postgres_after = server_cpu_seconds(server)
        database = sum(t - postgres.get(pid, 0.0) for pid, t in postgres_after.items())
        return Figures(
            requests / elapsed,
            pct(list(times), 0.99),
            bots / requests * 1000,
            driver / requests * 1000,
            database / requests * 1000,
            os.getloadavg()[0],
        )
    finally:
        for process in processes:
            await process.stop()


async def two_vs_one(
    server: PostgresServer, *, rounds: int = 1, requests: int = REQUESTS
) -> list[str]:
    """1 vs 2 bot processes, with the default BLAS threads and with one BLAS thread each."""
    url = server.create_database(template=None)
    fake = FakeDiscord()
    fake.default_world()
    await fake.start()
    try:
        targets: list[tuple[FakeChannel, FakeUser]] = []
        # Half the servers on each shard ((guild_id >> 22) % 2, the id's millisecond): servers
        # made in one loop share a millisecond, and then one process would serve them all.
        per_shard = [0, 0]
        g = 0
        while g < GUILDS:
            guild = fake.add_guild(f"Bench {g}")
            shard = guild.id >> 22 & 1
            if per_shard[shard] >= GUILDS // 2:
                await asyncio.sleep(0.001)  # left without channels: try the next ms
                continue
            per_shard[shard] += 1
            reader = fake.add_member(guild, f"reader{g}")
            for c in range(CHANNELS_PER_GUILD):
                targets.append((fake.add_channel(guild, f"story{c}"), reader))
            g += 1
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
            runs: dict[tuple[str, int], list[Figures]] = {}
            for _ in range(rounds):  # interleaved: each round measures every variant once
                for blas, env in (("BLAS default", {}), ("1 BLAS thread", ONE_BLAS_THREAD)):
                    for count in (1, 2):
                        runs.setdefault((blas, count), []).append(
                            await _run_processes(server, fake, Path(tmp), url, count, targets, env,
                                                 requests)
                        )  # fmt: skip
    finally:
        await fake.stop()
    lines = [
        f"{GUILDS} servers x {CHANNELS_PER_GUILD} channels ({shards} servers on shard 1), "
        f"{UNITS}-unit models, {requests} /continue, {IN_FLIGHT} in flight, "
        f"median of {rounds} interleaved round(s); CPU ms per request: the bot processes "
        "together, this process (the fake Discord and the load driver), PostgreSQL; 'CPU bound' "
        "= 2 cores / their sum: the most this machine could serve if all of it were ours",
        f"{'variant':<28}{'req/s':>8}{'p99 ms':>9}{'bot CPU':>9}{'fake CPU':>10}{'PG CPU':>8}"
        f"{'CPU bound':>10}{'load':>6}",
    ]
    rates: dict[tuple[str, int], float] = {}
    for (blas, count), figures in runs.items():
        rates[blas, count] = statistics.median(f.rate for f in figures)
        lines.append(
            f"{blas + f', {count} process' + ('es' if count > 1 else ''):<28}"
            f"{rates[blas, count]:>8.1f}"
            f"{statistics.median(f.p99 for f in figures) * 1000:>9.0f}"
            f"{statistics.median(f.bot_cpu_ms for f in figures):>9.1f}"
            f"{statistics.median(f.driver_cpu_ms for f in figures):>10.1f}"
            f"{statistics.median(f.server_cpu_ms for f in figures):>8.1f}"
            f"{statistics.median(f.cpu_bound for f in figures):>10.0f}"
            f"{max(f.load for f in figures):>6.1f}"
        )
    for blas in ("BLAS default", "1 BLAS thread"):
        lines.append(
            f"{blas}: throughput 2 processes / 1 = {rates[blas, 2] / rates[blas, 1]:.2f} "
            "(target >= 1.6)"
        )
    return lines
