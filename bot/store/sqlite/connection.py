"""SQLite plumbing: one connection, one lock, explicit transactions, PRAGMAs and migrations.

One store owns one connection; every statement goes through it under one asyncio lock, so a
multi-statement transaction of one coroutine never interleaves with another's statements. The
connection runs in autocommit mode and transactions are explicit (``BEGIN IMMEDIATE``).

The schema lives in ``schema.sql`` as numbered migrations; ``PRAGMA user_version`` records how far a
database is. WAL journal, ``foreign_keys=ON``, ``secure_delete=ON``. All SQL is parameterized.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Self

import aiosqlite

from bot.core.store import now_iso
from bot.errors import StorageError, StorageUnavailable
from bot.owner import new_owner

logger = logging.getLogger(__name__)

_MIGRATION = re.compile(r"^-- migration (\d+)\s*$", re.MULTILINE)
# SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN (primary result codes)
_UNAVAILABLE_CODES = {8, 10, 13, 14}
UNAVAILABLE_MESSAGE = (
    "I cannot save anything right now (my storage is full or read-only), so nothing was "
    "changed. Please tell the bot's operator."
)


def load_migrations(text: str | None = None) -> list[tuple[int, str]]:
    """Split schema.sql into (version, sql) pairs; versions must be 1, 2, 3... in order."""
    if text is None:
        text = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    parts = _MIGRATION.split(text)
    migrations = [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts), 2)]
    for expected, (version, _) in enumerate(migrations, start=1):
        if version != expected:
            raise StorageError(f"schema.sql: migration {version} found where {expected} expected")
    return migrations


class SqliteBase:
    """The connection and its helpers; the aggregates' mixins build on it."""

    # Owners (see bot.owner) of the stores open in this process: a job of this process whose
    # store was closed without finishing it is orphaned.
    _open_owners: ClassVar[set[str]] = set()

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self.owner = new_owner()
        SqliteBase._open_owners.add(self.owner)
        self._db = connection
        self._lock = asyncio.Lock()
        self.path = path
        self.read_only = False  # see ``open``

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
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            connection = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open database {path}: {exc}") from exc
        connection.row_factory = aiosqlite.Row
        store = cls(connection, path)
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
            latest = load_migrations()[-1][0]
            if version != latest:
                SqliteBase._open_owners.discard(store.owner)
                await connection.close()
                raise StorageError(
                    f"database {path} cannot be written ({why}) and needs an upgrade of its "
                    f"schema (version {version} -> {latest}): make {path.parent} writable"
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
        migrations = load_migrations()
        async with self._lock:
            current = await self._scalar("PRAGMA user_version")
            latest = migrations[-1][0]
            if current > latest:
                raise StorageError(
                    f"database {self.path} has schema version {current}, newer than this "
                    f"fabulist's {latest}; upgrade fabulist"
                )
            for version, sql in migrations:
                if version <= current:
                    continue
                logger.info("migrating %s to schema version %d", self.path, version)
                # executescript cannot take parameters; the version is an int from schema.sql.
                script = f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {int(version)};\nCOMMIT;"
                try:
                    await self._db.executescript(script)
                except sqlite3.Error as exc:
                    if self._db.in_transaction:
                        await self._db.execute("ROLLBACK")
                    raise StorageError(f"migration {version} of {self.path} failed: {exc}") from exc

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

    # -- helpers ---------------------------------------------------------------------------

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        async with self._db.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return None if row is None else row[0]

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        async with self._db.execute(sql, params) as cursor:
            return await cursor.fetchone()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
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

    async def _ensure_channel(
        self, channel_id: int, guild_id: int | None, name: str | None
    ) -> None:
        await self._db.execute(
            "INSERT INTO channels (channel_id, guild_id, name, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (channel_id) DO UPDATE SET "
            "name = coalesce(excluded.name, channels.name), "
            "guild_id = coalesce(channels.guild_id, excluded.guild_id)",
            (channel_id, guild_id, name, now_iso()),
        )


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
