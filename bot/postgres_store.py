"""PostgreSQL storage (asyncpg): the same store as ``bot.storage.StoryStore``, shared by processes.

Several bot processes (shards, on one host or many) and offline commands share one database, so
every guarantee that a single SQLite process keeps in memory is kept by the database here:

- One training at a time per channel: the unique index ``jobs_one_open_per_channel`` refuses a
  second queued/running job whatever process asks (``Busy``); a blocking job whose owner is gone
  is interrupted on the spot.
- A job's owner (``bot.owner``: host, boot, pid, start time, token) is alive while its store holds
  the owner's session-level advisory lock on its own connection. A killed process's connection
  drops and PostgreSQL releases the lock, so a restart on any host interrupts only the jobs whose
  owner truly is gone; ``pg_locks`` answers the same on every host.
- Job claiming (``start_job``) and orphan interruption lock the rows with
  ``FOR UPDATE SKIP LOCKED``: two processes never both take the same queued job.
- A new model becomes active in one transaction (``activate_model``), as in SQLite; the channel
  row is locked first so concurrent commits of one channel serialize.

Connections come from an asyncpg pool: a connection the server dropped mid-request fails that
request with ``StorageUnavailable`` (a clear message, nothing changed) and the pool opens a new
one for the next. The password is never logged: ``redact_url`` hides it in every message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

from bot.errors import Busy, StorageError, StorageUnavailable
from bot.owner import new_owner
from bot.storage import (
    FINAL_STATES,
    ChannelRecord,
    ChannelSnapshot,
    ImportedStory,
    JobRecord,
    ModelRecord,
    NewModel,
    NewStory,
    StoryDeletion,
    StoryRecord,
    _job,
    _model,
    now_iso,
)

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


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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
    """Split schema_postgres.sql into (version, sql) pairs numbered 1, 2, 3..."""
    if text is None:
        text = resources.files("bot").joinpath("schema_postgres.sql").read_text(encoding="utf-8")
    parts = _MIGRATION.split(text)
    migrations = [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts), 2)]
    for expected, (version, _) in enumerate(migrations, start=1):
        if version != expected:
            raise StorageError(
                f"schema_postgres.sql: migration {version} found where {expected} expected"
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


class PostgresStore:
    """A pool of connections to one PostgreSQL database. ``await PostgresStore.open(url)``."""

    _open_owners: ClassVar[set[str]] = set()

    def __init__(self, pool: Any, url: str) -> None:
        self.owner = new_owner()
        PostgresStore._open_owners.add(self.owner)
        self._pool = pool
        self.url = url
        self.path = redact_url(url)  # what messages name (the SQLite store's file path)
        self._owner_connection: Any = None
        self._owner_lock = asyncio.Lock()
        # A server that refuses writes answers each one with StorageUnavailable instead.
        self.read_only = False

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 8) -> PostgresStore:
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
            raise StorageError(f"cannot connect to {redact_url(url)}: {_describe(exc)}") from None
        store = cls(pool, url)
        try:
            await store._migrate()
            await store._hold_owner_lock()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        PostgresStore._open_owners.discard(self.owner)
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
            "two open jobs in one channel": (
                "SELECT count(*) FROM (SELECT channel_id FROM jobs WHERE state IN "
                "('queued', 'running') GROUP BY channel_id HAVING count(*) > 1) t"
            ),
        }
        problems = []
        async with self._read() as db:
            for what, sql in checks.items():
                count = int(await db.fetchval(sql))
                if count:
                    problems.append(f"{what} ({count})")
        return "; ".join(problems) or "ok"

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
            logger.error("lost the connection to %s: %s", self.path, _describe(exc))
            return StorageUnavailable(LOST_CONNECTION_MESSAGE)
        if _refused_write(exc):
            logger.error("database %s refused a write: %s", self.path, _describe(exc))
            return StorageUnavailable(UNAVAILABLE_MESSAGE)
        return exc

    async def checkpoint(self) -> None:
        """SQLite's WAL checkpoint; PostgreSQL's autovacuum reclaims deleted rows itself."""

    # -- liveness --------------------------------------------------------------------------

    async def _live_owners(self, db: Any, owners: Sequence[str | None]) -> set[str]:
        """Those of ``owners`` whose advisory lock some session holds now (any host)."""
        await self._hold_owner_lock()
        named = sorted({o for o in owners if o})
        if not named:
            return set()
        keys = [owner_lock_key(o) for o in named]
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
        return {o for o, k in zip(named, keys, strict=True) if (k & 0xFFFFFFFF) in held}

    # -- channels --------------------------------------------------------------------------

    async def _ensure_channel(
        self, db: Any, channel_id: int, guild_id: int | None, name: str | None
    ) -> None:
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

    async def forget_channel(self, channel_id: int) -> bool:
        async with self._transaction() as db:
            status = await db.execute("DELETE FROM channels WHERE channel_id = $1", channel_id)
        return _rowcount(status) > 0

    # -- stories ---------------------------------------------------------------------------

    async def add_story_and_job(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        channel_name: str | None,
        story: NewStory,
        append: bool,
        requested_by: int | None,
        requested_by_name: str | None,
        options: dict[str, Any],
    ) -> JobRecord:
        """Store an uploaded story and queue its training job, in one transaction.

        Raises ``Busy`` if another process has a training of the channel queued or running.
        """
        async with self._transaction() as db:
            await self._ensure_channel(db, channel_id, guild_id, channel_name)
            await db.execute("SELECT 1 FROM channels WHERE channel_id = $1 FOR UPDATE", channel_id)
            await self._refuse_second_job(db, channel_id)
            story_id = await self._insert_story(db, channel_id, story, now_iso())
            if append:
                rows = await db.fetch(
                    "SELECT id FROM stories WHERE channel_id = $1 ORDER BY id", channel_id
                )
                story_ids = [int(row["id"]) for row in rows]
            else:
                story_ids = [story_id]
            job_id = await self._insert_job(
                db, channel_id, guild_id, requested_by, requested_by_name, story_ids, options
            )
            row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        assert row is not None
        return _job(row)

    async def _refuse_second_job(self, db: Any, channel_id: int) -> None:
        """Inside a transaction holding the channel row: Busy if a live job is open."""
        row = await db.fetchrow(
            "SELECT id, state, owner FROM jobs WHERE channel_id = $1 "
            "AND state IN ('queued', 'running') FOR UPDATE",
            channel_id,
        )
        if row is None:
            return
        if row["owner"] in await self._live_owners(db, [row["owner"]]):
            raise Busy(
                f"This channel already has a training (job #{row['id']}, {row['state']} in "
                "another fabulist process). Wait for it or cancel it first.",
                int(row["id"]),
                None,
            )
        logger.warning(
            "job %d (channel %d): its process is gone; interrupted", row["id"], channel_id
        )
        await db.execute(
            "UPDATE jobs SET state = 'interrupted', finished_at = $1, "
            "error = 'The process running this training stopped before it finished.' "
            "WHERE id = $2",
            now_iso(),
            row["id"],
        )

    async def _insert_story(
        self, db: Any, channel_id: int, story: NewStory, created_at: str
    ) -> int:
        return int(
            await db.fetchval(
                "INSERT INTO stories (channel_id, filename, uploader_id, uploader_name, text, "
                "sha256, encoding, bytes, symbols, vocabulary_size, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                channel_id,
                story.filename,
                story.uploader_id,
                story.uploader_name,
                story.text,
                story.sha256,
                story.encoding,
                story.bytes,
                story.symbols,
                story.vocabulary_size,
                created_at,
            )
        )

    async def list_stories(self, channel_id: int) -> list[StoryRecord]:
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT id, channel_id, filename, uploader_id, uploader_name, sha256, encoding, "
                "bytes, symbols, vocabulary_size, created_at FROM stories "
                "WHERE channel_id = $1 ORDER BY id",
                channel_id,
            )
        return [StoryRecord(**dict(row)) for row in rows]

    async def story_texts(self, story_ids: Sequence[int]) -> list[str]:
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT id, text FROM stories WHERE id = ANY($1::bigint[])", list(story_ids)
            )
        texts = {int(row["id"]): str(row["text"]) for row in rows}
        for story_id in story_ids:
            if story_id not in texts:
                raise StorageError(f"story {story_id} no longer exists")
        return [texts[story_id] for story_id in story_ids]

    async def story(self, channel_id: int, story_id: int) -> StoryRecord | None:
        async with self._read() as db:
            row = await db.fetchrow(
                "SELECT id, channel_id, filename, uploader_id, uploader_name, sha256, encoding, "
                "bytes, symbols, vocabulary_size, created_at FROM stories "
                "WHERE id = $1 AND channel_id = $2",
                story_id,
                channel_id,
            )
        return None if row is None else StoryRecord(**dict(row))

    async def delete_story(
        self,
        channel_id: int,
        story_id: int,
        *,
        guild_id: int | None,
        retrain_options: dict[str, Any],
        requested_by: int | None,
        requested_by_name: str | None,
    ) -> StoryDeletion | None:
        """Remove a story and its models; fall back and queue a retraining, in one transaction.

        The same rules as ``StoryStore.delete_story``.
        """
        async with self._transaction() as db:
            await db.execute("SELECT 1 FROM channels WHERE channel_id = $1 FOR UPDATE", channel_id)
            row = await db.fetchrow(
                "SELECT id, channel_id, filename, uploader_id, uploader_name, sha256, encoding, "
                "bytes, symbols, vocabulary_size, created_at FROM stories "
                "WHERE id = $1 AND channel_id = $2",
                story_id,
                channel_id,
            )
            if row is None:
                return None
            story = StoryRecord(**dict(row))
            active_row = await db.fetchrow(
                "SELECT * FROM model_info WHERE channel_id = $1 AND active", channel_id
            )
            active = None if active_row is None else _model(active_row)
            rows = await db.fetch(
                "SELECT m.id, m.version FROM models m JOIN model_stories ms ON ms.model_id = m.id "
                "WHERE ms.story_id = $1 ORDER BY m.version",
                story_id,
            )
            model_ids = [int(r["id"]) for r in rows]
            versions = tuple(int(r["version"]) for r in rows)
            await db.execute("DELETE FROM models WHERE id = ANY($1::bigint[])", model_ids)
            await db.execute("DELETE FROM stories WHERE id = $1", story_id)
            active_deleted = active is not None and active.id in model_ids
            fallback: int | None = None
            if active_deleted:
                fallback_row = await db.fetchrow(
                    "SELECT id, version FROM models WHERE channel_id = $1 "
                    "ORDER BY version DESC LIMIT 1",
                    channel_id,
                )
                if fallback_row is not None:
                    fallback = int(fallback_row["version"])
                    await db.execute(
                        "UPDATE channels SET active_model_id = $1 WHERE channel_id = $2",
                        fallback_row["id"],
                        channel_id,
                    )
            else:
                fallback = None if active is None else active.version
            retrain: list[int] = []
            if active_deleted and active is not None:
                retrain = [i for i in active.story_ids if i != story_id]
                if not retrain and fallback is None:
                    newest = await db.fetchval(
                        "SELECT max(id) FROM stories WHERE channel_id = $1", channel_id
                    )
                    retrain = [] if newest is None else [int(newest)]
            job: JobRecord | None = None
            if retrain:
                await self._refuse_second_job(db, channel_id)
                job_id = await self._insert_job(
                    db,
                    channel_id,
                    guild_id,
                    requested_by,
                    requested_by_name,
                    retrain,
                    {
                        **retrain_options,
                        "reason": f"retraining after story #{story_id} "
                        f"({story.filename}) was removed",
                    },
                )
                job_row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
                assert job_row is not None
                job = _job(job_row)
        return StoryDeletion(story, versions, fallback, job)

    async def snapshot(self, channel_id: int) -> ChannelSnapshot | None:
        """The active model, its blob and every story with its text, read at one instant."""
        async with self._transaction() as db:
            await db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            channel_row = await db.fetchrow(
                "SELECT channel_id, guild_id, name, active_model_id, created_at FROM channels "
                "WHERE channel_id = $1",
                channel_id,
            )
            model_row = await db.fetchrow(
                "SELECT * FROM model_info WHERE channel_id = $1 AND active", channel_id
            )
            if channel_row is None or model_row is None:
                return None
            blob = await db.fetchval("SELECT blob FROM models WHERE id = $1", model_row["id"])
            rows = await db.fetch(
                "SELECT id, channel_id, filename, uploader_id, uploader_name, sha256, encoding, "
                "bytes, symbols, vocabulary_size, created_at, text FROM stories "
                "WHERE channel_id = $1 ORDER BY id",
                channel_id,
            )
        stories = []
        for row in rows:
            values = dict(row)
            text = str(values.pop("text"))
            stories.append((StoryRecord(**values), text))
        return ChannelSnapshot(
            ChannelRecord(**dict(channel_row)), _model(model_row), bytes(blob), tuple(stories)
        )

    async def import_channel(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        channel_name: str | None,
        stories: Sequence[ImportedStory],
        model_story_positions: Sequence[int],
        model: NewModel,
        requested_by: int | None,
        requested_by_name: str | None,
        max_stories: int,
        keep_versions: int,
    ) -> tuple[JobRecord, ModelRecord, tuple[int, ...]]:
        """Add imported stories and make their model the active new version, in one transaction."""
        async with self._transaction() as db:
            await self._ensure_channel(db, channel_id, guild_id, channel_name)
            await db.execute("SELECT 1 FROM channels WHERE channel_id = $1 FOR UPDATE", channel_id)
            held = int(
                await db.fetchval("SELECT count(*) FROM stories WHERE channel_id = $1", channel_id)
            )
            if held + len(stories) > max_stories:
                raise StorageError(
                    f"this channel holds {held} stories and the file {len(stories)}; "
                    f"the limit is {max_stories}"
                )
            await self._refuse_second_job(db, channel_id)
            story_ids = [
                await self._insert_story(db, channel_id, imported.story, imported.created_at)
                for imported in stories
            ]
            trained_on = [story_ids[i] for i in model_story_positions]
            job_id = await self._insert_job(
                db, channel_id, guild_id, requested_by, requested_by_name, trained_on, model.options
            )
            await db.execute(
                "UPDATE jobs SET state = 'running', started_at = $1 WHERE id = $2",
                now_iso(),
                job_id,
            )
            model_id = await self._insert_model(
                db,
                job_id=job_id,
                channel_id=channel_id,
                model=model,
                story_ids=trained_on,
                keep_versions=keep_versions,
            )
            model_row = await db.fetchrow("SELECT * FROM model_info WHERE id = $1", model_id)
            job_row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
            kept = {
                int(row["id"])
                for row in await db.fetch(
                    "SELECT id FROM stories WHERE channel_id = $1", channel_id
                )
            }
        assert model_row is not None and job_row is not None
        return _job(job_row), _model(model_row), tuple(i for i in story_ids if i in kept)

    # -- jobs ------------------------------------------------------------------------------

    async def _insert_job(
        self,
        db: Any,
        channel_id: int,
        guild_id: int | None,
        requested_by: int | None,
        requested_by_name: str | None,
        story_ids: Sequence[int],
        options: dict[str, Any],
    ) -> int:
        try:
            async with db.transaction():  # a savepoint: a refused insert leaves the rest usable
                return int(
                    await db.fetchval(
                        "INSERT INTO jobs (channel_id, guild_id, requested_by, "
                        "requested_by_name, state, story_ids, options, created_at, owner) "
                        "VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8) RETURNING id",
                        channel_id,
                        guild_id,
                        requested_by,
                        requested_by_name,
                        json.dumps(list(story_ids)),
                        json.dumps(options),
                        now_iso(),
                        self.owner,
                    )
                )
        except asyncpg.UniqueViolationError:
            # another process queued one between our check and this insert
            raise Busy(
                "This channel already has a training queued or running in another fabulist "
                "process. Wait for it or cancel it first.",
                0,
                None,
            ) from None

    async def job(self, job_id: int) -> JobRecord | None:
        async with self._read() as db:
            row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        return None if row is None else _job(row)

    async def jobs(self, channel_id: int, limit: int = 20) -> list[JobRecord]:
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT * FROM jobs WHERE channel_id = $1 ORDER BY id DESC LIMIT $2",
                channel_id,
                limit,
            )
        return [_job(row) for row in rows]

    async def open_jobs(self) -> list[JobRecord]:
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"
            )
        return [_job(row) for row in rows]

    async def start_job(self, job_id: int) -> None:
        """Claim a queued job for this process: ``FOR UPDATE SKIP LOCKED`` lets exactly one
        claimant through; the job's owner becomes this store's."""
        async with self._transaction() as db:
            claimed = await db.fetchval(
                "SELECT id FROM jobs WHERE id = $1 AND state = 'queued' FOR UPDATE SKIP LOCKED",
                job_id,
            )
            if claimed is not None:
                await db.execute(
                    "UPDATE jobs SET state = 'running', started_at = $1, owner = $2 WHERE id = $3",
                    now_iso(),
                    self.owner,
                    job_id,
                )

    async def update_job_progress(self, job_id: int, progress: dict[str, Any]) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET progress = $1 WHERE id = $2 AND state IN ('queued', 'running')",
                json.dumps(progress),
                job_id,
            )

    async def finish_job(self, job_id: int, state: str, error: str | None = None) -> None:
        if state not in FINAL_STATES or state == "done":
            raise ValueError(f"finish_job cannot set state {state!r}")
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET state = $1, error = $2, finished_at = $3 "
                "WHERE id = $4 AND state IN ('queued', 'running')",
                state,
                error,
                now_iso(),
                job_id,
            )

    async def mark_open_jobs_interrupted(self, message: str) -> list[JobRecord]:
        """Every open job, whatever its owner, becomes interrupted (an operator's reset)."""
        async with self._transaction() as db:
            rows = await db.fetch(
                "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY id FOR UPDATE"
            )
            await db.execute(
                "UPDATE jobs SET state = 'interrupted', error = $1, finished_at = $2 "
                "WHERE state IN ('queued', 'running')",
                message,
                now_iso(),
            )
        return [_job(row) for row in rows]

    async def interrupt_orphaned_jobs(self, message: str, kept_message: str) -> list[JobRecord]:
        """Interrupt the open jobs whose owner's advisory lock nobody holds (any host).

        Rows another process is handling right now are skipped (``SKIP LOCKED``).
        """
        async with self._transaction() as db:
            rows = await db.fetch(
                "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY id "
                "FOR UPDATE SKIP LOCKED"
            )
            live = await self._live_owners(db, [r["owner"] for r in rows])
            orphans = [r for r in rows if r["owner"] not in live]
            if orphans:
                await db.executemany(
                    "UPDATE jobs SET state = 'interrupted', finished_at = $1, error = CASE WHEN "
                    "(SELECT active_model_id FROM channels c WHERE c.channel_id = jobs.channel_id) "
                    "IS NULL THEN $2 ELSE $3 END WHERE id = $4",
                    [(now_iso(), message, kept_message, r["id"]) for r in orphans],
                )
        return [_job(row) for row in orphans]

    async def set_progress_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET progress_channel_id = $1, progress_message_id = $2 WHERE id = $3",
                channel_id,
                message_id,
                job_id,
            )

    async def clear_progress_message(self, job_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET progress_channel_id = NULL, progress_message_id = NULL "
                "WHERE id = $1",
                job_id,
            )

    async def stale_progress_messages(self) -> list[JobRecord]:
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT * FROM jobs WHERE progress_message_id IS NOT NULL "
                "AND state NOT IN ('queued', 'running') ORDER BY id"
            )
        return [_job(row) for row in rows]

    # -- models ----------------------------------------------------------------------------

    async def activate_model(
        self,
        *,
        job_id: int,
        channel_id: int,
        model: NewModel,
        story_ids: Sequence[int],
        keep_versions: int,
    ) -> ModelRecord:
        """Store a completely trained model and make it active, in one transaction."""
        async with self._transaction() as db:
            known = await db.fetchval(
                "SELECT 1 FROM channels WHERE channel_id = $1 FOR UPDATE", channel_id
            )
            if known is None:
                raise StorageError("the channel was forgotten while it trained")
            owners = await db.fetch(
                "SELECT id, channel_id FROM stories WHERE id = ANY($1::bigint[])", list(story_ids)
            )
            found = {int(r["id"]): int(r["channel_id"]) for r in owners}
            if any(found.get(story_id) != channel_id for story_id in story_ids):
                raise StorageError("a story was removed while the model trained on it")
            model_id = await self._insert_model(
                db,
                job_id=job_id,
                channel_id=channel_id,
                model=model,
                story_ids=story_ids,
                keep_versions=keep_versions,
            )
            row = await db.fetchrow("SELECT * FROM model_info WHERE id = $1", model_id)
        assert row is not None
        return _model(row)

    async def _insert_model(
        self,
        db: Any,
        *,
        job_id: int,
        channel_id: int,
        model: NewModel,
        story_ids: Sequence[int],
        keep_versions: int,
    ) -> int:
        """Inside a transaction holding the channel row: insert, activate, finish job, prune."""
        version = 1 + int(
            await db.fetchval(
                "SELECT greatest(c.last_version, coalesce((SELECT max(version) FROM models "
                "WHERE channel_id = c.channel_id), 0)) FROM channels c WHERE c.channel_id = $1",
                channel_id,
            )
        )
        await db.execute(
            "UPDATE channels SET last_version = $1 WHERE channel_id = $2", version, channel_id
        )
        model_id = int(
            await db.fetchval(
                "INSERT INTO models (channel_id, version, config, vocabulary, blob, figures, "
                "options, job_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                "RETURNING id",
                channel_id,
                version,
                json.dumps(model.config),
                json.dumps(list(model.vocabulary)),
                bytes(model.blob),
                json.dumps(model.figures),
                json.dumps(model.options),
                job_id,
                now_iso(),
            )
        )
        await db.executemany(
            "INSERT INTO model_stories (model_id, story_id, position) VALUES ($1, $2, $3)",
            [(model_id, story_id, pos) for pos, story_id in enumerate(story_ids)],
        )
        await db.execute(
            "UPDATE channels SET active_model_id = $1 WHERE channel_id = $2", model_id, channel_id
        )
        await db.execute(
            "UPDATE jobs SET state = 'done', model_id = $1, error = NULL, finished_at = $2 "
            "WHERE id = $3",
            model_id,
            now_iso(),
            job_id,
        )
        await self._prune(db, channel_id, keep_versions)
        return model_id

    async def _prune(self, db: Any, channel_id: int, keep_versions: int) -> None:
        """As ``StoryStore._prune``: drop old versions, then the stories nothing needs."""
        await db.execute(
            "DELETE FROM models WHERE channel_id = $1 "
            "AND id IS DISTINCT FROM (SELECT active_model_id FROM channels WHERE channel_id = $1) "
            "AND version NOT IN (SELECT version FROM models WHERE channel_id = $1 "
            "                    ORDER BY version DESC LIMIT $2)",
            channel_id,
            keep_versions,
        )
        await db.execute(
            "DELETE FROM stories WHERE channel_id = $1 "
            "AND id NOT IN (SELECT ms.story_id FROM model_stories ms "
            "               JOIN models m ON m.id = ms.model_id WHERE m.channel_id = $1) "
            "AND id NOT IN (SELECT j.value::bigint FROM jobs, json_array_elements_text("
            "               jobs.story_ids) j WHERE jobs.channel_id = $1 "
            "               AND jobs.state IN ('queued', 'running'))",
            channel_id,
        )

    async def active_model(self, channel_id: int) -> ModelRecord | None:
        async with self._read() as db:
            row = await db.fetchrow(
                "SELECT * FROM model_info WHERE channel_id = $1 AND active", channel_id
            )
        return None if row is None else _model(row)

    async def active_model_id(self, channel_id: int) -> int | None:
        async with self._read() as db:
            value = await db.fetchval(
                "SELECT active_model_id FROM channels WHERE channel_id = $1", channel_id
            )
        return None if value is None else int(value)

    async def model(self, model_id: int) -> ModelRecord | None:
        async with self._read() as db:
            row = await db.fetchrow("SELECT * FROM model_info WHERE id = $1", model_id)
        return None if row is None else _model(row)

    async def model_blob(self, model_id: int) -> bytes | None:
        async with self._read() as db:
            value = await db.fetchval("SELECT blob FROM models WHERE id = $1", model_id)
        return None if value is None else bytes(value)

    async def list_models(self, channel_id: int) -> list[ModelRecord]:
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT * FROM model_info WHERE channel_id = $1 ORDER BY version DESC", channel_id
            )
        return [_model(row) for row in rows]

    async def set_active_version(self, channel_id: int, version: int) -> ModelRecord | None:
        async with self._transaction() as db:
            model_id = await db.fetchval(
                "SELECT id FROM models WHERE channel_id = $1 AND version = $2", channel_id, version
            )
            if model_id is None:
                return None
            await db.execute(
                "UPDATE channels SET active_model_id = $1 WHERE channel_id = $2",
                model_id,
                channel_id,
            )
            row = await db.fetchrow("SELECT * FROM model_info WHERE id = $1", model_id)
        assert row is not None
        return _model(row)


def _rowcount(status: str) -> int:
    """The row count of an asyncpg command status such as ``DELETE 3``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, IndexError):
        return 0


def _describe(exc: BaseException) -> str:
    """An error's text without a connection string's password."""
    text = str(exc) or type(exc).__name__
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
