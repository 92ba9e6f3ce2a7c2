"""Does SQLAlchemy's async engine cost the store's hot queries more than the drivers do?

The store (bot/store) takes its schema, statements and migrations from SQLAlchemy Core and
Alembic, and runs the compiled statements on aiosqlite and asyncpg itself. This bench measures
the alternative, SQLAlchemy's ``AsyncEngine`` over the same drivers (``sqlite+aiosqlite``,
``postgresql+asyncpg``), on the same database in the same run, for the statements that run on
every /continue or every model load:

- ``active model id``: one integer by primary key (every /continue checks it);
- ``model blob``: one model's blob (a cache miss; 0.4 MB here);
- ``insert + delete a row``: a small write transaction (the shape of a counter or a job update).

Three ways per statement, interleaved call by call so load on the shared machine hits each
alike: the driver itself (aiosqlite ``execute_fetchall`` / asyncpg ``fetchval``), the engine
with a Core statement (a pooled connection per call, as an engine is used), and the store's own
method where one exists. Prints p50 / p99 in microseconds and the ratios to the driver.

PostgreSQL is a server the bench starts (tests/postgres_server.py). Run:
    .venv/bin/python bench/bench_sqlalchemy_engine.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiosqlite  # noqa: E402
import asyncpg  # noqa: E402
from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table, bindparam, select, text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bench._measure import pct  # noqa: E402
from bot.store.urls import open_store_url  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402
from tests.support import STORY, seed_model  # noqa: E402

CHANNELS = 50
Call = Callable[[int], Awaitable[Any]]

# Only the columns these statements read; the tables themselves are the store's.
_meta = MetaData()
channels = Table(
    "channels",
    _meta,
    Column("channel_id", Integer, primary_key=True),
    Column("active_model_id", Integer),
)
models = Table(
    "models", _meta, Column("id", Integer, primary_key=True), Column("blob", LargeBinary)
)
ACTIVE = select(channels.c.active_model_id).where(channels.c.channel_id == bindparam("cid"))
BLOB = select(models.c.blob).where(models.c.id == bindparam("mid"))
SCRATCH = "CREATE TABLE IF NOT EXISTS bench_scratch (id BIGINT PRIMARY KEY, n BIGINT)"


async def _seed(url: str) -> dict[int, int]:
    """Seed CHANNELS channels with a model each; channel id -> active model id."""
    store = await open_store_url(url)
    try:
        for channel_id in range(1, CHANNELS + 1):
            await seed_model(store, channel_id, STORY.decode(), units=128)
        active = {c: await store.active_model_id(c) for c in range(1, CHANNELS + 1)}
    finally:
        await store.close()
    return {c: m for c, m in active.items() if m is not None}


async def _ways(url: str, active: dict[int, int]) -> tuple[dict[str, dict[str, Call]], Any]:
    """statement -> way -> one call, and what to close."""
    sqlite = url.startswith("sqlite")
    engine = create_async_engine(
        url.replace("sqlite:///", "sqlite+aiosqlite:///")
        if sqlite
        else url.replace("postgresql://", "postgresql+asyncpg://", 1)
    )
    store = await open_store_url(url)
    if sqlite:
        db = await aiosqlite.connect(url.removeprefix("sqlite:///"))
        await db.execute(SCRATCH)
        await db.commit()

        async def driver_active(i: int) -> Any:
            rows = await db.execute_fetchall(
                "SELECT active_model_id FROM channels WHERE channel_id = ?", (1 + i % CHANNELS,)
            )
            return rows[0][0]

        async def driver_blob(i: int) -> Any:
            rows = await db.execute_fetchall(
                "SELECT blob FROM models WHERE id = ?", (active[1 + i % CHANNELS],)
            )
            return rows[0][0]

        async def driver_write(i: int) -> None:
            await db.execute("INSERT INTO bench_scratch (id, n) VALUES (?, ?)", (i, i))
            await db.execute("DELETE FROM bench_scratch WHERE id = ?", (i,))
            await db.commit()

        closer: Any = db
    else:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        await pool.execute(SCRATCH)

        async def driver_active(i: int) -> Any:
            return await pool.fetchval(
                "SELECT active_model_id FROM channels WHERE channel_id = $1", 1 + i % CHANNELS
            )

        async def driver_blob(i: int) -> Any:
            return await pool.fetchval(
                "SELECT blob FROM models WHERE id = $1", active[1 + i % CHANNELS]
            )

        async def driver_write(i: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO bench_scratch (id, n) VALUES ($1, $2)", i, i)
                await conn.execute("DELETE FROM bench_scratch WHERE id = $1", i)

        closer = pool

    async def engine_active(i: int) -> Any:
        async with engine.connect() as conn:
            return (await conn.execute(ACTIVE, {"cid": 1 + i % CHANNELS})).scalar()

    async def engine_blob(i: int) -> Any:
        async with engine.connect() as conn:
            return (await conn.execute(BLOB, {"mid": active[1 + i % CHANNELS]})).scalar()

    insert = text("INSERT INTO bench_scratch (id, n) VALUES (:id, :n)")
    delete = text("DELETE FROM bench_scratch WHERE id = :id")

    async def engine_write(i: int) -> None:
        async with engine.begin() as conn:
            await conn.execute(insert, {"id": 10_000_000 + i, "n": i})
            await conn.execute(delete, {"id": 10_000_000 + i})

    async def store_active(i: int) -> Any:
        return await store.active_model_id(1 + i % CHANNELS)

    async def store_blob(i: int) -> Any:
        return await store.model_blob(active[1 + i % CHANNELS])

    ways = {
        "active model id": {
            "driver": driver_active,
            "SQLAlchemy engine": engine_active,
            "store": store_active,
        },
        "model blob": {
            "driver": driver_blob,
            "SQLAlchemy engine": engine_blob,
            "store": store_blob,
        },
        "insert + delete a row": {"driver": driver_write, "SQLAlchemy engine": engine_write},
    }
    return ways, (engine, store, closer)


async def measure(url: str, calls: int) -> dict[str, dict[str, tuple[float, float]]]:
    active = await _seed(url)
    ways, (engine, store, closer) = await _ways(url, active)
    results: dict[str, dict[str, tuple[float, float]]] = {}
    try:
        for statement, by_way in ways.items():
            for call in by_way.values():  # connections opened, statements prepared
                for i in range(20):
                    await call(i)
            times: dict[str, list[float]] = {way: [] for way in by_way}
            for i in range(calls):
                for way, call in by_way.items():
                    start = time.perf_counter()
                    await call(100 + i)
                    times[way].append(time.perf_counter() - start)
            results[statement] = {
                way: (pct(t, 0.5) * 1e6, pct(t, 0.99) * 1e6) for way, t in times.items()
            }
    finally:
        await engine.dispose()
        await store.close()
        await closer.close()
    return results


def report(backend: str, results: dict[str, dict[str, tuple[float, float]]]) -> None:
    print(f"\n{backend}")
    print(f"{'statement':<24} {'way':<18} {'p50 us':>9} {'p99 us':>9} {'p50 / driver':>13}")
    for statement, by_way in results.items():
        base = by_way["driver"][0]
        for way, (p50, p99) in by_way.items():
            print(f"{statement:<24} {way:<18} {p50:9.0f} {p99:9.0f} {p50 / base:12.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    print(f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())} at the start")
    with tempfile.TemporaryDirectory() as folder:
        report("SQLite", asyncio.run(measure(f"sqlite:///{folder}/bench.sqlite3", args.calls)))
    server = PostgresServer().start()
    try:
        server.psql("CREATE DATABASE bench")
        report("PostgreSQL", asyncio.run(measure(server.url("bench"), args.calls)))
    finally:
        server.stop()
    print(f"\nload average {' / '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
