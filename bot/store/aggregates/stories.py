"""Stories: upload with its job, removal (applying the core's policy), snapshot and import."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.core.store import (
    ChannelRecord,
    ChannelSnapshot,
    ImportedStory,
    JobRecord,
    ModelRecord,
    NewModel,
    NewStory,
    RemovalPolicy,
    StoryDeletion,
    StoryRecord,
    now_iso,
)
from bot.errors import StorageError, TooManyStories, TrainingElsewhere
from bot.store.aggregates.models import ACTIVE_MODEL, BLOB, model_record
from bot.store.aggregates.removal import RemovalTables
from bot.store.base import LOCK_CHANNEL
from bot.store.sql import Connection, Sql

_RECORD = (
    "id, channel_id, filename, uploader_id, uploader_name, sha256, encoding, bytes, symbols, "
    "vocabulary_size, created_at"
)
OPEN_JOBS = Sql(
    "SELECT id, owner FROM jobs WHERE channel_id = :channel_id "
    "AND state IN ('queued', 'running') ORDER BY id"
)
CHANNEL_STORY_IDS = Sql("SELECT id FROM stories WHERE channel_id = :channel_id ORDER BY id")
INSERT = Sql(
    "INSERT INTO stories (channel_id, filename, uploader_id, uploader_name, text, sha256, "
    "encoding, bytes, symbols, vocabulary_size, created_at) VALUES (:channel_id, :filename, "
    ":uploader_id, :uploader_name, :text, :sha256, :encoding, :bytes, :symbols, "
    ":vocabulary_size, :created_at) RETURNING id"
)
INSERT_MESSAGE = Sql(
    "INSERT INTO story_messages (story_id, position, message_id, author_id, text, created_at) "
    "VALUES (:story_id, :position, :message_id, :author_id, :text, :created_at)"
)
STORIES = Sql(f"SELECT {_RECORD} FROM stories WHERE channel_id = :channel_id ORDER BY id")  # noqa: S608 - literal fragments
TEXTS = Sql("SELECT id, text FROM stories WHERE id IN_IDS(:story_ids)")
STORY = Sql(f"SELECT {_RECORD} FROM stories WHERE id = :story_id AND channel_id = :channel_id")  # noqa: S608 - literal fragments
CHANNEL = Sql(
    "SELECT channel_id, guild_id, name, active_model_id, created_at FROM channels "
    "WHERE channel_id = :channel_id"
)
STORIES_WITH_TEXT = Sql(
    f"SELECT {_RECORD}, text FROM stories WHERE channel_id = :channel_id ORDER BY id"  # noqa: S608 - literal fragments
)
HELD = Sql("SELECT id, sha256, text FROM stories WHERE channel_id = :channel_id")
JOB_RUNNING = Sql("UPDATE jobs SET state = 'running', started_at = :started_at WHERE id = :job_id")


class StoryTables(RemovalTables):
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
        Busy (``TrainingElsewhere``) if another live process, on any host, has an open job in
        the channel: the write transaction (SQLite) or the channel's row lock (PostgreSQL)
        holds from the check to the commit, so two processes cannot both pass.
        """
        async with self._transaction() as db:
            await self._ensure_channel(db, channel_id, guild_id, channel_name)
            await self._refuse_other_process_job(db, channel_id)
            story_id = await self._insert_story(db, channel_id, story, now_iso())
            if append:
                rows = await db.fetch(CHANNEL_STORY_IDS, channel_id=channel_id)
                story_ids = [int(row["id"]) for row in rows]
            else:
                story_ids = [story_id]
            job_id = await self._insert_job(
                db, channel_id, guild_id, requested_by, requested_by_name, story_ids, options
            )
            return await self._job_row(db, job_id)

    async def _refuse_other_process_job(self, db: Connection, channel_id: int) -> None:
        rows = await db.fetch(OPEN_JOBS, channel_id=channel_id)
        others = [r for r in rows if r["owner"] not in self._open_owners]
        # This process's own jobs are the scheduler's to refuse (``check_not_busy``); a gone
        # process's are orphans, interrupted by the next start.
        live = await self._live_owners(db, [r["owner"] for r in others])
        for other in others:
            if other["owner"] in live:
                raise TrainingElsewhere(int(other["id"]))

    async def _insert_story(
        self, db: Connection, channel_id: int, story: NewStory, created_at: str
    ) -> int:
        story_id = int(
            await db.fetchval(
                INSERT,
                channel_id=channel_id,
                filename=story.filename,
                uploader_id=story.uploader_id,
                uploader_name=story.uploader_name,
                text=story.text,
                sha256=story.sha256,
                encoding=story.encoding,
                bytes=story.bytes,
                symbols=story.symbols,
                vocabulary_size=story.vocabulary_size,
                created_at=created_at,
            )
        )
        if story.messages:
            await db.executemany(
                INSERT_MESSAGE,
                [
                    {
                        "story_id": story_id,
                        "position": i,
                        "message_id": m.message_id,
                        "author_id": m.author_id,
                        "text": m.text,
                        "created_at": m.created_at,
                    }
                    for i, m in enumerate(story.messages)
                ],
            )
        return story_id

    async def list_stories(self, channel_id: int) -> list[StoryRecord]:
        async with self._read() as db:
            rows = await db.fetch(STORIES, channel_id=channel_id)
        return [StoryRecord(**dict(row)) for row in rows]

    async def story_texts(self, story_ids: Sequence[int]) -> list[str]:
        """Texts in the given order; StorageError if one is missing."""
        async with self._read() as db:
            rows = await db.fetch(TEXTS, bulk=True, story_ids=db.ids(story_ids))
        texts = {int(row["id"]): str(row["text"]) for row in rows}
        for story_id in story_ids:
            if story_id not in texts:
                raise StorageError(f"story {story_id} no longer exists")
        return [texts[story_id] for story_id in story_ids]

    async def story(self, channel_id: int, story_id: int) -> StoryRecord | None:
        async with self._read() as db:
            return await self._story_row(db, channel_id, story_id)

    async def _story_row(
        self, db: Connection, channel_id: int, story_id: int
    ) -> StoryRecord | None:
        row = await db.fetchrow(STORY, story_id=story_id, channel_id=channel_id)
        return None if row is None else StoryRecord(**dict(row))

    async def delete_story(
        self,
        channel_id: int,
        story_id: int,
        *,
        guild_id: int | None,
        policy: RemovalPolicy,
        requested_by: int | None,
        requested_by_name: str | None,
    ) -> StoryDeletion | None:
        """Remove a story and its models, then apply ``policy``'s plan, in one transaction.

        Afterwards SQLite's WAL is checkpointed so the text is gone from the files
        (secure_delete); PostgreSQL keeps the deleted row's bytes until autovacuum reuses the
        space (it has no ``secure_delete``), the row unreachable at once. None if the channel
        has no such story.
        """
        async with self._transaction() as db:
            await db.fetchval(LOCK_CHANNEL, channel_id=channel_id)
            story = await self._story_row(db, channel_id, story_id)
            if story is None:
                return None
            facts, active_after, job = await self._remove_stories(
                db, story, [story_id], [], guild_id, policy, requested_by, requested_by_name
            )
        await self.checkpoint()
        return StoryDeletion(story, facts.deleted_versions, active_after, job)

    async def snapshot(self, channel_id: int) -> ChannelSnapshot | None:
        """The active model, its blob and every story with its text, read at one instant."""
        async with self._snapshot_read() as db:
            channel_row = await db.fetchrow(CHANNEL, channel_id=channel_id)
            model_row = await db.fetchrow(ACTIVE_MODEL, channel_id=channel_id)
            if channel_row is None or model_row is None:
                return None
            blob = await db.fetchval(BLOB, bulk=True, model_id=model_row["id"])
            rows = await db.fetch(STORIES_WITH_TEXT, bulk=True, channel_id=channel_id)
        stories = []
        for row in rows:
            values = dict(row)
            text = str(values.pop("text"))
            stories.append((StoryRecord(**values), text))
        return ChannelSnapshot(
            ChannelRecord(**dict(channel_row)), model_record(model_row), bytes(blob), tuple(stories)
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
            await self._ensure_channel(db, channel_id, guild_id, channel_name)
            # A story the channel already holds (same text) is reused, not stored twice: importing
            # one export twice adds a model version, never duplicate stories.
            rows = await db.fetch(HELD, channel_id=channel_id)
            existing = {(row["sha256"], row["text"]): int(row["id"]) for row in rows}
            held = len(rows)
            new = [s for s in stories if (s.story.sha256, s.story.text) not in existing]
            if held + len(new) > max_stories:
                raise TooManyStories(held, len(new), max_stories)
            story_ids = []
            for imported in stories:
                key = (imported.story.sha256, imported.story.text)
                if key not in existing:
                    existing[key] = await self._insert_story(
                        db, channel_id, imported.story, imported.created_at
                    )
                story_ids.append(existing[key])
            trained_on = [story_ids[i] for i in model_story_positions]
            job_id = await self._insert_job(
                db, channel_id, guild_id, requested_by, requested_by_name, trained_on, model.options
            )
            await db.execute(JOB_RUNNING, started_at=now_iso(), job_id=job_id)
            model_id, pruned = await self._insert_model(
                db,
                job_id=job_id,
                channel_id=channel_id,
                model=model,
                story_ids=trained_on,
                keep_versions=keep_versions,
            )
            record = await self._model_row(db, model_id)
            job = await self._job_row(db, job_id)
            rows = await db.fetch(CHANNEL_STORY_IDS, channel_id=channel_id)
            kept = {int(row["id"]) for row in rows}
        if pruned:
            await self.checkpoint()
        return job, record, tuple(i for i in story_ids if i in kept)
