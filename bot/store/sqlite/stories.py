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
from bot.owner import owner_alive
from bot.store.sqlite.connection import SqliteBase
from bot.store.sqlite.models import model_record
from bot.store.sqlite.removal import RemovalTables


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
        Busy if another live process (a second CLI, the bot) has an open job in the channel:
        the check and the insert are one write transaction, so two processes cannot both pass.
        """
        async with self._transaction():
            await self._refuse_other_process_job(channel_id)
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
            return await self._job_row(job_id)

    async def _refuse_other_process_job(self, channel_id: int) -> None:
        rows = await self._all(
            "SELECT id, owner FROM jobs WHERE channel_id = ? AND state IN ('queued', "
            "'running') ORDER BY id",
            (channel_id,),
        )
        for other in rows:
            # This process's own jobs are the scheduler's to refuse (``check_not_busy``).
            mine = other["owner"] in SqliteBase._open_owners
            if not mine and owner_alive(other["owner"], SqliteBase._open_owners):
                raise TrainingElsewhere(int(other["id"]))

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
        if story.messages:
            await self._db.executemany(
                "INSERT INTO story_messages (story_id, position, message_id, author_id, text, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (cursor.lastrowid, i, m.message_id, m.author_id, m.text, m.created_at)
                    for i, m in enumerate(story.messages)
                ],
            )
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
            return await self._story_row(channel_id, story_id)

    async def _story_row(self, channel_id: int, story_id: int) -> StoryRecord | None:
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
        policy: RemovalPolicy,
        requested_by: int | None,
        requested_by_name: str | None,
    ) -> StoryDeletion | None:
        """Remove a story and its models, then apply ``policy``'s plan, in one transaction.

        Afterwards the WAL is checkpointed so the text is gone from the files (secure_delete).
        None if the channel has no such story.
        """
        async with self._transaction():
            story = await self._story_row(channel_id, story_id)
            if story is None:
                return None
            facts, active_after, job = await self._remove_stories(
                story, [story_id], [], guild_id, policy, requested_by, requested_by_name
            )
        await self.checkpoint()
        return StoryDeletion(story, facts.deleted_versions, active_after, job)

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
                raise TooManyStories(held, len(new), max_stories)
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
            record = await self._model_row(model_id)
            job = await self._job_row(job_id)
            kept = {
                int(row["id"])
                for row in await self._all(
                    "SELECT id FROM stories WHERE channel_id = ?", (channel_id,)
                )
            }
        if pruned:
            await self.checkpoint()
        return job, record, tuple(i for i in story_ids if i in kept)
