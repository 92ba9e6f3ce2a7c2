"""``python -m bot migrate-storage --from URL --to URL``: copy a whole database between backends.

Both sides are first opened by their store, which migrates them to this fabulist's schema
version, so the tables match column for column. Then every row of every table is copied with its
id (channels, stories, models with their blobs, model_stories, jobs: the whole history), one
model at a time so blobs never pile up in memory, inside one transaction on the target (and one
consistent read of the source). Afterwards the copy is verified: row counts per table, each
model blob's sha256, and a digest of every other row; any difference fails the command.

A target that already holds data is refused unless ``replace`` is given (then emptied first, in
the same transaction). Stop the bot while migrating: jobs open in the source are copied as they
are and interrupted by the first process that opens the target.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from bot.errors import StorageError
from bot.store.url_password import redact_url
from bot.store.urls import open_store_url, sqlite_path

logger = logging.getLogger(__name__)

# Schema version 10's tables in dependency order, with their columns and key. Not PostgreSQL's
# job_owners (a running process's lease) nor shard_plan (the running cluster's: the first sharded
# process on the target records its own count): nothing of the data.
TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "channels": (
        ("channel_id", "guild_id", "name", "created_at", "last_version", "replies"),
        "channel_id",
    ),
    "stories": (
        (
            "id", "channel_id", "filename", "uploader_id", "uploader_name", "text", "sha256",
            "encoding", "bytes", "symbols", "vocabulary_size", "created_at",
        ),
        "id",
    ),
    "models": (
        (
            "id", "channel_id", "version", "config", "vocabulary", "blob", "figures", "options",
            "job_id", "created_at",
        ),
        "id",
    ),
    "model_stories": (("model_id", "story_id", "position"), "model_id, story_id"),
    "jobs": (
        (
            "id", "channel_id", "guild_id", "requested_by", "requested_by_name", "state",
            "story_ids", "options", "progress", "error", "model_id", "created_at", "started_at",
            "finished_at", "progress_channel_id", "progress_message_id", "owner",
        ),
        "id",
    ),
    "story_messages": (
        ("story_id", "position", "message_id", "author_id", "text", "created_at"),
        "story_id, position",
    ),
    "privacy_optouts": (("guild_id", "user_id", "created_at"), "guild_id, user_id"),
    "history_guilds": (("guild_id", "enabled_by", "created_at"), "guild_id"),
    "guild_filters": (
        ("guild_id", "folded", "word", "added_by", "created_at"), "guild_id, folded",
    ),
    "guild_filter_versions": (("guild_id", "version"), "guild_id"),
}  # fmt: skip
SCHEMA_VERSION = 10
IDENTITY_TABLES = ("stories", "models", "jobs")


@dataclass
class MigrationReport:
    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)
    blobs_verified: int = 0
    blob_bytes: int = 0

    def lines(self) -> list[str]:
        counts = ", ".join(f"{table} {count}" for table, count in self.rows.items())
        return [
            f"Copied {self.source} to {self.target}: {counts}.",
            f"Verified: row counts equal, every row's digest equal, {self.blobs_verified} model "
            f"blobs ({self.blob_bytes:,} bytes) with equal sha256.",
        ]


def statement(kind: str, table: str, *, postgres: bool = False) -> str:
    """The one place that writes this module's SQL: identifiers (which no SQL parameter can
    carry) come only from ``TABLES``; every value is a parameter."""
    if table not in TABLES:
        raise ValueError(f"not a table of the schema: {table!r}")
    columns, order = TABLES[table]
    names = ", ".join(columns)
    if kind == "select":
        return f"SELECT {names} FROM {table} ORDER BY {order}"  # noqa: S608
    if kind == "count":
        return f"SELECT count(*) FROM {table}"  # noqa: S608
    if kind == "delete":
        return f"DELETE FROM {table}"  # noqa: S608
    if kind == "insert":
        count = len(columns)
        marks = (
            ", ".join(f"${i}" for i in range(1, count + 1)) if postgres else ", ".join("?" * count)
        )
        return f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608
    if kind == "sequence" and table in IDENTITY_TABLES:  # new rows continue after the copied ids
        return (
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
            f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
        )
    raise ValueError(f"no {kind} statement for {table}")


class _Side:
    """Raw rows of one database (this module is the only reader of both dialects' tables)."""

    postgres = False

    async def rows(self, table: str) -> AsyncIterator[tuple]:
        raise NotImplementedError
        yield ()  # pragma: no cover

    async def insert(self, table: str, rows: Sequence[tuple]) -> None:
        raise NotImplementedError

    async def count(self, table: str) -> int:
        raise NotImplementedError

    async def run(self, kind: str, table: str) -> None:
        raise NotImplementedError

    async def set_active_model(self, channel_id: int, model_id: int | None) -> None:
        raise NotImplementedError

    async def active_models(self) -> list[tuple[int, int | None]]:
        raise NotImplementedError


class _SqliteSide(_Side):
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def rows(self, table: str) -> AsyncIterator[tuple]:
        sql = statement("select", table)
        async with self.db.execute(sql) as cursor:
            async for row in cursor:
                yield tuple(row)

    async def insert(self, table: str, rows: Sequence[tuple]) -> None:
        sql = statement("insert", table)
        await self.db.executemany(sql, rows)

    async def count(self, table: str) -> int:
        sql = statement("count", table)
        async with self.db.execute(sql) as cursor:
            row = await cursor.fetchone()
        return 0 if row is None else int(row[0])

    async def run(self, kind: str, table: str) -> None:
        sql = statement(kind, table)
        await self.db.execute(sql)

    async def set_active_model(self, channel_id: int, model_id: int | None) -> None:
        await self.db.execute(
            "UPDATE channels SET active_model_id = ? WHERE channel_id = ?", (model_id, channel_id)
        )

    async def active_models(self) -> list[tuple[int, int | None]]:
        async with self.db.execute(
            "SELECT channel_id, active_model_id FROM channels ORDER BY channel_id"
        ) as cursor:
            return [(int(r[0]), r[1]) async for r in cursor]


class _PostgresSide(_Side):
    postgres = True

    def __init__(self, db: Any) -> None:
        self.db = db

    async def rows(self, table: str) -> AsyncIterator[tuple]:
        async for row in self.db.cursor(statement("select", table), prefetch=16):
            yield tuple(row)

    async def insert(self, table: str, rows: Sequence[tuple]) -> None:
        sql = statement("insert", table, postgres=True)
        await self.db.executemany(sql, rows)

    async def count(self, table: str) -> int:
        return int(await self.db.fetchval(statement("count", table)))

    async def run(self, kind: str, table: str) -> None:
        sql = statement(kind, table, postgres=True)
        await self.db.execute(sql)

    async def set_active_model(self, channel_id: int, model_id: int | None) -> None:
        await self.db.execute(
            "UPDATE channels SET active_model_id = $1 WHERE channel_id = $2", model_id, channel_id
        )

    async def active_models(self) -> list[tuple[int, int | None]]:
        rows = await self.db.fetch(
            "SELECT channel_id, active_model_id FROM channels ORDER BY channel_id"
        )
        return [(int(r[0]), r[1]) for r in rows]


@asynccontextmanager
async def _open_side(url: str, *, write: bool) -> AsyncIterator[_Side]:
    """A raw connection in one transaction (a consistent read, or an all-or-nothing copy)."""
    store = await open_store_url(url)  # creates and migrates the schema
    try:
        version = await store.schema_version()  # type: ignore[attr-defined]  # both backends'
    finally:
        await store.close()
    if version != SCHEMA_VERSION:
        raise StorageError(
            f"{redact_url(url)} has schema version {version}; this migration copies version "
            f"{SCHEMA_VERSION}"
        )
    if url.startswith("sqlite:///"):
        db = await aiosqlite.connect(sqlite_path(url), isolation_level=None)
        try:
            await db.execute("PRAGMA foreign_keys = ON")
            if write:
                await db.execute("BEGIN IMMEDIATE")
            else:
                await db.execute("BEGIN")
            try:
                yield _SqliteSide(db)
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        finally:
            await db.close()
        return
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        isolation = "read_committed" if write else "repeatable_read"
        async with connection.transaction(isolation=isolation, readonly=not write):
            yield _PostgresSide(connection)
    finally:
        await connection.close()


def _row_digest(row: tuple) -> bytes:
    return hashlib.sha256(repr(row).encode("utf-8", "surrogatepass")).digest()


async def _table_digest(side: _Side, table: str) -> tuple[int, str, int, int]:
    """(rows, digest of all rows, blobs, blob bytes) of one table, blobs hashed by sha256."""
    columns, _ = TABLES[table]
    total = hashlib.sha256()
    count = blobs = size = 0
    async for row in side.rows(table):
        values = list(row)
        if table == "models":
            blob = bytes(values[columns.index("blob")])
            values[columns.index("blob")] = hashlib.sha256(blob).hexdigest()
            blobs += 1
            size += len(blob)
        total.update(_row_digest(tuple(values)))
        count += 1
    return count, total.hexdigest(), blobs, size


async def migrate_storage(source: str, target: str, *, replace: bool = False) -> MigrationReport:
    """Copy every row of ``source`` into ``target`` and verify the copy (see module doc)."""
    if source == target:
        raise StorageError("--from and --to name the same database")
    report = MigrationReport(redact_url(source), redact_url(target))
    async with _open_side(source, write=False) as src, _open_side(target, write=True) as dst:
        held = {table: await dst.count(table) for table in TABLES}
        if any(held.values()):
            if not replace:
                counts = ", ".join(f"{t} {n}" for t, n in held.items() if n)
                raise StorageError(
                    f"the target {report.target} is not empty ({counts}); "
                    "pass --replace to empty it first"
                )
            logger.warning("emptying the target %s first (--replace)", report.target)
            for channel_id, _ in await dst.active_models():
                await dst.set_active_model(channel_id, None)
            for table in reversed(TABLES):
                await dst.run("delete", table)
        for table in TABLES:
            batch: list[tuple] = []
            # one model (blob) at a time; other rows in batches
            limit = 1 if table == "models" else 500
            async for row in src.rows(table):
                batch.append(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row))
                if len(batch) >= limit:
                    await dst.insert(table, batch)
                    batch.clear()
            if batch:
                await dst.insert(table, batch)
        # the active models last: channels were copied before the models they point at
        for channel_id, active in await src.active_models():
            if active is not None:
                await dst.set_active_model(channel_id, active)
        if dst.postgres:
            for table in IDENTITY_TABLES:
                await dst.run("sequence", table)
        await _verify(src, dst, report)
    return report


async def _verify(src: _Side, dst: _Side, report: MigrationReport) -> None:
    for table in TABLES:
        source = await _table_digest(src, table)
        copied = await _table_digest(dst, table)
        if source[0] != copied[0]:
            raise StorageError(f"{table}: {source[0]} rows in the source, {copied[0]} copied")
        if source[1] != copied[1]:
            raise StorageError(f"{table}: the copied rows differ from the source's")
        report.rows[table] = source[0]
        report.blobs_verified += copied[2]
        report.blob_bytes += copied[3]
    if await src.active_models() != await dst.active_models():
        raise StorageError("channels: the copied active models differ from the source's")
