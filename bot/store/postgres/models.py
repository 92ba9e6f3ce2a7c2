"""Models: activating a trained one (and pruning old versions), reading, rolling back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.core.store import ModelRecord, NewModel, now_iso
from bot.errors import StorageError
from bot.store.postgres.connection import BULK_TIMEOUT, PostgresBase
from bot.store.sqlite.models import (  # the same columns, the same record
    ENDED_ELSEWHERE,
    model_record,
)


class ModelTables(PostgresBase):
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
            known = await db.fetchval(
                "SELECT 1 FROM channels WHERE channel_id = $1 FOR UPDATE", channel_id
            )
            if known is None:
                raise StorageError("the channel was forgotten while it trained")
            # delete_user_data ends other processes' jobs holding the same channel row lock
            state = await db.fetchval("SELECT state FROM jobs WHERE id = $1 FOR UPDATE", job_id)
            if state not in ("queued", "running"):
                raise StorageError(ENDED_ELSEWHERE)
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
            return await self._model_row(db, model_id)

    async def _model_row(self, db: Any, model_id: int) -> ModelRecord:
        row = await db.fetchrow("SELECT * FROM model_info WHERE id = $1", model_id)
        assert row is not None
        return model_record(row)

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
        """Inside a transaction holding the channel row: insert the next version, activate it,
        finish its job, prune. Returns the model's id."""
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
                timeout=BULK_TIMEOUT,
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
        """Keep the newest ``keep_versions`` versions and the active one; then delete the
        stories no kept version learned and no open job needs (as the SQLite store)."""
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
        return None if row is None else model_record(row)

    async def active_model_id(self, channel_id: int) -> int | None:
        async with self._read() as db:
            value = await db.fetchval(
                "SELECT active_model_id FROM channels WHERE channel_id = $1", channel_id
            )
        return None if value is None else int(value)

    async def model(self, model_id: int) -> ModelRecord | None:
        async with self._read() as db:
            row = await db.fetchrow("SELECT * FROM model_info WHERE id = $1", model_id)
        return None if row is None else model_record(row)

    async def model_blob(self, model_id: int) -> bytes | None:
        async with self._read() as db:
            value = await db.fetchval(
                "SELECT blob FROM models WHERE id = $1", model_id, timeout=BULK_TIMEOUT
            )
        return None if value is None else bytes(value)

    async def list_models(self, channel_id: int) -> list[ModelRecord]:
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT * FROM model_info WHERE channel_id = $1 ORDER BY version DESC", channel_id
            )
        return [model_record(row) for row in rows]

    async def set_active_version(self, channel_id: int, version: int) -> ModelRecord | None:
        """Roll back (or forward) to a kept version, in one transaction; None if not kept."""
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
            return await self._model_row(db, model_id)
