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
from bot.store.postgres.connection import BULK_TIMEOUT
from bot.store.postgres.removal import RemovalTables
from bot.store.sqlite.models import model_record


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

        Busy (``TrainingElsewhere``) if another live process, on any host, has an open job in
        the channel: the channel's row stays locked from the check to the commit, so two
        processes cannot both pass.
        """
        async with self._transaction() as db:
            await self._ensure_channel(db, channel_id, guild_id, channel_name)
            await self._refuse_other_process_job(db, channel_id)
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
            return await self._job_row(db, job_id)

    async def _refuse_other_process_job(self, db: Any, channel_id: int) -> None:
        rows = await db.fetch(
            "SELECT id, owner FROM jobs WHERE channel_id = $1 "
            "AND state IN ('queued', 'running') ORDER BY id",
            channel_id,
        )
        others = [r for r in rows if r["owner"] not in type(self)._open_owners]
        # This process's own jobs are the scheduler's to refuse (``check_not_busy``); a gone
        # process's are orphans, interrupted by the next start.
        live = await self._live_owners(db, [r["owner"] for r in others])
        for other in others:
            if other["owner"] in live:
                raise TrainingElsewhere(int(other["id"]))

    async def _insert_story(
        self, db: Any, channel_id: int, story: NewStory, created_at: str
    ) -> int:
        story_id = int(
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
        if story.messages:
            await db.executemany(
                "INSERT INTO story_messages (story_id, position, message_id, author_id, text, "
                "created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (story_id, i, m.message_id, m.author_id, m.text, m.created_at)
                    for i, m in enumerate(story.messages)
                ],
            )
        return story_id

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
        """Texts in the given order; StorageError if one is missing."""
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT id, text FROM stories WHERE id = ANY($1::bigint[])",
                list(story_ids),
                timeout=BULK_TIMEOUT,
            )
        texts = {int(row["id"]): str(row["text"]) for row in rows}
        for story_id in story_ids:
            if story_id not in texts:
                raise StorageError(f"story {story_id} no longer exists")
        return [texts[story_id] for story_id in story_ids]

    async def story(self, channel_id: int, story_id: int) -> StoryRecord | None:
        async with self._read() as db:
            return await self._story_row(db, channel_id, story_id)

    async def _story_row(self, db: Any, channel_id: int, story_id: int) -> StoryRecord | None:
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
        policy: RemovalPolicy,
        requested_by: int | None,
        requested_by_name: str | None,
    ) -> StoryDeletion | None:
        """Remove a story and its models, then apply ``policy``'s plan, in one transaction.

        PostgreSQL keeps the deleted row's bytes until autovacuum reuses the space (it has no
        ``secure_delete``); the row is unreachable at once. None if the channel has no such
        story.
        """
        async with self._transaction() as db:
            await db.execute("SELECT 1 FROM channels WHERE channel_id = $1 FOR UPDATE", channel_id)
            story = await self._story_row(db, channel_id, story_id)
            if story is None:
                return None
            facts, active_after, job = await self._remove_stories(
                db, story, [story_id], [], guild_id, policy, requested_by, requested_by_name
            )
        return StoryDeletion(story, facts.deleted_versions, active_after, job)

    async def snapshot(self, channel_id: int) -> ChannelSnapshot | None:
        """The active model, its blob and every story with its text, read at one instant."""
        async with self._read() as db, db.transaction(isolation="repeatable_read", readonly=True):
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
            blob = await db.fetchval(
                "SELECT blob FROM models WHERE id = $1", model_row["id"], timeout=BULK_TIMEOUT
            )
            rows = await db.fetch(
                "SELECT id, channel_id, filename, uploader_id, uploader_name, sha256, encoding, "
                "bytes, symbols, vocabulary_size, created_at, text FROM stories "
                "WHERE channel_id = $1 ORDER BY id",
                channel_id,
                timeout=BULK_TIMEOUT,
            )
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
        """Add imported stories and make their model the active new version, in one transaction
        (the rules of the SQLite store: a story already held is reused, not stored twice)."""
        async with self._transaction() as db:
            await self._ensure_channel(db, channel_id, guild_id, channel_name)
            existing = {
                (row["sha256"], row["text"]): int(row["id"])
                for row in await db.fetch(
                    "SELECT id, sha256, text FROM stories WHERE channel_id = $1", channel_id
                )
            }
            held = len(existing)
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
            record = await self._model_row(db, model_id)
            job = await self._job_row(db, job_id)
            kept = {
                int(row["id"])
                for row in await db.fetch(
                    "SELECT id FROM stories WHERE channel_id = $1", channel_id
                )
            }
        return job, record, tuple(i for i in story_ids if i in kept)
