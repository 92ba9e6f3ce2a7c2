"""Part 3 of bench_storage.py: 2 bot processes (shards 0, 1 of 2) vs 1, one PostgreSQL; and, run
as a script, N processes each held to a CPU quota (issue 26):

    .venv/bin/python -m bench.bench_storage_processes --cpu-quota 0.4,0.3 --processes 1,2,3

Each bot process runs in a cgroup of its own limited to ``--cpu-quota`` of a CPU
(``bench/cpu_quota.py``: cgroup v1 or v2; root needed), with a high weight so that it gets that
much however busy the machine is; the load driver, the fake Discord and PostgreSQL run outside
the quota, in a group of high weight without a limit. Servers are spread evenly over the shards of
every count measured. The lines ``scaling N vs 1 at Q CPU each`` are the ratios of requests/s in
the same run; PostgreSQL's own CPU and its lock waits (``pg_stat_activity``/``pg_locks``, sampled
every 0.25 s) say whether the shared database is a bottleneck.

The real bot processes (``python -m bot run``) against the fake Discord (tests/fake_discord) in
this process; 200 channels in 20 servers, a model per channel seeded in PostgreSQL, each process's
cache large enough for its channels (a server's channels live on one shard). After one warm-up
/continue per channel, ``REQUESTS`` /continue interactions are sent 16 at a time; requests/s and
the p99 of the time to the reply are measured. The fake Discord and this driver share the same
cores as the bots, so the figure is a lower bound of what separate machines would give.
In the quota runs the 16 in flight are per process (each shard's servers have their own): with
one window for all, requests waiting on a throttled process held most of the window while the
other processes idled, and the ratios swung with the throttling's timing. Each quota
measurement gets its own fake Discord and database (measured one after the other against the
same ones, the later measurements cost the bots more CPU per reply), and its bots start inside
their groups, as a container starts inside its limit. The ``deferred`` column is the share of
replies that went out after a "thinking" acknowledgement.

Each variant runs with OpenBLAS's default threads (one per core) and with one BLAS thread per
bot process (``OPENBLAS_NUM_THREADS=1``, set here for the bench only; pinning inside generation
is the model's business). The CPU seconds of every process (bots, this one, PostgreSQL's) over
the measured window say where the time went: a bot that serves more requests per CPU-second
and a machine whose other load leaves it less CPU look alike in requests/s alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._measure import pct
from bench.cpu_quota import CpuGroup, QuotaUnavailable, cgroup_version, descendants
from bot.core.shard_plan import reshard
from bot.store.postgres import PostgresStoryStore as PostgresStore
from tests.fake_discord import FakeDiscord, make_bot_process
from tests.fake_discord.bot_process import BotProcess
from tests.fake_discord.models import FakeChannel, FakeGuild, FakeUser
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
# Issue 26's acceptance: (CPU quota per process, processes) -> requests/s over 1 process's.
TARGETS = {(0.4, 2): 1.8, (0.3, 3): 2.6}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each of ``pids`` and their descendants (a bot and its training workers)."""
    found = {}
    for root in pids:
        for pid in (root, *descendants(root)):
            with contextlib.suppress(OSError):  # gone meanwhile
                found[pid] = cpu_seconds(pid)
    return found


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
    throttled: float = 0.0  # share of the bots' scheduler periods that hit their CPU quota
    lock_waits: float = 0.0  # share of PostgreSQL samples with a backend waiting on a lock
    active_backends: float = 0.0  # mean PostgreSQL backends running a query, per sample
    deferred: float = 0.0  # share of replies sent after a deferred ("thinking") response

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
    quota: float | None = None,
    generation_threads: int | None = None,
    window_per_process: bool = False,
) -> Figures:
    workers: dict[str, Any] = {"count": 1}
    if generation_threads is not None:
        workers["generation_threads"] = generation_threads
    config: dict[str, Any] = {
        "storage": {"url": url},
        "workers": workers,
        "cache": {"models": 256, "megabytes": 4096},
        "cooldowns": {"continue_seconds": 0.0},
    }
    processes: list[BotProcess] = []
    groups = contextlib.ExitStack()
    quota_groups: list[CpuGroup] = []
    try:
        for shard in range(count):
            args = ["run"]
            if count > 1:
                args += ["--shard-ids", str(shard), "--shard-count", str(count)]
            process = make_bot_process(
                fake, tmp, config, args=tuple(args), env=env, name=f"bench-{count}-{shard}"
            )
            if quota is not None:
                group = groups.enter_context(CpuGroup(f"fabulist-bot-{shard}", quota, high=True))
                # Started inside its group, as a container starts with its limit: the bot reads
                # its CPU quota at start (bot/cpu_share.py), and its workers inherit the group.
                process.argv = group.command(process.argv)
                quota_groups.append(group)
            await process.start(wait_identify=True, timeout=300.0)
            processes.append(process)
        for process in processes:
            # A training worker's start-up (importing TensorFlow: seconds of CPU) runs inside the
            # process's quota; measured alongside the replies it took up to a quarter of it.
            await process.wait_for_log("training worker ready", timeout=300.0)
        await asyncio.sleep(2.0)  # GUILD_CREATEs handled

        deferred: list[bool] = []

        async def one(i: int) -> float:
            channel, user = targets[i % len(targets)]
            start = time.perf_counter()
            handle = await fake.send_slash_command(
                "continue", {"prompt": PROMPTS[i % len(PROMPTS)]}, user=user, channel=channel
            )
            reply = await handle.wait_reply(120.0)
            assert not reply.ephemeral, reply.content
            deferred.append(handle.deferred)
            return time.perf_counter() - start

        # One window of IN_FLIGHT for all, or one per process (each process's servers: members
        # of one shard's servers do not wait for another shard's replies).
        windows = [asyncio.Semaphore(IN_FLIGHT) for _ in range(count)]

        def window(i: int) -> asyncio.Semaphore:
            guild_id = targets[i % len(targets)][0].guild_id or 0
            return windows[(guild_id >> 22) % count if window_per_process else 0]

        async def limited(i: int) -> float:
            async with window(i):
                return await one(i)

        await asyncio.gather(*(limited(i) for i in range(len(targets))))  # warm every cache
        bots = tree_cpu_seconds([p.pid for p in processes])
        postgres = server_cpu_seconds(server)
        throttled = [g.throttling() for g in quota_groups]
        driver = time.process_time()
        start = time.perf_counter()
        deferred.clear()
        async with DatabaseSampler(url) as sampler:
            times = await asyncio.gather(*(limited(i) for i in range(requests)))
        elapsed = time.perf_counter() - start
        after = [(g.throttling(), t) for g, t in zip(quota_groups, throttled, strict=True)]
        periods = sum(now.periods - before.periods for now, before in after)
        hit = sum(now.throttled - before.throttled for now, before in after)
        bots_after = tree_cpu_seconds([p.pid for p in processes])
        bot_seconds = sum(t - bots.get(pid, 0.0) for pid, t in bots_after.items())
        driver = time.process_time() - driver
        postgres_after = server_cpu_seconds(server)
        database = sum(t - postgres.get(pid, 0.0) for pid, t in postgres_after.items())
        return Figures(
            requests / elapsed,
            pct(list(times), 0.99),
            bot_seconds / requests * 1000,
            driver / requests * 1000,
            database / requests * 1000,
            os.getloadavg()[0],
            hit / periods if periods else 0.0,
            sampler.lock_wait_share(),
            sampler.mean_active(),
            sum(deferred) / max(1, len(deferred)),
        )
    finally:
        for process in processes:
            await process.stop()
        groups.close()


class DatabaseSampler:
    """Samples PostgreSQL's activity every 0.25 s while in use: backends running a query, and
    whether one waits on a lock (``pg_stat_activity`` / ``pg_locks``)."""

    QUERY = (
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        "AND pid <> pg_backend_pid()), (SELECT count(*) FROM pg_locks WHERE NOT granted)"
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[int, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DatabaseSampler:
        import asyncpg

        self._connection = await asyncpg.connect(self.url)
        self._task = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        while True:
            row = await self._connection.fetchrow(self.QUERY)
            self.samples.append((int(row[0]), int(row[1])))
            await asyncio.sleep(0.25)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._connection.close()

    def lock_wait_share(self) -> float:
        return sum(1 for _, waiting in self.samples if waiting) / max(1, len(self.samples))

    def mean_active(self) -> float:
        return sum(active for active, _ in self.samples) / max(1, len(self.samples))


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
        await _seed(url, targets)
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


async def _spread_guilds(fake: FakeDiscord, guilds: int, classes: int) -> list[FakeGuild]:
    """``guilds`` servers, as many in each class of ``(id >> 22) % classes`` (the id's
    millisecond): every shard count dividing ``classes`` then gets the same number of servers. A
    server made in a full class is left without channels."""
    per_class = [0] * classes
    made: list[FakeGuild] = []
    while len(made) < guilds:
        guild = fake.add_guild(f"Bench {len(made)}")
        guild_class = (guild.id >> 22) % classes
        if per_class[guild_class] >= guilds // classes:
            await asyncio.sleep(0.001)  # try the next millisecond
            continue
        per_class[guild_class] += 1
        made.append(guild)
    return made


async def quota_scaling(
    server: PostgresServer,
    quotas: list[float],
    counts: list[int],
    *,
    requests: int,
    rounds: int,
    generation_threads: int | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Requests/s of each count of bot processes, each held to each of ``quotas`` of a CPU (see
    the module doc)."""
    version = cgroup_version()  # QuotaUnavailable says why not, before anything starts
    classes = math.lcm(*counts)
    guilds = classes * max(1, math.ceil(GUILDS / classes))
    runs: dict[tuple[float, int], list[Figures]] = {}
    channels = 0
    with (
        tempfile.TemporaryDirectory() as tmp,
        CpuGroup("fabulist-rest", None, high=True) as rest,
    ):
        # The driver, the fake Discord and PostgreSQL: outside the quota, ahead of other work.
        rest.add(os.getpid())
        for pid in server_cpu_seconds(server):
            rest.add(pid)
        for _ in range(rounds):  # interleaved: each round measures every variant once
            for quota in quotas:
                for count in counts:
                    # A fresh fake Discord and database for every measurement: measured one
                    # after the other against the same ones, the bots' CPU per reply rose from
                    # the first measurement to the later ones (9.4 -> 12-16 ms, the same
                    # variant five times), with a fresh database each time as well.
                    fake = FakeDiscord()
                    fake.default_world()
                    await fake.start()
                    try:
                        url, targets = await _world(server, fake, Path(tmp), guilds, classes)
                        if count > 1:
                            await _make_active(url, count)
                        runs.setdefault((quota, count), []).append(
                            await _run_processes(server, fake, Path(tmp), url, count, targets,
                                                 ONE_BLAS_THREAD, requests, quota,
                                                 generation_threads, window_per_process=True)
                        )  # fmt: skip
                        channels = len(targets)
                    finally:
                        await fake.stop()
    lines = [
        f"cgroup {version}: each bot process held to a CPU quota (high weight); "
        f"{channels} channels in {guilds} servers (as many on each shard), {UNITS}-unit "
        f"models, {requests} /continue, {IN_FLIGHT} in flight per process, one BLAS thread, "
        f"median of {rounds} round(s); load driver, fake Discord and PostgreSQL outside the quota; "
        f"generation threads per bot: {generation_threads or 'default'}",
        f"{'quota, processes':<18}{'req/s':>8}{'p99 ms':>9}{'bot CPU':>9}{'fake CPU':>10}"
        f"{'PG CPU':>8}{'throttled':>11}{'deferred':>10}"
        f"{'PG active':>11}{'lock waits':>12}{'load':>6}",
    ]
    rates = {key: statistics.median(f.rate for f in figures) for key, figures in runs.items()}
    for (quota, count), figures in runs.items():
        lines.append(
            f"{f'{quota:.2f} CPU, {count}':<18}{rates[quota, count]:>8.1f}"
            f"{statistics.median(f.p99 for f in figures) * 1000:>9.0f}"
            f"{statistics.median(f.bot_cpu_ms for f in figures):>9.1f}"
            f"{statistics.median(f.driver_cpu_ms for f in figures):>10.1f}"
            f"{statistics.median(f.server_cpu_ms for f in figures):>8.1f}"
            f"{statistics.median(f.throttled for f in figures):>10.0%} "
            f"{statistics.median(f.deferred for f in figures):>9.0%} "
            f"{statistics.median(f.active_backends for f in figures):>10.2f}"
            f"{max(f.lock_waits for f in figures):>11.0%} "
            f"{max(f.load for f in figures):>6.1f}"
        )
    for quota in quotas:
        for count in counts:
            if count > 1 and (quota, 1) in rates:
                ratio = rates[quota, count] / rates[quota, 1]
                target = TARGETS.get((quota, count))
                lines.append(
                    f"scaling {count} vs 1 at {quota:.2f} CPU each: {ratio:.2f}x"
                    + ("" if target is None else f" (issue 26 target >= {target})")
                )
    return lines, _measured(runs, requests, rounds)


async def _world(
    server: PostgresServer, fake: FakeDiscord, tmp: Path, guilds: int, classes: int
) -> tuple[str, list[tuple[FakeChannel, FakeUser]]]:
    """``guilds`` servers spread over ``classes`` shard classes with their channels and a reader
    each, a new database with a model in every channel, the commands synced: the database's URL
    and the (channel, member) targets, round robin over the servers (requests in flight together
    spread over every shard; one server's channels in a row would load one process at a time)."""
    url = server.create_database(template=None)
    per_guild = max(1, (GUILDS * CHANNELS_PER_GUILD) // guilds)
    by_guild: list[list[tuple[FakeChannel, FakeUser]]] = []
    for g, guild in enumerate(await _spread_guilds(fake, guilds, classes)):
        reader = fake.add_member(guild, f"reader{g}")
        by_guild.append([(fake.add_channel(guild, f"story{c}"), reader) for c in range(per_guild)])
    targets = [channels[c] for c in range(per_guild) for channels in by_guild]
    await _seed(url, targets)
    sync = make_bot_process(fake, tmp, {}, args=("sync",), name="sync")
    await sync.start(wait_identify=False)
    assert await sync.wait_exit(120.0) == 0, sync.log_tail()
    return url, targets


async def _seed(url: str, targets: list[tuple[FakeChannel, FakeUser]]) -> None:
    """A model of the article (random weights) in every target channel."""
    store = await PostgresStore.open(url)
    try:
        for channel, _ in targets:
            await seed_model(
                store, channel.id, STORY.decode(), guild_id=channel.guild_id, units=UNITS
            )
    finally:
        await store.close()


def _measured(
    runs: dict[tuple[float, int], list[Figures]], requests: int, rounds: int
) -> dict[str, Any]:
    """The quota runs' medians, as ``simulate_capacity.py --measured`` reads them."""
    return {
        "bench": "bench_storage_processes.py --cpu-quota",
        "date": datetime.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "units": UNITS,
        "requests": requests,
        "in_flight": IN_FLIGHT,
        "rounds": rounds,
        "runs": [
            {
                "quota": quota,
                "processes": count,
                "requests_per_second": statistics.median(f.rate for f in figures),
                "bot_cpu_ms": statistics.median(f.bot_cpu_ms for f in figures),
                "driver_cpu_ms": statistics.median(f.driver_cpu_ms for f in figures),
                "database_cpu_ms": statistics.median(f.server_cpu_ms for f in figures),
                "p99_seconds": statistics.median(f.p99 for f in figures),
            }
            for (quota, count), figures in runs.items()
        ],
    }


async def _make_active(url: str, count: int) -> None:
    """``python -m bot reshard --shard-count count`` unless it is active already, and wait until
    the switch takes effect (sharded processes answer only for the active count)."""
    store = await PostgresStore.open(url)
    try:
        current = await store.shard_plan()
        if current.plan is None or current.plan.shard_count != count:
            change = await reshard(store, count)
            for _ in range(100):  # the switch takes effect LEAD_SECONDS (3 s) later
                if (await store.shard_plan()).read_at >= change.plan.switch_at:
                    break
                await asyncio.sleep(0.2)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cpu-quota", required=True, help="CPUs per bot process; several, comma-separated"
    )
    parser.add_argument("--processes", default="1,2,3", help="process counts, comma-separated")
    parser.add_argument("--requests", type=int, default=REQUESTS, help="/continue per run")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds, medians")
    parser.add_argument(
        "--generation-threads", type=int, help="workers.generation_threads of each bot (default 2)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here (simulate_capacity)")
    args = parser.parse_args()
    counts = sorted({int(part) for part in args.processes.split(",")})
    quotas = [float(part) for part in args.cpu_quota.split(",")]
    try:
        cgroup_version()
    except QuotaUnavailable as exc:
        raise SystemExit(f"cannot hold processes to a CPU quota here: {exc}") from None
    server = PostgresServer(fast=False).start()  # durable, as bench_storage.py runs it
    try:
        lines, measured = asyncio.run(
            quota_scaling(
                server,
                quotas,
                counts,
                requests=args.requests,
                rounds=args.rounds,
                generation_threads=args.generation_threads,
            )
        )
    finally:
        server.stop()
    for line in lines:
        print(line)
    if args.json is not None:  # for bench/simulate_capacity.py --measured
        args.json.write_text(json.dumps(measured, indent=1))


if __name__ == "__main__":
    main()
