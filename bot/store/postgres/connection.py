"""PostgreSQL plumbing: the asyncpg pool, transactions, errors, migrations and owner liveness.

Several bot processes (shards, on one host or many) and offline commands share one database, so
what one SQLite process keeps in memory is kept by the database here:

- A job's owner (``bot.owner``: host, boot, pid, start time, token) is alive while its store
  holds the owner's advisory lock or renews its lease (``owners.py``), so ``orphaned_jobs``
  finds the jobs whose process is gone, from any host, and a database restart interrupts none.
- Writes that must not race across processes lock the channel's row first (``FOR UPDATE``):
  one training at a time per channel, the next model version number, the activation.

Connections come from an asyncpg pool: a connection the server dropped fails that request with
``StorageUnavailable`` (a clear message, nothing changed) and the pool opens a new one for the
next. Every wait is bounded by ``timeout`` (``storage.timeout_seconds``): connecting, a free
connection of the pool, each command; a server that does not answer (frozen, unreachable) fails
the request with ``StorageUnavailable`` in that time. The password is never logged:
``redact_url`` hides it in every message.

The aggregates' statements (``bot.store.aggregates``) run on a pool connection wrapped in
``PostgresConnection``; the schema is Alembic's chain (``bot.store.schema``), run at open on a
connection of its own through SQLAlchemy's asyncpg dialect, under an advisory lock.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bot.config import StorageConfig
from bot.errors import Busy, StorageError, StorageUnavailable
from bot.owner import new_owner
from bot.store.base import StoreBase
from bot.store.postgres.owners import LOCK_NAMESPACE, OwnerLease, live_owners
from bot.store.schema.legacy import LATEST
from bot.store.schema.upgrade import head, upgrade
from bot.store.sql import Connection, Sql
from bot.store.url_password import redact_url

try:  # an optional extra: pip install 'fabulist[postgres]'
    import asyncpg
except ImportError:  # pragma: no cover - exercised only without the extra
    asyncpg = None

logger = logging.getLogger(__name__)

# The advisory lock (LOCK_NAMESPACE, 0) guards migrations; released at the transaction's end.
MIGRATION_LOCK = f"SELECT pg_advisory_xact_lock({LOCK_NAMESPACE}, 0)"
# A migration may rewrite a large table: bounded, but far longer than a request.
_MIGRATION_TIMEOUT = 600.0
_DEFAULTS = StorageConfig()
# Statements moving a model's blob or whole story texts (tens of MB): a slow link may need far
# longer than a request's timeout_seconds.
BULK_TIMEOUT = 120.0
LOST_CONNECTION_MESSAGE = (
    "I lost my connection to the database, so nothing was changed. Please try again in a moment."
)
NOT_ANSWERING_MESSAGE = (
    "The database is not answering right now, so nothing was changed. Please try again in a "
    "moment, or tell the bot's operator if it goes on."
)
UNAVAILABLE_MESSAGE = (
    "I cannot save anything right now (my storage is full or read-only), so nothing was "
    "changed. Please tell the bot's operator."
)


def session_settings(url: str) -> dict[str, str]:
    """Session settings unless the URL sets them (``?synchronous_commit=on``).

    ``synchronous_commit=off`` is the durability of the SQLite default (WAL with
    ``synchronous=NORMAL``): an application crash loses nothing and nothing is ever corrupted;
    an operating-system crash may lose the last fraction of a second of commits. A commit then
    does not wait for the WAL's fsync (several ms on a disk). Add ``?synchronous_commit=on`` to
    the URL to wait for it.
    """
    settings = {"application_name": "fabulist"}
    if "synchronous_commit" not in parse_qs(urlsplit(url).query):
        settings["synchronous_commit"] = "off"
    return settings


def _require_asyncpg() -> Any:
    if asyncpg is None:
        raise StorageError(
            "a postgresql:// storage.url needs asyncpg: pip install 'fabulist[postgres]'"
        )
    return asyncpg


def _connection_lost(exc: BaseException) -> bool:
    if asyncpg is None:
        return False
    return isinstance(
        exc,
        asyncpg.exceptions.ConnectionDoesNotExistError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.ConnectionFailureError
        | asyncpg.exceptions.InterfaceError
        | ConnectionError
        | OSError,
    )


def _refused_write(exc: BaseException) -> bool:
    if asyncpg is None:
        return False
    return isinstance(
        exc,
        asyncpg.exceptions.DiskFullError
        | asyncpg.exceptions.ReadOnlySQLTransactionError
        | asyncpg.exceptions.InsufficientResourcesError
        | asyncpg.exceptions.PostgresIOError,
    )


@asynccontextmanager
async def _abandoned_on_timeout(db: Any) -> AsyncIterator[None]:
    """A command that timed out closes its connection at once: rolling back or handing it back
    to the pool would wait for a server that does not answer (asyncpg cancels, then waits)."""
    try:
        yield
    except TimeoutError:
        db.terminate()
        raise


def _timed_out(exc: BaseException) -> bool:
    """A timeout, or what failed after one (the rollback on the connection it closed)."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:  # a chain may loop
        chain.append(link)
        link = link.__cause__ or link.__context__
    return any(isinstance(link, TimeoutError) for link in chain)


def describe_error(exc: BaseException) -> str:
    """An error's text without a connection string's password."""
    text = str(exc) or type(exc).__name__
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def rowcount(status: str) -> int:
    """The row count of an asyncpg command status such as ``DELETE 3``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, IndexError):
        return 0


SCHEMA_VERSION = Sql("SELECT max(version) FROM schema_version")
# Whether the database is at the chain's head already (the second only once both tables exist).
SCHEMA_TABLES = Sql(
    "SELECT to_regclass('schema_version') IS NOT NULL "
    "AND to_regclass('alembic_version') IS NOT NULL"
)
AT_HEAD = Sql(
    "SELECT (SELECT max(version) FROM schema_version) = :latest "
    "AND (SELECT version_num FROM alembic_version) = :head"
)
# The invariants of the data (PostgreSQL checks its own pages).
INTEGRITY_CHECKS = {
    "a channel's active model belongs to another channel": Sql(
        "SELECT count(*) FROM channels c JOIN models m ON m.id = c.active_model_id "
        "WHERE m.channel_id <> c.channel_id"
    ),
    "a model version above its channel's last version": Sql(
        "SELECT count(*) FROM models m JOIN channels c ON c.channel_id = m.channel_id "
        "WHERE m.version > c.last_version"
    ),
    "a model learned another channel's story": Sql(
        "SELECT count(*) FROM model_stories ms JOIN models m ON m.id = ms.model_id "
        "JOIN stories s ON s.id = ms.story_id WHERE s.channel_id <> m.channel_id"
    ),
    "a done job without its finish time": Sql(
        "SELECT count(*) FROM jobs WHERE state = 'done' AND finished_at IS NULL"
    ),
}


class PostgresConnection(Connection):
    """One asyncpg connection of the pool, running ``Sql`` statements."""

    dialect = "postgresql"

    def __init__(self, db: Any) -> None:
        self.db = db

    def ids(self, values: Iterable[int]) -> list[int]:
        return [int(v) for v in values]

    async def fetch(self, statement: Sql, /, *, bulk: bool = False, **params: Any) -> list[Any]:
        sql, args = self.bind(statement, params)
        return list(await self.db.fetch(sql, *args, timeout=BULK_TIMEOUT if bulk else None))

    async def fetchrow(self, statement: Sql, /, *, bulk: bool = False, **params: Any) -> Any:
        sql, args = self.bind(statement, params)
        return await self.db.fetchrow(sql, *args, timeout=BULK_TIMEOUT if bulk else None)

    async def fetchval(self, statement: Sql, /, *, bulk: bool = False, **params: Any) -> Any:
        sql, args = self.bind(statement, params)
        return await self.db.fetchval(sql, *args, timeout=BULK_TIMEOUT if bulk else None)

    async def execute(self, statement: Sql, /, *, bulk: bool = False, **params: Any) -> int:
        sql, args = self.bind(statement, params)
        return rowcount(await self.db.execute(sql, *args, timeout=BULK_TIMEOUT if bulk else None))

    async def executemany(self, statement: Sql, rows: Iterable[Mapping[str, Any]]) -> None:
        sql, names = statement.compiled(self.dialect)
        await self.db.executemany(sql, [[row[n] for n in names] for row in rows])


class PostgresBase(StoreBase):
    """The pool and its helpers; the aggregates' mixins build on it."""

    _open_owners: ClassVar[set[str]] = set()

    def __init__(self, pool: Any, url: str, *, timeout: float, lease_seconds: float) -> None:
        self.owner = new_owner()
        PostgresBase._open_owners.add(self.owner)
        self._pool = pool
        self.url = url
        self.path = redact_url(url)  # what messages name (the SQLite store's file path)
        self.timeout = timeout
        self._lease = OwnerLease(
            self.owner, self._connect, lease_seconds=lease_seconds, timeout=timeout
        )
        # A server that refuses writes answers each one with StorageUnavailable instead.
        self.read_only = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = _DEFAULTS.timeout_seconds,  # noqa: ASYNC109 - asyncpg's, per wait
        lease_seconds: float = _DEFAULTS.owner_lease_seconds,
    ) -> Self:
        """Connect, migrate (once, whatever the number of processes starting) and keep the
        owner alive. StorageError names the database without its password."""
        pg = _require_asyncpg()
        try:
            pool = await pg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout,  # connecting
                command_timeout=timeout,
                server_settings=session_settings(url),
            )
        except Exception as exc:
            raise StorageError(
                f"cannot connect to {redact_url(url)}: {describe_error(exc)}"
            ) from None
        store = cls(pool, url, timeout=timeout, lease_seconds=lease_seconds)
        try:
            await store._migrate()
            await store._lease.start()
        except BaseException as exc:
            await store.close()
            if isinstance(exc, StorageError) or not isinstance(exc, Exception):
                raise
            raise StorageError(f"cannot open {store.path}: {describe_error(exc)}") from exc
        return store

    async def close(self) -> None:
        PostgresBase._open_owners.discard(self.owner)
        await self._lease.close()
        try:
            await asyncio.wait_for(self._pool.close(), self.timeout)
        except TimeoutError:
            self._pool.terminate()

    async def _connect(self) -> Any:
        """A connection of its own (the owner lease's), bounded like the pool's."""
        return await _require_asyncpg().connect(
            self.url,
            timeout=self.timeout,
            command_timeout=self.timeout,
            server_settings=session_settings(self.url),
        )

    async def _migrate(self) -> None:
        """Alembic's chain (``bot.store.schema``) in one transaction on a connection of its own
        (SQLAlchemy's asyncpg dialect), under the advisory lock that serializes concurrent
        start-ups: whatever the number of processes starting, the database migrates once. A
        database at the head already is only read, on the pool (no second connection, no lock)."""
        if await self._current():
            return

        async def connect() -> Any:
            return await _require_asyncpg().connect(
                self.url,
                timeout=self.timeout,
                command_timeout=_MIGRATION_TIMEOUT,  # a migration may rewrite a large table
                server_settings=session_settings(self.url),
            )

        engine = create_async_engine(
            "postgresql+asyncpg://", async_creator=connect, poolclass=NullPool
        )
        try:
            async with engine.begin() as connection:
                await connection.exec_driver_sql(MIGRATION_LOCK)
                await connection.run_sync(upgrade, self.path)
        finally:
            await engine.dispose()

    async def _current(self) -> bool:
        async with self._read() as db:
            if not await db.fetchval(SCHEMA_TABLES):
                return False
            return bool(await db.fetchval(AT_HEAD, latest=LATEST, head=head()))

    async def schema_version(self) -> int:
        async with self._read() as db:
            return int(await db.fetchval(SCHEMA_VERSION))

    async def integrity_check(self) -> str:
        """'ok', or the invariants the data breaks (PostgreSQL checks its own pages)."""
        problems = []
        async with self._read() as db:
            for what, sql in INTEGRITY_CHECKS.items():
                count = int(await db.fetchval(sql))
                if count:
                    problems.append(f"{what} ({count})")
        return "; ".join(problems) or "ok"

    async def checkpoint(self) -> None:
        """SQLite's WAL checkpoint; PostgreSQL's autovacuum reclaims deleted rows itself."""

    # -- connections -----------------------------------------------------------------------

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Connection]:
        try:
            async with (
                self._pool.acquire(timeout=self.timeout) as db,
                _abandoned_on_timeout(db),
            ):
                yield PostgresConnection(db)
        except Exception as exc:
            raise self._translate(exc) from exc

    @asynccontextmanager
    async def _snapshot_read(self) -> AsyncIterator[Connection]:
        async with self._read() as db:
            assert isinstance(db, PostgresConnection)
            async with db.db.transaction(isolation="repeatable_read", readonly=True):
                yield db

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        try:
            async with (
                self._pool.acquire(timeout=self.timeout) as db,
                db.transaction(),
                _abandoned_on_timeout(db),
            ):
                yield PostgresConnection(db)
        except Exception as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, StorageError | Busy):
            return exc
        if _timed_out(exc):  # connecting, waiting for the pool or a command
            logger.error("database %s did not answer within %g s", self.path, self.timeout)
            return StorageUnavailable(NOT_ANSWERING_MESSAGE)
        if _connection_lost(exc):
            logger.error("lost the connection to %s: %s", self.path, describe_error(exc))
            return StorageUnavailable(LOST_CONNECTION_MESSAGE)
        if _refused_write(exc):
            logger.error("database %s refused a write: %s", self.path, describe_error(exc))
            return StorageUnavailable(UNAVAILABLE_MESSAGE)
        return exc

    async def _live_owners(self, db: Connection, owners: Sequence[str | None]) -> set[str]:
        """Those of ``owners`` still alive, on whatever host (``owners.live_owners``)."""
        assert isinstance(db, PostgresConnection)
        return await live_owners(db.db, owners, PostgresBase._open_owners)
