"""Models: activating a trained one (and pruning old versions), reading, rolling back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.core.store import ModelRecord, NewModel, now_iso
from bot.errors import StorageError
from bot.store.aggregates.jobs import json_ids
from bot.store.base import LOCK_CHANNEL, StoreBase
from bot.store.sql import Connection, Sql

# Another process ended the job (a member's data deleted there) while this one trained it.
ENDED_ELSEWHERE = "the training was ended by another process while it ran"

# delete_user_data ends other processes' jobs holding the same channel row lock
JOB_STATE = Sql(
    "SELECT state FROM jobs WHERE id = :job_id",
    postgresql="SELECT state FROM jobs WHERE id = :job_id FOR UPDATE",
)
STORY_CHANNELS = Sql("SELECT id, channel_id FROM stories WHERE id IN_IDS(:story_ids)")
NEXT_VERSION = Sql(
    "SELECT max(c.last_version, coalesce((SELECT max(version) FROM models "
    "WHERE channel_id = c.channel_id), 0)) FROM channels c WHERE c.channel_id = :channel_id",
    postgresql="SELECT greatest(c.last_version, coalesce((SELECT max(version) FROM models "
    "WHERE channel_id = c.channel_id), 0)) FROM channels c WHERE c.channel_id = :channel_id",
)
SET_LAST_VERSION = Sql("UPDATE channels SET last_version = :version WHERE channel_id = :channel_id")
INSERT = Sql(
    "INSERT INTO models (channel_id, version, config, vocabulary, blob, figures, options, "
    "job_id, created_at) VALUES (:channel_id, :version, :config, :vocabulary, :blob, :figures, "
    ":options, :job_id, :created_at) RETURNING id"
)
INSERT_STORY = Sql(
    "INSERT INTO model_stories (model_id, story_id, position) "
    "VALUES (:model_id, :story_id, :position)"
)
ACTIVATE = Sql("UPDATE channels SET active_model_id = :model_id WHERE channel_id = :channel_id")
JOB_DONE = Sql(
    "UPDATE jobs SET state = 'done', model_id = :model_id, error = NULL, "
    "finished_at = :finished_at WHERE id = :job_id"
)
PRUNE_MODELS = Sql(
    "DELETE FROM models WHERE channel_id = :channel_id "
    "AND id IS NOT (SELECT active_model_id FROM channels WHERE channel_id = :channel_id) "
    "AND version NOT IN (SELECT version FROM models WHERE channel_id = :channel_id "
    "                    ORDER BY version DESC LIMIT :keep)",
    postgresql="DELETE FROM models WHERE channel_id = :channel_id "
    "AND id IS DISTINCT FROM (SELECT active_model_id FROM channels "
    "                         WHERE channel_id = :channel_id) "
    "AND version NOT IN (SELECT version FROM models WHERE channel_id = :channel_id "
    "                    ORDER BY version DESC LIMIT :keep)",
)
_KEPT = (
    "DELETE FROM stories WHERE channel_id = :channel_id "
    "AND id NOT IN (SELECT ms.story_id FROM model_stories ms "
    "               JOIN models m ON m.id = ms.model_id WHERE m.channel_id = :channel_id) "
)
PRUNE_STORIES = Sql(
    _KEPT + "AND id NOT IN (SELECT CAST(j.value AS INTEGER) FROM jobs, json_each(jobs.story_ids) j "  # noqa: S608 - literal fragments
    "               WHERE jobs.channel_id = :channel_id AND jobs.state IN ('queued', 'running'))",
    postgresql=_KEPT + "AND id NOT IN (SELECT CAST(j.value AS BIGINT) FROM jobs, "  # noqa: S608 - literal fragments
    "json_array_elements_text(jobs.story_ids) j WHERE jobs.channel_id = :channel_id "
    "               AND jobs.state IN ('queued', 'running'))",
)
MODEL = Sql("SELECT * FROM model_info WHERE id = :model_id")
ACTIVE_MODEL = Sql("SELECT * FROM model_info WHERE channel_id = :channel_id AND active")
ACTIVE_MODEL_ID = Sql("SELECT active_model_id FROM channels WHERE channel_id = :channel_id")
BLOB = Sql("SELECT blob FROM models WHERE id = :model_id")
MODELS = Sql("SELECT * FROM model_info WHERE channel_id = :channel_id ORDER BY version DESC")
VERSION_ID = Sql("SELECT id FROM models WHERE channel_id = :channel_id AND version = :version")


def model_record(row: Any) -> ModelRecord:
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


class ModelTables(StoreBase):
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
        async with self._transaction() as db:
            if await db.fetchval(LOCK_CHANNEL, channel_id=channel_id) is None:
                raise StorageError("the channel was forgotten while it trained")
            state = await db.fetchval(JOB_STATE, job_id=job_id)
            if state not in ("queued", "running"):
                raise StorageError(ENDED_ELSEWHERE)
            rows = await db.fetch(STORY_CHANNELS, story_ids=db.ids(story_ids))
            found = {int(r["id"]): int(r["channel_id"]) for r in rows}
            if any(found.get(story_id) != channel_id for story_id in story_ids):
                raise StorageError("a story was removed while the model trained on it")
            model_id, pruned = await self._insert_model(
                db,
                job_id=job_id,
                channel_id=channel_id,
                model=model,
                story_ids=story_ids,
                keep_versions=keep_versions,
            )
            record = await self._model_row(db, model_id)
        if pruned:
            await self.checkpoint()  # the pruned stories' text must leave the WAL too
        return record

    async def _model_row(self, db: Connection, model_id: int) -> ModelRecord:
        row = await db.fetchrow(MODEL, model_id=model_id)
        assert row is not None
        return model_record(row)

    async def _insert_model(
        self,
        db: Connection,
        *,
        job_id: int,
        channel_id: int,
        model: NewModel,
        story_ids: Sequence[int],
        keep_versions: int,
    ) -> tuple[int, int]:
        """Inside a transaction holding the channel row: insert the next version, activate it,
        finish its job, prune. Returns (the model's id, how many stories were pruned)."""
        version = 1 + int(await db.fetchval(NEXT_VERSION, channel_id=channel_id))
        await db.execute(SET_LAST_VERSION, version=version, channel_id=channel_id)
        model_id = int(
            await db.fetchval(
                INSERT,
                bulk=True,
                channel_id=channel_id,
                version=version,
                config=json.dumps(model.config),
                vocabulary=json.dumps(list(model.vocabulary)),
                blob=bytes(model.blob),
                figures=json.dumps(model.figures),
                options=json.dumps(model.options),
                job_id=job_id,
                created_at=now_iso(),
            )
        )
        await db.executemany(
            INSERT_STORY,
            [
                {"model_id": model_id, "story_id": story_id, "position": pos}
                for pos, story_id in enumerate(story_ids)
            ],
        )
        await db.execute(ACTIVATE, model_id=model_id, channel_id=channel_id)
        await db.execute(JOB_DONE, model_id=model_id, finished_at=now_iso(), job_id=job_id)
        return model_id, await self._prune(db, channel_id, keep_versions)

    async def _prune(self, db: Connection, channel_id: int, keep_versions: int) -> int:
        """Keep the newest ``keep_versions`` versions and the active one; then delete the
        stories no kept version learned and no open job needs (nothing could ever use them
        again: no rollback reaches them). Returns how many stories were deleted."""
        await db.execute(PRUNE_MODELS, channel_id=channel_id, keep=keep_versions)
        return max(await db.execute(PRUNE_STORIES, channel_id=channel_id), 0)

    async def active_model(self, channel_id: int) -> ModelRecord | None:
        async with self._read() as db:
            row = await db.fetchrow(ACTIVE_MODEL, channel_id=channel_id)
        return None if row is None else model_record(row)

    async def active_model_id(self, channel_id: int) -> int | None:
        async with self._read() as db:
            value = await db.fetchval(ACTIVE_MODEL_ID, channel_id=channel_id)
        return None if value is None else int(value)

    async def model(self, model_id: int) -> ModelRecord | None:
        async with self._read() as db:
            row = await db.fetchrow(MODEL, model_id=model_id)
        return None if row is None else model_record(row)

    async def model_blob(self, model_id: int) -> bytes | None:
        async with self._read() as db:
            value = await db.fetchval(BLOB, bulk=True, model_id=model_id)
        return None if value is None else bytes(value)

    async def list_models(self, channel_id: int) -> list[ModelRecord]:
        async with self._read() as db:
            rows = await db.fetch(MODELS, channel_id=channel_id)
        return [model_record(row) for row in rows]

    async def set_active_version(self, channel_id: int, version: int) -> ModelRecord | None:
        """Roll back (or forward) to a kept version, in one transaction; None if not kept."""
        async with self._transaction() as db:
            model_id = await db.fetchval(VERSION_ID, channel_id=channel_id, version=version)
            if model_id is None:
                return None
            await db.execute(ACTIVATE, model_id=model_id, channel_id=channel_id)
            return await self._model_row(db, model_id)
