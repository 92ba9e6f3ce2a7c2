"""Storage figures for issue 13: SQLite vs PostgreSQL in one run, on this machine.

1. Hot queries, p50/p99 over N calls each, through the real stores:
   - load the active model of a channel (cache miss: active_model_id + model + model_blob),
   - the warm path's check (active_model_id, on every /continue),
   - insert a story (add_story_and_job),
   - activate a model (activate_model: insert the blob, switch, finish the job, prune).
2. ``continue_story`` throughput through the real service, 8 concurrent, over 200 channels:
   model cache cold (bound 1: every request loads its model from the database) and warm.
3. With ``--processes``: 2 bot processes (shards 0, 1 of 2) vs 1 process serving 200 channels
   on the fake Discord, sharing one PostgreSQL: /continue requests/s and p99.

PostgreSQL is a server the bench starts itself (tests/postgres_server.py) with the server's
defaults (fsync on), over TCP on 127.0.0.1, used as the bot uses it: sessions with
synchronous_commit=off, the durability of SQLite's WAL with synchronous=NORMAL (the bot's
SQLite setting: a commit does not wait for fsync); the hot queries are also measured with
synchronous_commit=on ("PG durable"). Run:
    .venv/bin/python bench/bench_storage.py [--calls 300] [--processes]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._measure import pct  # noqa: E402
from bot.app import open_app  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.core.api import ChannelRef, ContinueOptions  # noqa: E402
from bot.core.store import NewModel, NewStory  # noqa: E402
from bot.store.urls import open_store_url  # noqa: E402
from model import Vocabulary, tokenize  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402
from tests.support import STORY, seed_model, synthetic_model  # noqa: E402

CHANNELS = 200
PROMPTS = ["had a general", "the mice", "the cat", "mouse", "a young mouse got up"]


def ms(times: list[float]) -> tuple[float, float]:
    return pct(times, 0.5) * 1000, pct(times, 0.99) * 1000


QUERIES = (
    "load active model (miss)",
    "active model id (warm)",
    "insert a story + job",
    "activate a model",
)
Query = Callable[[int], Awaitable[Any]]


async def _queries(url: str, units: int) -> tuple[Any, dict[str, Query], int]:
    """(open store with 200 seeded channels, query name -> one call, blob bytes)."""
    text = STORY.decode()
    vocabulary = Vocabulary.build(tokenize(text))
    model = synthetic_model(list(vocabulary.symbols), units=units)
    from model import to_bytes

    blob = to_bytes(model)
    store = await open_store_url(url)
    for channel_id in range(1, CHANNELS + 1):
        await seed_model(store, channel_id, text, units=units, blob=blob)

    async def load_active(i: int) -> None:
        channel_id = 1 + i % CHANNELS
        model_id = await store.active_model_id(channel_id)
        assert model_id is not None
        await store.model(model_id)
        await store.model_blob(model_id)

    async def check_active(i: int) -> None:
        await store.active_model_id(1 + i % CHANNELS)

    story = NewStory("s.txt", 1, "u", text, "0" * 64, "utf-8", len(text), 200, 112)
    jobs: list[Any] = []

    async def insert_story(i: int) -> None:
        jobs.append(
            await store.add_story_and_job(
                channel_id=10_000 + i, guild_id=1, channel_name=None, story=story, append=False,
                requested_by=1, requested_by_name="u", options={},
            )
        )  # fmt: skip

    new_model = NewModel(
        config=model.config.to_dict(),
        vocabulary=list(vocabulary.symbols),
        blob=blob,
        figures=model.figures.to_dict(),
        options={},
    )

    async def activate(i: int) -> None:
        job = jobs[i]
        await store.activate_model(
            job_id=job.id, channel_id=job.channel_id, model=new_model,
            story_ids=job.story_ids, keep_versions=3,
        )  # fmt: skip

    ops = (load_active, check_active, insert_story, activate)
    return store, dict(zip(QUERIES, ops, strict=True)), len(blob)


async def hot_queries(
    urls: dict[str, str], calls: int, units: int, rounds: int
) -> tuple[dict[str, dict[str, list[tuple[float, float]]]], int]:
    """query -> backend -> (p50, p99) ms of each round, and the blob's size.

    The backends are interleaved call by call (SQLite, PostgreSQL, PG durable, SQLite, ...), so
    a burst of load on the shared machine hits each of them alike; each round measures ``calls``
    calls per query and backend, and the report takes the median over the rounds."""
    opened = {name: await _queries(url, units) for name, url in urls.items()}
    results: dict[str, dict[str, list[tuple[float, float]]]] = {
        query: {name: [] for name in urls} for query in QUERIES
    }
    for _, ops, _ in opened.values():  # the first calls open connections and plan
        await ops[QUERIES[0]](0)
        await ops[QUERIES[1]](0)
    for round_no in range(rounds):
        for query in QUERIES:
            times: dict[str, list[float]] = {name: [] for name in urls}
            for i in range(calls):
                for name, (_, ops, _) in opened.items():
                    start = time.perf_counter()
                    await ops[query](round_no * calls + i)
                    times[name].append(time.perf_counter() - start)
            for name in urls:
                results[query][name].append(ms(times[name]))
    for store, _, _ in opened.values():
        await store.close()
    return results, next(iter(opened.values()))[2]


async def continue_throughput(url: str, bound: int, requests: int) -> tuple[float, float]:
    """(requests/s, p99 s) of ``requests`` continue_story calls, 8 at a time, over 200 channels."""
    config = load_config(
        data={
            "storage": {"url": url},
            "cache": {"models": bound, "megabytes": 8192},
            "cooldowns": {"continue_seconds": 0.0},
        },
        environ={},
    )
    async with open_app(config, warm_workers=False) as app:
        service = app.service
        if bound >= CHANNELS:  # warm: every model cached first
            for channel_id in range(1, CHANNELS + 1):
                await service.continue_story(
                    ChannelRef(100, channel_id), "the cat", ContinueOptions()
                )
        semaphore = asyncio.Semaphore(8)
        times: list[float] = []

        async def one(i: int) -> None:
            async with semaphore:
                start = time.perf_counter()
                await service.continue_story(
                    ChannelRef(100, 1 + (i * 7) % CHANNELS),
                    PROMPTS[i % len(PROMPTS)],
                    ContinueOptions(length=16),
                )
                times.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        elapsed = time.perf_counter() - start
    return requests / elapsed, pct(times, 0.99)


def load() -> str:
    return "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg())


def hot_section(urls: dict[str, str], durable: str, args: argparse.Namespace) -> None:
    hot, blob = asyncio.run(
        hot_queries({**urls, "PG durable": durable}, args.calls, args.units, args.rounds)
    )
    print(
        f"\n1. hot queries, {args.calls} calls per query, backend and round, {args.rounds} "
        f"rounds, backends interleaved call by call; {CHANNELS} channels, model blob "
        f"{blob / 1e6:.2f} MB ({args.units} units); medians over the rounds; {load()} at the end"
    )
    print(
        f"{'query':<26} {'SQLite p50/p99 ms':>20} {'PostgreSQL p50/p99 ms':>24} "
        f"{'p99 PG/SQLite (rounds)':>24} {'PG durable p50/p99 ms':>24}"
    )

    def median(rounds: list[tuple[float, float]], index: int) -> float:
        return statistics.median(r[index] for r in rounds)

    for name, backends in hot.items():
        sqlite, pg, durable_rounds = (
            backends["SQLite"],
            backends["PostgreSQL"],
            backends["PG durable"],
        )
        ratios = [p[1] / s[1] for p, s in zip(pg, sqlite, strict=True)]
        spread = f"{min(ratios):.1f}-{max(ratios):.1f}"
        print(
            f"{name:<26} {median(sqlite, 0):9.2f} / {median(sqlite, 1):8.2f} "
            f"{median(pg, 0):11.2f} / {median(pg, 1):10.2f} "
            f"{statistics.median(ratios):8.2f}x ({spread:>9}) "
            f"{median(durable_rounds, 0):11.2f} / {median(durable_rounds, 1):10.2f}"
        )
    print("target: p99 PG/SQLite <= 3x (the median over the rounds)")


def continue_section(urls: dict[str, str], args: argparse.Namespace) -> None:
    print(f"\n2. continue_story, {args.requests} requests, 8 concurrent, {CHANNELS} channels")
    for label, bound in (("cold (cache bound 1)", 1), ("warm (all cached)", CHANNELS)):
        figures = {}
        for name, url in urls.items():
            figures[name] = asyncio.run(continue_throughput(url, bound, args.requests))
        print(
            f"{label:<22} "
            + "  ".join(
                f"{n} {rps:6.1f} req/s p99 {p99 * 1000:6.1f} ms"
                for n, (rps, p99) in figures.items()
            )
            + f"  ratio PG/SQLite {figures['PostgreSQL'][0] / figures['SQLite'][0]:.2f}"
        )
    print(load())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--units", type=int, default=512, help="model size (512: the article's)")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--processes", action="store_true", help="also 2 vs 1 bot processes")
    parser.add_argument("--processes-only", action="store_true", help="only 2 vs 1 processes")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, medians")
    parser.add_argument("--process-requests", type=int, default=600, help="/continue per run")
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        f"# bench_storage {datetime.now(UTC):%Y-%m-%d %H:%M} UTC - {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {load()}"
    )
    server = PostgresServer(fast=False).start()
    try:
        version = server.psql("SHOW server_version")
        print(
            f"PostgreSQL {version}, TCP 127.0.0.1, fabulist's session default "
            "synchronous_commit=off (the durability of SQLite WAL synchronous=NORMAL, the bot's); "
            "'PG durable': synchronous_commit=on"
        )
        with tempfile.TemporaryDirectory() as tmp:
            urls = {
                "SQLite": f"sqlite:///{Path(tmp) / 'bench.sqlite3'}",
                "PostgreSQL": server.create_database(template=None),
            }
            # the same server, each commit waiting for its WAL fsync
            durable = server.create_database(template=None) + "?synchronous_commit=on"
            if not args.processes_only:
                hot_section(urls, durable, args)
                continue_section(urls, args)
            if args.processes or args.processes_only:
                from bench.bench_storage_processes import two_vs_one

                print(f"\n3. bot processes on the fake Discord, {CHANNELS} channels, PostgreSQL")
                for text in asyncio.run(
                    two_vs_one(server, rounds=args.rounds, requests=args.process_requests)
                ):
                    print(text)
    finally:
        server.stop()
    print(f"\nbench wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
