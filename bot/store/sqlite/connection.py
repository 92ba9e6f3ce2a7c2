"""SQLite plumbing: one connection, one lock, explicit transactions, PRAGMAs and migrations, and
what is SQLite's own in the aggregates: claiming a job, the shard plan's clock (this machine's).

One store owns one connection; every statement goes through it under one asyncio lock, so a
multi-statement transaction of one coroutine never interleaves with another's statements. The
connection runs in autocommit mode and transactions are explicit (``BEGIN IMMEDIATE``).

The schema is Alembic's chain (``bot.store.schema``), run at open on a connection of its own;
``PRAGMA user_version`` keeps the numbered version (10) of the migrations before it. WAL journal,
``foreign_keys=ON``, ``secure_delete=ON``. All SQL is parameterized.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

import aiosqlite
from sqlalchemy import create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from bot.core.store import PlanRead, ShardPlan, now_iso
from bot.errors import StorageError, StorageUnavailable
from bot.owner import new_owner, owner_alive
from bot.store.aggregates.shards import PLAN, shard_plan
from bot.store.base import StoreBase
from bot.store.schema.legacy import LATEST
from bot.store.schema.upgrade import head, upgrade
from bot.store.sql import Connection, Sql

logger = logging.getLogger(__name__)

# SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN (primary result codes)
_UNAVAILABLE_CODES = {8, 10, 13, 14}
UNAVAILABLE_MESSAGE = (
    "I cannot save anything right now (my storage is full or read-only), so nothing was "
    "changed. Please tell the bot's operator."
)


def _upgrade(url: str, where: str) -> None:
    engine = create_engine(url, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are ours: BEGIN IMMEDIATE
        dbapi_connection.execute("PRAGMA busy_timeout = 5000")
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as connection:
            upgrade(connection, where)
    finally:
        engine.dispose()


def _sqlite_error(exc: BaseException) -> BaseException | None:
    """The sqlite3 error behind ``exc`` (SQLAlchemy wraps it; a migration's StorageError too)."""
    link: BaseException | None = exc
    seen: list[BaseException] = []
    while link is not None and link not in seen:
        seen.append(link)
        orig = getattr(link, "orig", None)
        if isinstance(orig, sqlite3.Error):
            return orig
        if isinstance(link, sqlite3.Error):
            return link
        link = link.__cause__ or link.__context__
    return None


START_JOB = Sql(
    "UPDATE jobs SET state = 'running', started_at = :started_at "
    "WHERE id = :job_id AND state = 'queued'"
)
SWITCH_SHARDS = Sql(
    "UPDATE shard_plan SET previous_count = shard_count, shard_count = :shard_count, "
    "switch_at = :switch_at, changed_at = :changed_at WHERE id = 1 AND shard_count = :expected"
)


class SqliteConnection(Connection):
    """The store's one aiosqlite connection, running ``Sql`` statements."""

    dialect = "sqlite"

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    def ids(self, values: Iterable[int]) -> str:
        return json.dumps([int(v) for v in values])

    # One round trip to aiosqlite's thread per statement (execute_fetchall; a write's cursor is
    # not closed, which would be a second): on a loaded machine each costs tens of µs.

    async def fetch(self, statement: Sql, /, *, bulk: bool = False, **params: Any) -> list[Any]:
        sql, args = self.bind(statement, params)
        return list(await self.db.execute_fetchall(sql, args))

    async def fetchrow(self, statement: Sql, /, *, bulk: bool = False, **params: Any) -> Any:
        sql, args = self.bind(statement, params)
        rows = list(await self.db.execute_fetchall(sql, args))
        return rows[0] if rows else None

    async def fetchval(self, statement: Sql, /, *, bulk: bool = False, **params: Any) -> Any:
        sql, args = self.bind(statement, params)
        rows = list(await self.db.execute_fetchall(sql, args))
        return rows[0][0] if rows else None

    async def execute(self, statement: Sql, /, *, bulk: bool = False, **params: Any) -> int:
        sql, args = self.bind(statement, params)
        cursor = await self.db.execute(sql, args)
        return int(cursor.rowcount)

    async def executemany(self, statement: Sql, rows: Iterable[Mapping[str, Any]]) -> None:
        sql, names = statement.compiled(self.dialect)
        await self.db.executemany(sql, [[row[n] for n in names] for row in rows])


class SqliteBase(StoreBase):
    """The connection and its helpers; the aggregates' mixins build on it."""

    # Owners (see bot.owner) of the stores open in this process: a job of this process whose
    # store was closed without finishing it is orphaned.
    _open_owners: ClassVar[set[str]] = set()

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self.owner = new_owner()
        SqliteBase._open_owners.add(self.owner)
        self._db = connection
        self._connection = SqliteConnection(connection)
        self._lock = asyncio.Lock()
        self.path = path
        self.read_only = False  # see ``open``
        self._memory_uri: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Open (creating and migrating) the database at ``path``.

        An existing database that this process cannot write (the file or, for SQLite's WAL
        files, its folder) opens read-only: reading commands work and every write is refused
        with StorageUnavailable. ``read_only`` says which.
        """
        if str(path) != ":memory:" and _exists(path) and not _writable(path):
            return await cls._open_read_only(path, "it is read-only for this user")
        # ":memory:": a named in-memory database that the migration's connection shares; it
        # lives while the store's connection is open.
        memory_uri = f"file:fabulist-{uuid.uuid4().hex}?mode=memory&cache=shared"
        memory = str(path) == ":memory:"
        try:
            if memory:
                connection = await aiosqlite.connect(memory_uri, uri=True, isolation_level=None)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                connection = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open database {path}: {exc}") from exc
        connection.row_factory = aiosqlite.Row
        store = cls(connection, path)
        store._memory_uri = memory_uri if memory else None
        try:
            await store._configure()
            await store._migrate()
        except StorageUnavailable as exc:
            SqliteBase._open_owners.discard(store.owner)
            await connection.close()
            if not _exists(path):
                raise StorageError(f"cannot create database {path}: {exc.__cause__}") from exc
            return await cls._open_read_only(path, f"writing was refused: {exc.__cause__}")
        except BaseException:
            SqliteBase._open_owners.discard(store.owner)
            await connection.close()
            raise
        return store

    @classmethod
    async def _open_read_only(cls, path: Path, why: str) -> Self:
        # mode=ro needs SQLite's -shm file, which it cannot create in an unwritable folder:
        # then immutable=1 (nobody can write there, so the file does not change under us).
        last: Exception | None = None
        for query in ("mode=ro", "mode=ro&immutable=1"):
            uri = f"{_file_uri(path)}?{query}"
            try:
                connection = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            except sqlite3.Error as exc:
                last = exc
                continue
            connection.row_factory = aiosqlite.Row
            store = cls(connection, path)
            store.read_only = True
            try:
                await connection.execute("PRAGMA foreign_keys = ON")
                version = await store._scalar("PRAGMA user_version")
            except sqlite3.DatabaseError as exc:
                SqliteBase._open_owners.discard(store.owner)
                await connection.close()
                last = exc
                continue
            if version != LATEST:
                SqliteBase._open_owners.discard(store.owner)
                await connection.close()
                raise StorageError(
                    f"database {path} cannot be written ({why}) and needs an upgrade of its "
                    f"schema (version {version} -> {LATEST}): make {path.parent} writable"
                )
            logger.warning("database %s opened read-only: %s", path, why)
            return store
        raise StorageError(f"cannot open database {path} ({why}): {last}")

    async def close(self) -> None:
        SqliteBase._open_owners.discard(self.owner)
        async with self._lock:
            await self._db.close()

    async def _configure(self) -> None:
        try:
            await self._db.execute("PRAGMA busy_timeout = 5000")
            async with self._db.execute("PRAGMA journal_mode = WAL") as cursor:
                row = await cursor.fetchone()
            if row is None or str(row[0]).lower() not in ("wal", "memory"):
                logger.warning("database %s is not in WAL mode (%s)", self.path, row)
            await self._db.execute("PRAGMA foreign_keys = ON")
            # A removed story (or a model that memorized it) must not linger in free pages.
            await self._db.execute("PRAGMA secure_delete = ON")
            await self._db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.OperationalError as exc:
            unavailable = _unavailable(self.path, exc)
            if unavailable is not None:  # read-only file or folder: not a damaged database
                raise unavailable from exc
            raise StorageError(f"{self.path} is not a usable SQLite database: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{self.path} is not a usable SQLite database: {exc}") from exc

    async def _migrate(self) -> None:
        """Alembic's chain (``bot.store.schema``) on a connection of its own, in one
        ``BEGIN IMMEDIATE`` transaction, on a worker thread."""
        if await self._current():
            return  # nothing to do: no second connection, no write lock taken
        try:
            await asyncio.to_thread(_upgrade, self._engine_url(), str(self.path))
        except (StorageError, SQLAlchemyError) as exc:
            cause = _sqlite_error(exc)
            if isinstance(cause, sqlite3.OperationalError):
                unavailable = _unavailable(self.path, cause)
                if unavailable is not None:
                    raise unavailable from cause
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"upgrading {self.path} failed: {exc}") from exc

    async def _current(self) -> bool:
        """Whether the database is at the chain's head already (read on the store's connection)."""
        if await self._scalar("PRAGMA user_version") != LATEST:
            return False
        try:
            return bool(await self._scalar("SELECT version_num FROM alembic_version") == head())
        except sqlite3.OperationalError:  # no such table: written before Alembic
            return False

    def _engine_url(self) -> str:
        if self._memory_uri is not None:
            return f"sqlite:///{self._memory_uri}&uri=true"
        return f"sqlite:///{self.path}"

    async def schema_version(self) -> int:
        async with self._lock:
            return int(await self._scalar("PRAGMA user_version"))

    async def integrity_check(self) -> str:
        async with self._lock, self._db.execute("PRAGMA integrity_check") as cursor:
            rows = await cursor.fetchall()
        return "; ".join(str(row[0]) for row in rows)

    async def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (best effort)."""
        async with self._lock:
            try:
                await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                logger.warning("WAL checkpoint of %s failed: %s", self.path, exc)

    # -- connections ---------------------------------------------------------------------

    async def _scalar(self, sql: str) -> Any:
        async with self._db.execute(sql) as cursor:
            row = await cursor.fetchone()
        return None if row is None else row[0]

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Connection]:
        async with self._lock:
            yield self._connection

    def _snapshot_read(self) -> Any:
        return self._read()  # the lock already keeps every write out

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._connection
                    await self._db.execute("COMMIT")
                except BaseException:
                    # SQLite has already rolled back after some errors (a full disk).
                    if self._db.in_transaction:
                        await self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                unavailable = _unavailable(self.path, exc)
                if unavailable is None:
                    raise
                raise unavailable from exc

    async def _live_owners(self, db: Connection, owners: Sequence[str | None]) -> set[str]:
        """One SQLite file is one host's: its owners are checked on this host (bot.owner)."""
        return {o for o in owners if o and owner_alive(o, SqliteBase._open_owners)}

    # -- what is SQLite's own --------------------------------------------------------------

    async def start_job(self, job_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(START_JOB, started_at=now_iso(), job_id=job_id)

    async def shard_plan(self) -> PlanRead:
        """One SQLite file is one machine's: its clock is the store's clock."""
        async with self._read() as db:
            read_at = time.time()  # before the read: a later change is not in it
            row = await db.fetchrow(PLAN)
        return PlanRead(shard_plan(row), read_at)

    async def switch_shard_count(
        self, expected: int, shard_count: int, lead_seconds: float
    ) -> ShardPlan | None:
        async with self._transaction() as db:
            # BEGIN IMMEDIATE holds the write lock: the time taken here precedes the commit.
            await db.execute(
                SWITCH_SHARDS,
                shard_count=shard_count,
                switch_at=time.time() + lead_seconds,
                changed_at=now_iso(),
                expected=expected,
            )
            row = await db.fetchrow(PLAN)
        plan = shard_plan(row)
        if plan is None or plan.shard_count != shard_count or plan.previous_count != expected:
            return None
        return plan


def _exists(path: Path) -> bool:
    return path.is_file()


def _file_uri(path: Path) -> str:
    return path.resolve().as_uri()


def _writable(path: Path) -> bool:
    """Whether this process may write the database file and create files beside it."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _unavailable(path: Path, exc: sqlite3.OperationalError) -> StorageUnavailable | None:
    """A write refused by the disk becomes a clear StorageUnavailable; None for anything else."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or code & 0xFF not in _UNAVAILABLE_CODES:
        return None
    logger.error("database %s refused a write: %s", path, exc)
    return StorageUnavailable(UNAVAILABLE_MESSAGE)
