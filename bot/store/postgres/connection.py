"""PostgreSQL plumbing: the asyncpg pool, transactions, errors, migrations and owner liveness.

Several bot processes (shards, on one host or many) and offline commands share one database, so
what one SQLite process keeps in memory is kept by the database here:

- A job's owner (``bot.owner``: host, boot, pid, start time, token) is alive while its store
  holds the owner's session-level advisory lock on a connection of its own. A killed process's
  connection drops and PostgreSQL releases the lock, so ``orphaned_jobs`` finds exactly the
  jobs whose process is gone, from any host (``pg_locks`` is the same everywhere).
- Writes that must not race across processes lock the channel's row first (``FOR UPDATE``):
  one training at a time per channel, the next model version number, the activation.

Connections come from an asyncpg pool: a connection the server dropped fails that request with
``StorageUnavailable`` (a clear message, nothing changed) and the pool opens a new one for the
next. The password is never logged: ``redact_url`` hides it in every message.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

from bot.core.store import now_iso
from bot.errors import Busy, StorageError, StorageUnavailable
from bot.owner import new_owner
from bot.store.urls import redact_url

try:  # an optional extra: pip install 'fabulist[postgres]'
    import asyncpg
except ImportError:  # pragma: no cover - exercised only without the extra
    asyncpg = None

logger = logging.getLogger(__name__)

_MIGRATION = re.compile(r"^-- migration (\d+)\s*$", re.MULTILINE)
# Advisory lock keys: (namespace, key). The namespace spells "fabu"; key 0 guards migrations.
LOCK_NAMESPACE = 0x66616275
_MIGRATION_KEY = 0
LOST_CONNECTION_MESSAGE = (
    "I lost my connection to the database, so nothing was changed. Please try again in a moment."
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


def load_postgres_migrations(text: str | None = None) -> list[tuple[int, str]]:
    """Split schema.sql into (version, sql) pairs numbered 1, 2, 3..."""
    if text is None:
        text = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    parts = _MIGRATION.split(text)
    migrations = [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts), 2)]
    for expected, (version, _) in enumerate(migrations, start=1):
        if version != expected:
            raise StorageError(
                f"postgres schema.sql: migration {version} found where {expected} expected"
            )
    return migrations


def owner_lock_key(owner: str) -> int:
    """The signed 32-bit advisory-lock key of a job owner (never 0: that is the migrations')."""
    digest = int.from_bytes(hashlib.sha256(owner.encode()).digest()[:4], "big", signed=True)
    return digest or 1


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


class PostgresBase:
    """The pool and its helpers; the aggregates' mixins build on it."""

    _open_owners: ClassVar[set[str]] = set()

    def __init__(self, pool: Any, url: str) -> None:
        self.owner = new_owner()
        PostgresBase._open_owners.add(self.owner)
        self._pool = pool
        self.url = url
        self.path = redact_url(url)  # what messages name (the SQLite store's file path)
        self._owner_connection: Any = None
        self._owner_lock = asyncio.Lock()
        # A server that refuses writes answers each one with StorageUnavailable instead.
        self.read_only = False

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 8) -> Self:
        """Connect, migrate (once, whatever the number of processes starting) and hold the
        owner lock. StorageError names the database without its password."""
        pg = _require_asyncpg()
        try:
            pool = await pg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                command_timeout=60,
                server_settings=session_settings(url),
            )
        except Exception as exc:
            raise StorageError(
                f"cannot connect to {redact_url(url)}: {describe_error(exc)}"
            ) from None
        store = cls(pool, url)
        try:
            await store._migrate()
            await store._hold_owner_lock()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        PostgresBase._open_owners.discard(self.owner)
        async with self._owner_lock:
            if self._owner_connection is not None:
                connection, self._owner_connection = self._owner_connection, None
                try:
                    await connection.close()
                except Exception:
                    connection.terminate()
        await self._pool.close()

    async def _hold_owner_lock(self) -> None:
        """Hold this store's owner lock on a connection of its own (reconnecting if it dropped)."""
        async with self._owner_lock:
            if self._owner_connection is not None and not self._owner_connection.is_closed():
                return
            pg = _require_asyncpg()
            try:
                connection = await pg.connect(self.url, server_settings=session_settings(self.url))
                await connection.execute(
                    "SELECT pg_advisory_lock($1, $2)", LOCK_NAMESPACE, owner_lock_key(self.owner)
                )
            except Exception as exc:
                if _connection_lost(exc):
                    raise StorageUnavailable(LOST_CONNECTION_MESSAGE) from exc
                raise
            self._owner_connection = connection

    async def _migrate(self) -> None:
        migrations = load_postgres_migrations()
        latest = migrations[-1][0]
        async with self._pool.acquire() as db, db.transaction():
            # Serializes concurrent start-ups; released at the end of the transaction.
            await db.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_NAMESPACE, _MIGRATION_KEY)
            await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = await db.fetchval("SELECT max(version) FROM schema_version")
            if current is None:
                current = 0
                await db.execute("INSERT INTO schema_version (version) VALUES (0)")
            if current > latest:
                raise StorageError(
                    f"database {self.path} has schema version {current}, newer than this "
                    f"fabulist's {latest}; upgrade fabulist"
                )
            for version, sql in migrations:
                if version <= current:
                    continue
                logger.info("migrating %s to schema version %d", self.path, version)
                try:
                    async with db.transaction():  # a savepoint: the error names the migration
                        await db.execute(sql)
                        await db.execute("UPDATE schema_version SET version = $1", version)
                except asyncpg.PostgresError as exc:
                    raise StorageError(f"migration {version} of {self.path} failed: {exc}") from exc

    async def schema_version(self) -> int:
        async with self._read() as db:
            return int(await db.fetchval("SELECT max(version) FROM schema_version"))

    async def integrity_check(self) -> str:
        """'ok', or the invariants the data breaks (PostgreSQL checks its own pages)."""
        checks = {
            "a channel's active model belongs to another channel": (
                "SELECT count(*) FROM channels c JOIN models m ON m.id = c.active_model_id "
                "WHERE m.channel_id <> c.channel_id"
            ),
            "a model version above its channel's last version": (
                "SELECT count(*) FROM models m JOIN channels c ON c.channel_id = m.channel_id "
                "WHERE m.version > c.last_version"
            ),
            "a model learned another channel's story": (
                "SELECT count(*) FROM model_stories ms JOIN models m ON m.id = ms.model_id "
                "JOIN stories s ON s.id = ms.story_id WHERE s.channel_id <> m.channel_id"
            ),
            "a done job without its finish time": (
                "SELECT count(*) FROM jobs WHERE state = 'done' AND finished_at IS NULL"
            ),
        }
        problems = []
        async with self._read() as db:
            for what, sql in checks.items():
                count = int(await db.fetchval(sql))
                if count:
                    problems.append(f"{what} ({count})")
        return "; ".join(problems) or "ok"

    async def checkpoint(self) -> None:
        """SQLite's WAL checkpoint; PostgreSQL's autovacuum reclaims deleted rows itself."""

    # -- connections -----------------------------------------------------------------------

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Any]:
        try:
            async with self._pool.acquire() as db:
                yield db
        except Exception as exc:
            raise self._translate(exc) from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        try:
            await self._hold_owner_lock()  # re-held at once if the server dropped it
            async with self._pool.acquire() as db, db.transaction():
                yield db
        except Exception as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, StorageError | Busy):
            return exc
        if _connection_lost(exc):
            logger.error("lost the connection to %s: %s", self.path, describe_error(exc))
            return StorageUnavailable(LOST_CONNECTION_MESSAGE)
        if _refused_write(exc):
            logger.error("database %s refused a write: %s", self.path, describe_error(exc))
            return StorageUnavailable(UNAVAILABLE_MESSAGE)
        return exc

    async def _live_owners(self, db: Any, owners: Sequence[str | None]) -> set[str]:
        """Those of ``owners`` whose advisory lock some session holds now (any host)."""
        await self._hold_owner_lock()
        named = sorted({o for o in owners if o})
        if not named:
            return set()
        held = {
            int(row["objid"])
            for row in await db.fetch(
                "SELECT objid::bigint AS objid FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND classid = $1::bigint::oid AND objsubid = 2 "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                LOCK_NAMESPACE,
            )
        }
        # pg_locks shows a signed int4 key as its unsigned 32-bit pattern
        return {o for o in named if (owner_lock_key(o) & 0xFFFFFFFF) in held}

    async def _ensure_channel(
        self, db: Any, channel_id: int, guild_id: int | None, name: str | None
    ) -> None:
        """Create or update the channel's row, which locks it until the transaction ends."""
        await db.execute(
            "INSERT INTO channels (channel_id, guild_id, name, created_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (channel_id) DO UPDATE SET "
            "name = coalesce(excluded.name, channels.name), "
            "guild_id = coalesce(channels.guild_id, excluded.guild_id)",
            channel_id,
            guild_id,
            name,
            now_iso(),
        )
