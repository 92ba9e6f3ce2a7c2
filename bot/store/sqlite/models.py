"""Models: activating a trained one (and pruning old versions), reading, rolling back."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

import aiosqlite

from bot.core.store import ModelRecord, NewModel, now_iso
from bot.errors import StorageError
from bot.store.sqlite.connection import SqliteBase
from bot.store.sqlite.jobs import json_ids

# Another process ended the job (a member's data deleted there) while this one trained it.
ENDED_ELSEWHERE = "the training was ended by another process while it ran"


class ModelTables(SqliteBase):
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

        Raises StorageError (nothing changed) if the channel or one of the stories is gone, or
        the job is no longer open.
        """
        async with self._transaction():
            known = await self._scalar("SELECT 1 FROM channels WHERE channel_id = ?", (channel_id,))
            if known is None:
                raise StorageError("the channel was forgotten while it trained")
            state = await self._scalar("SELECT state FROM jobs WHERE id = ?", (job_id,))
            if state not in ("queued", "running"):
                raise StorageError(ENDED_ELSEWHERE)
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
            record = await self._model_row(model_id)
        if pruned:
            await self.checkpoint()  # the pruned stories' text must leave the WAL too
        return record

    async def _model_row(self, model_id: int) -> ModelRecord:
        row = await self._one("SELECT * FROM model_info WHERE id = ?", (model_id,))
        assert row is not None
        return model_record(row)

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
        return None if row is None else model_record(row)

    async def active_model_id(self, channel_id: int) -> int | None:
        async with self._lock:
            value = await self._scalar(
                "SELECT active_model_id FROM channels WHERE channel_id = ?", (channel_id,)
            )
        return None if value is None else int(value)

    async def model(self, model_id: int) -> ModelRecord | None:
        async with self._lock:
            row = await self._one("SELECT * FROM model_info WHERE id = ?", (model_id,))
        return None if row is None else model_record(row)

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
        return [model_record(row) for row in rows]

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
            return await self._model_row(model_id)


def model_record(row: aiosqlite.Row) -> ModelRecord:
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
        story_ids=json_ids(row["story_ids"]),
        active=bool(row["active"]),
    )
