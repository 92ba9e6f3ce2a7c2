"""SQLite storage for stories, models and training jobs (aiosqlite).

One ``StoryStore`` owns one connection; every statement goes through it under one asyncio lock, so
a multi-statement transaction of one coroutine never interleaves with another's statements. The
connection runs in autocommit mode and transactions are explicit (``BEGIN IMMEDIATE``).

The schema lives in ``schema.sql`` as numbered migrations; ``PRAGMA user_version`` records how far a
database is. WAL journal, ``foreign_keys=ON``. All SQL is parameterized.

A new model becomes a channel's active model only in ``activate_model``: one transaction that
inserts the model, its story links, points the channel at it, marks the job done and prunes old
versions. Until that commits, the previous model keeps answering.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import aiosqlite

from bot.errors import Busy, StorageError, StorageUnavailable
from bot.owner import new_owner, owner_alive

logger = logging.getLogger(__name__)

OPEN_STATES = ("queued", "running")
FINAL_STATES = ("done", "failed", "cancelled", "interrupted")
_MIGRATION = re.compile(r"^-- migration (\d+)\s*$", re.MULTILINE)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_migrations(text: str | None = None) -> list[tuple[int, str]]:
    """Split schema.sql into (version, sql) pairs; versions must be 1, 2, 3... in order."""
    if text is None:
        text = resources.files("bot").joinpath("schema.sql").read_text(encoding="utf-8")
    parts = _MIGRATION.split(text)
    migrations = [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts), 2)]
    for expected, (version, _) in enumerate(migrations, start=1):
        if version != expected:
            raise StorageError(f"schema.sql: migration {version} found where {expected} expected")
    return migrations


@dataclass(frozen=True)
class ChannelRecord:
    channel_id: int
    guild_id: int | None
    name: str | None
    active_model_id: int | None
    created_at: str


@dataclass(frozen=True)
class NewStory:
    filename: str
    uploader_id: int | None
    uploader_name: str | None
    text: str
    sha256: str
    encoding: str
    bytes: int
    symbols: int
    vocabulary_size: int


@dataclass(frozen=True)
class StoryRecord:
    id: int
    channel_id: int
    filename: str
    uploader_id: int | None
    uploader_name: str | None
    sha256: str
    encoding: str
    bytes: int
    symbols: int
    vocabulary_size: int
    created_at: str


@dataclass(frozen=True)
class ModelRecord:
    id: int
    channel_id: int
    version: int
    config: dict[str, Any]
    vocabulary_size: int
    figures: dict[str, Any]
    options: dict[str, Any]
    job_id: int | None
    created_at: str
    story_ids: tuple[int, ...]
    active: bool


@dataclass(frozen=True)
class StoryDeletion:
    """What ``delete_story`` did, in its one transaction."""

    story: StoryRecord
    deleted_versions: tuple[int, ...]  # model versions trained on the story, now deleted
    active_version: int | None  # the version active afterwards (an older one kept), or None
    retrain_job: JobRecord | None  # queued on the remaining stories, or None


@dataclass(frozen=True)
class NewModel:
    """A completely trained model to store (``activate_model``, ``import_channel``)."""

    config: dict[str, Any]  # ModelConfig JSON
    vocabulary: Sequence[str]
    blob: bytes  # model.serialization.to_bytes()
    figures: dict[str, Any]  # TrainingFigures JSON
    options: dict[str, Any]  # the job's options


@dataclass(frozen=True)
class ImportedStory:
    story: NewStory
    created_at: str


@dataclass(frozen=True)
class ChannelSnapshot:
    """A channel's active model with its blob and all its stories' texts, read at one instant."""

    channel: ChannelRecord
    model: ModelRecord
    blob: bytes
    stories: tuple[tuple[StoryRecord, str], ...]


@dataclass(frozen=True)
class JobRecord:
    id: int
    channel_id: int
    guild_id: int | None
    requested_by: int | None
    requested_by_name: str | None
    state: str
    story_ids: tuple[int, ...]
    options: dict[str, Any]
    progress: dict[str, Any] | None
    error: str | None
    model_id: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    # the message showing the job's progress, until the adapter has shown the job's end there
    progress_channel_id: int | None = None
    progress_message_id: int | None = None


class StoryStore:
    """The bot's only database connection. Create with ``await StoryStore.open(path)``."""

    # Owners (see bot.owner) of the stores open in this process: a job of this process whose
    # store was closed without finishing it is orphaned.
    _open_owners: ClassVar[set[str]] = set()

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self.owner = new_owner()
        StoryStore._open_owners.add(self.owner)
        self._db = connection
        self._lock = asyncio.Lock()
        self.path = path
        self.read_only = False  # see ``open``

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path) -> StoryStore:
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
            StoryStore._open_owners.discard(store.owner)
            await connection.close()
            if not _exists(path):
                raise StorageError(f"cannot create database {path}: {exc.__cause__}") from exc
            return await cls._open_read_only(path, f"writing was refused: {exc.__cause__}")
        except BaseException:
            StoryStore._open_owners.discard(store.owner)
            await connection.close()
            raise
        return store

    @classmethod
    async def _open_read_only(cls, path: Path, why: str) -> StoryStore:
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
                StoryStore._open_owners.discard(store.owner)
                await connection.close()
                last = exc
                continue
            latest = load_migrations()[-1][0]
            if version != latest:
                StoryStore._open_owners.discard(store.owner)
                await connection.close()
                raise StorageError(
                    f"database {path} cannot be written ({why}) and needs an upgrade of its "
                    f"schema (version {version} -> {latest}): make {path.parent} writable"
                )
            logger.warning("database %s opened read-only: %s", path, why)
            return store
        raise StorageError(f"cannot open database {path} ({why}): {last}")

    async def close(self) -> None:
        StoryStore._open_owners.discard(self.owner)
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
            return await self._scalar("PRAGMA user_version")

    async def integrity_check(self) -> str:
        async with self._lock, self._db.execute("PRAGMA integrity_check") as cursor:
            rows = await cursor.fetchall()
        return "; ".join(str(row[0]) for row in rows)

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

    # -- channels --------------------------------------------------------------------------

    async def forget_channel(self, channel_id: int) -> bool:
        """Delete the channel with its stories, models and jobs. True if it existed."""
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM channels WHERE channel_id = ?", (channel_id,))
            return cursor.rowcount > 0

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

        ``append`` trains on all the channel's stories in upload order; otherwise on this one.
        Busy if another live process (a second CLI, the bot) has an open job in the channel:
        the check and the insert are one write transaction, so two processes cannot both pass.
        """
        async with self._transaction():
            rows = await self._all(
                "SELECT id, owner FROM jobs WHERE channel_id = ? AND state IN ('queued', "
                "'running') ORDER BY id",
                (channel_id,),
            )
            for other in rows:
                # This process's own jobs are the service's to queue (``StoryService._busy``).
                mine = other["owner"] in StoryStore._open_owners
                if not mine and owner_alive(other["owner"], StoryStore._open_owners):
                    raise Busy(
                        f"This channel is already training (job #{other['id']}, in another "
                        "process). Wait for it or cancel it first.",
                        int(other["id"]),
                        None,
                    )
            await self._ensure_channel(channel_id, guild_id, channel_name)
            story_id = await self._insert_story(channel_id, story, now_iso())
            if append:
                rows = await self._all(
                    "SELECT id FROM stories WHERE channel_id = ? ORDER BY id", (channel_id,)
                )
                story_ids = [int(row["id"]) for row in rows]
            else:
                story_ids = [story_id]
            job_id = await self._insert_job(
                channel_id, guild_id, requested_by, requested_by_name, story_ids, options
            )
            row = await self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        assert row is not None
        return _job(row)

    async def _insert_story(self, channel_id: int, story: NewStory, created_at: str) -> int:
        cursor = await self._db.execute(
            "INSERT INTO stories (channel_id, filename, uploader_id, uploader_name, text, "
            "sha256, encoding, bytes, symbols, vocabulary_size, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
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
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def list_stories(self, channel_id: int) -> list[StoryRecord]:
        async with self._lock:
            rows = await self._all(
                "SELECT id, channel_id, filename, uploader_id, uploader_name, sha256, encoding, "
                "bytes, symbols, vocabulary_size, created_at FROM stories "
                "WHERE channel_id = ? ORDER BY id",
                (channel_id,),
            )
        return [StoryRecord(**dict(row)) for row in rows]

    async def story_texts(self, story_ids: Sequence[int]) -> list[str]:
        """Texts in the given order; StorageError if one is missing."""
        async with self._lock:
            texts = []
            for story_id in story_ids:
                row = await self._one("SELECT text FROM stories WHERE id = ?", (story_id,))
                if row is None:
                    raise StorageError(f"story {story_id} no longer exists")
                texts.append(str(row["text"]))
        return texts

    async def story(self, channel_id: int, story_id: int) -> StoryRecord | None:
        async with self._lock:
            row = await self._one(
                "SELECT id, channel_id, filename, uploader_id, uploader_name, sha256, encoding, "
                "bytes, symbols, vocabulary_size, created_at FROM stories "
                "WHERE id = ? AND channel_id = ?",
                (story_id, channel_id),
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

        If the active model was trained on the story, the newest kept version that was not
        becomes active (if any), and a job is queued on the active model's other stories; when
        it had none, on the newest remaining story unless an older version already answers.
        Afterwards the WAL is checkpointed so the text is gone from the files (secure_delete).
        None if the channel has no such story.
        """
        async with self._transaction() as db:
            row = await self._one(
                "SELECT id, channel_id, filename, uploader_id, uploader_name, sha256, encoding, "
                "bytes, symbols, vocabulary_size, created_at FROM stories "
                "WHERE id = ? AND channel_id = ?",
                (story_id, channel_id),
            )
            if row is None:
                return None
            story = StoryRecord(**dict(row))
            active_row = await self._one(
                "SELECT * FROM model_info WHERE channel_id = ? AND active", (channel_id,)
            )
            active = None if active_row is None else _model(active_row)
            rows = await self._all(
                "SELECT m.id, m.version FROM models m JOIN model_stories ms ON ms.model_id = m.id "
                "WHERE ms.story_id = ? ORDER BY m.version",
                (story_id,),
            )
            model_ids = [int(r["id"]) for r in rows]
            versions = tuple(int(r["version"]) for r in rows)
            await db.executemany("DELETE FROM models WHERE id = ?", [(m,) for m in model_ids])
            await db.execute("DELETE FROM stories WHERE id = ?", (story_id,))
            active_deleted = active is not None and active.id in model_ids
            fallback: int | None = None
            if active_deleted:
                fallback_row = await self._one(
                    "SELECT id, version FROM models WHERE channel_id = ? "
                    "ORDER BY version DESC LIMIT 1",
                    (channel_id,),
                )
                if fallback_row is not None:
                    fallback = int(fallback_row["version"])
                    await db.execute(
                        "UPDATE channels SET active_model_id = ? WHERE channel_id = ?",
                        (fallback_row["id"], channel_id),
                    )
            else:
                fallback = None if active is None else active.version
            retrain: list[int] = []
            if active_deleted and active is not None:
                retrain = [i for i in active.story_ids if i != story_id]
                if not retrain and fallback is None:
                    newest = await self._scalar(
                        "SELECT max(id) FROM stories WHERE channel_id = ?", (channel_id,)
                    )
                    retrain = [] if newest is None else [int(newest)]
            job: JobRecord | None = None
            if retrain:
                job_id = await self._insert_job(
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
                job_row = await self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
                assert job_row is not None
                job = _job(job_row)
        await self.checkpoint()
        return StoryDeletion(story, versions, fallback, job)

    async def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (best effort)."""
        async with self._lock:
            try:
                await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                logger.warning("WAL checkpoint of %s failed: %s", self.path, exc)

    async def snapshot(self, channel_id: int) -> ChannelSnapshot | None:
        """The active model, its blob and every story with its text (None without a model)."""
        async with self._lock:
            channel_row = await self._one(
                "SELECT channel_id, guild_id, name, active_model_id, created_at FROM channels "
                "WHERE channel_id = ?",
                (channel_id,),
            )
            model_row = await self._one(
                "SELECT * FROM model_info WHERE channel_id = ? AND active", (channel_id,)
            )
            if channel_row is None or model_row is None:
                return None
            blob = await self._scalar("SELECT blob FROM models WHERE id = ?", (model_row["id"],))
            rows = await self._all(
                "SELECT id, channel_id, filename, uploader_id, uploader_name, sha256, encoding, "
                "bytes, symbols, vocabulary_size, created_at, text FROM stories "
                "WHERE channel_id = ? ORDER BY id",
                (channel_id,),
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
        """Add imported stories and make their model the active new version, in one transaction.

        The import is recorded as a job that is already done. Returns (job, model, story ids);
        the ids are of the stories kept: pruning (see ``_prune``) drops the file's stories
        that its model did not learn. Raises StorageError (nothing changed) if the channel
        would exceed ``max_stories``.
        """
        async with self._transaction() as db:
            await self._ensure_channel(channel_id, guild_id, channel_name)
            held = int(
                await self._scalar(
                    "SELECT count(*) FROM stories WHERE channel_id = ?", (channel_id,)
                )
            )
            # A story the channel already holds (same text) is reused, not stored twice: importing
            # one export twice adds a model version, never duplicate stories.
            existing = {
                (row["sha256"], row["text"]): int(row["id"])
                for row in await self._all(
                    "SELECT id, sha256, text FROM stories WHERE channel_id = ?", (channel_id,)
                )
            }
            new = [s for s in stories if (s.story.sha256, s.story.text) not in existing]
            if held + len(new) > max_stories:
                raise StorageError(
                    f"this channel holds {held} stories and the file {len(new)} new ones; "
                    f"the limit is {max_stories}"
                )
            story_ids = []
            for imported in stories:
                key = (imported.story.sha256, imported.story.text)
                if key not in existing:
                    existing[key] = await self._insert_story(
                        channel_id, imported.story, imported.created_at
                    )
                story_ids.append(existing[key])
            trained_on = [story_ids[i] for i in model_story_positions]
            job_id = await self._insert_job(
                channel_id, guild_id, requested_by, requested_by_name, trained_on, model.options
            )
            await db.execute(
                "UPDATE jobs SET state = 'running', started_at = ? WHERE id = ?",
                (now_iso(), job_id),
            )
            model_id, pruned = await self._insert_model(
                job_id=job_id,
                channel_id=channel_id,
                model=model,
                story_ids=trained_on,
                keep_versions=keep_versions,
            )
            model_row = await self._one("SELECT * FROM model_info WHERE id = ?", (model_id,))
            job_row = await self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
            kept = {
                int(row["id"])
                for row in await self._all(
                    "SELECT id FROM stories WHERE channel_id = ?", (channel_id,)
                )
            }
        assert model_row is not None and job_row is not None
        if pruned:
            await self.checkpoint()
        return _job(job_row), _model(model_row), tuple(i for i in story_ids if i in kept)

    # -- jobs ------------------------------------------------------------------------------

    async def _insert_job(
        self,
        channel_id: int,
        guild_id: int | None,
        requested_by: int | None,
        requested_by_name: str | None,
        story_ids: Sequence[int],
        options: dict[str, Any],
    ) -> int:
        cursor = await self._db.execute(
            "INSERT INTO jobs (channel_id, guild_id, requested_by, requested_by_name, state, "
            "story_ids, options, created_at, owner) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
            (
                channel_id,
                guild_id,
                requested_by,
                requested_by_name,
                json.dumps(list(story_ids)),
                json.dumps(options),
                now_iso(),
                self.owner,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def job(self, job_id: int) -> JobRecord | None:
        async with self._lock:
            row = await self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else _job(row)

    async def jobs(self, channel_id: int, limit: int = 20) -> list[JobRecord]:
        async with self._lock:
            rows = await self._all(
                "SELECT * FROM jobs WHERE channel_id = ? ORDER BY id DESC LIMIT ?",
                (channel_id, limit),
            )
        return [_job(row) for row in rows]

    async def open_jobs(self) -> list[JobRecord]:
        async with self._lock:
            rows = await self._all(
                "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"
            )
        return [_job(row) for row in rows]

    async def start_job(self, job_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET state = 'running', started_at = ? "
                "WHERE id = ? AND state = 'queued'",
                (now_iso(), job_id),
            )

    async def update_job_progress(self, job_id: int, progress: dict[str, Any]) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET progress = ? WHERE id = ? AND state IN ('queued', 'running')",
                (json.dumps(progress), job_id),
            )

    async def finish_job(self, job_id: int, state: str, error: str | None = None) -> None:
        """Record a job's final state (not 'done': ``activate_model`` does that)."""
        if state not in FINAL_STATES or state == "done":
            raise ValueError(f"finish_job cannot set state {state!r}")
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET state = ?, error = ?, finished_at = ? "
                "WHERE id = ? AND state IN ('queued', 'running')",
                (state, error, now_iso(), job_id),
            )

    async def mark_open_jobs_interrupted(self, message: str) -> list[JobRecord]:
        """On start-up: every job left queued or running by a previous process is interrupted."""
        async with self._transaction() as db:
            rows = await self._all(
                "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"
            )
            await db.execute(
                "UPDATE jobs SET state = 'interrupted', error = ?, finished_at = ? "
                "WHERE state IN ('queued', 'running')",
                (message, now_iso()),
            )
        return [_job(row) for row in rows]

    async def interrupt_orphaned_jobs(self, message: str, kept_message: str) -> list[JobRecord]:
        """On start-up: interrupt the open jobs whose owner process is gone (``bot.owner``).

        The error is ``kept_message`` where the channel still has an active model, else
        ``message``. Jobs of live processes (the running bot) are left alone.
        """
        async with self._transaction() as db:
            rows = await self._all(
                "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"
            )
            orphans = [r for r in rows if not owner_alive(r["owner"], StoryStore._open_owners)]
            await db.executemany(
                "UPDATE jobs SET state = 'interrupted', finished_at = ?, error = CASE WHEN "
                "(SELECT active_model_id FROM channels c WHERE c.channel_id = jobs.channel_id) "
                "IS NULL THEN ? ELSE ? END WHERE id = ? AND state IN ('queued', 'running')",
                [(now_iso(), message, kept_message, r["id"]) for r in orphans],
            )
        return [_job(row) for row in orphans]

    async def set_progress_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET progress_channel_id = ?, progress_message_id = ? WHERE id = ?",
                (channel_id, message_id, job_id),
            )

    async def clear_progress_message(self, job_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET progress_channel_id = NULL, progress_message_id = NULL "
                "WHERE id = ?",
                (job_id,),
            )

    async def stale_progress_messages(self) -> list[JobRecord]:
        """Ended jobs whose progress message was never updated to show the end."""
        async with self._lock:
            rows = await self._all(
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
        """Store a completely trained model and make it active, in one transaction.

        Raises StorageError (nothing changed) if the channel or one of the stories is gone.
        """
        async with self._transaction():
            known = await self._scalar("SELECT 1 FROM channels WHERE channel_id = ?", (channel_id,))
            if known is None:
                raise StorageError("the channel was forgotten while it trained")
            for story_id in story_ids:
                owner = await self._scalar(
                    "SELECT channel_id FROM stories WHERE id = ?", (story_id,)
                )
                if owner != channel_id:
                    raise StorageError("a story was removed while the model trained on it")
            model_id, pruned = await self._insert_model(
                job_id=job_id,
                channel_id=channel_id,
                model=model,
                story_ids=story_ids,
                keep_versions=keep_versions,
            )
            row = await self._one(
                "SELECT * FROM model_info WHERE id = ?",
                (model_id,),
            )
        assert row is not None
        if pruned:
            await self.checkpoint()  # the pruned stories' text must leave the WAL too
        return _model(row)

    async def _insert_model(
        self,
        *,
        job_id: int,
        channel_id: int,
        model: NewModel,
        story_ids: Sequence[int],
        keep_versions: int,
    ) -> tuple[int, int]:
        """Inside a transaction: insert the next version, activate it, finish its job, prune.

        Returns (the model's id, how many stories were pruned).
        """
        db = self._db
        version = 1 + int(
            await self._scalar(
                "SELECT max(c.last_version, coalesce((SELECT max(version) FROM models "
                "WHERE channel_id = c.channel_id), 0)) FROM channels c WHERE c.channel_id = ?",
                (channel_id,),
            )
        )
        await db.execute(
            "UPDATE channels SET last_version = ? WHERE channel_id = ?", (version, channel_id)
        )
        cursor = await db.execute(
            "INSERT INTO models (channel_id, version, config, vocabulary, blob, figures, "
            "options, job_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                channel_id,
                version,
                json.dumps(model.config),
                json.dumps(list(model.vocabulary)),
                sqlite3.Binary(model.blob),
                json.dumps(model.figures),
                json.dumps(model.options),
                job_id,
                now_iso(),
            ),
        )
        model_id = cursor.lastrowid
        assert model_id is not None
        await db.executemany(
            "INSERT INTO model_stories (model_id, story_id, position) VALUES (?, ?, ?)",
            [(model_id, story_id, pos) for pos, story_id in enumerate(story_ids)],
        )
        await db.execute(
            "UPDATE channels SET active_model_id = ? WHERE channel_id = ?",
            (model_id, channel_id),
        )
        await db.execute(
            "UPDATE jobs SET state = 'done', model_id = ?, error = NULL, finished_at = ? "
            "WHERE id = ?",
            (model_id, now_iso(), job_id),
        )
        pruned = await self._prune(channel_id, keep_versions)
        return model_id, pruned

    async def _prune(self, channel_id: int, keep_versions: int) -> int:
        """Keep the newest ``keep_versions`` versions and the active one; then delete the
        stories no kept version learned and no open job needs (nothing could ever use them
        again: no rollback reaches them). Returns how many stories were deleted."""
        await self._db.execute(
            "DELETE FROM models WHERE channel_id = ? "
            "AND id IS NOT (SELECT active_model_id FROM channels WHERE channel_id = ?) "
            "AND version NOT IN (SELECT version FROM models WHERE channel_id = ? "
            "                    ORDER BY version DESC LIMIT ?)",
            (channel_id, channel_id, channel_id, keep_versions),
        )
        cursor = await self._db.execute(
            "DELETE FROM stories WHERE channel_id = ? "
            "AND id NOT IN (SELECT ms.story_id FROM model_stories ms "
            "               JOIN models m ON m.id = ms.model_id WHERE m.channel_id = ?) "
            "AND id NOT IN (SELECT CAST(j.value AS INTEGER) FROM jobs, json_each(jobs.story_ids) j "
            "               WHERE jobs.channel_id = ? AND jobs.state IN ('queued', 'running'))",
            (channel_id, channel_id, channel_id),
        )
        return max(cursor.rowcount, 0)

    async def active_model(self, channel_id: int) -> ModelRecord | None:
        async with self._lock:
            row = await self._one(
                "SELECT * FROM model_info WHERE channel_id = ? AND active",
                (channel_id,),
            )
        return None if row is None else _model(row)

    async def active_model_id(self, channel_id: int) -> int | None:
        async with self._lock:
            value = await self._scalar(
                "SELECT active_model_id FROM channels WHERE channel_id = ?", (channel_id,)
            )
        return None if value is None else int(value)

    async def model(self, model_id: int) -> ModelRecord | None:
        async with self._lock:
            row = await self._one("SELECT * FROM model_info WHERE id = ?", (model_id,))
        return None if row is None else _model(row)

    async def model_blob(self, model_id: int) -> bytes | None:
        async with self._lock:
            value = await self._scalar("SELECT blob FROM models WHERE id = ?", (model_id,))
        return None if value is None else bytes(value)

    async def list_models(self, channel_id: int) -> list[ModelRecord]:
        async with self._lock:
            rows = await self._all(
                "SELECT * FROM model_info WHERE channel_id = ? ORDER BY version DESC",
                (channel_id,),
            )
        return [_model(row) for row in rows]

    async def set_active_version(self, channel_id: int, version: int) -> ModelRecord | None:
        """Roll back (or forward) to a kept version, in one transaction; None if not kept."""
        async with self._transaction() as db:
            model_id = await self._scalar(
                "SELECT id FROM models WHERE channel_id = ? AND version = ?", (channel_id, version)
            )
            if model_id is None:
                return None
            await db.execute(
                "UPDATE channels SET active_model_id = ? WHERE channel_id = ?",
                (model_id, channel_id),
            )
            row = await self._one(
                "SELECT * FROM model_info WHERE id = ?",
                (model_id,),
            )
        assert row is not None
        return _model(row)


# SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN (primary result codes)
_UNAVAILABLE_CODES = {8, 10, 13, 14}
UNAVAILABLE_MESSAGE = (
    "I cannot save anything right now (my storage is full or read-only), so nothing was "
    "changed. Please tell the bot's operator."
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


def _json_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    data: Iterable[Any] = json.loads(value)
    return tuple(int(item) for item in data)


def _job(row: aiosqlite.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        channel_id=row["channel_id"],
        guild_id=row["guild_id"],
        requested_by=row["requested_by"],
        requested_by_name=row["requested_by_name"],
        state=row["state"],
        story_ids=_json_ids(row["story_ids"]),
        options=json.loads(row["options"]),
        progress=None if row["progress"] is None else json.loads(row["progress"]),
        error=row["error"],
        model_id=row["model_id"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        progress_channel_id=row["progress_channel_id"],
        progress_message_id=row["progress_message_id"],
    )


def _model(row: aiosqlite.Row) -> ModelRecord:
    return ModelRecord(
        id=row["id"],
        channel_id=row["channel_id"],
        version=row["version"],
        config=json.loads(row["config"]),
        vocabulary_size=int(row["vocabulary_size"] or 0),
        figures=json.loads(row["figures"]),
        options=json.loads(row["options"]),
        job_id=row["job_id"],
        created_at=row["created_at"],
        story_ids=_json_ids(row["story_ids"]),
        active=bool(row["active"]),
    )
