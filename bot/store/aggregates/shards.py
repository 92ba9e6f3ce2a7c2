"""The cluster's shard plan (bot/core/shard_plan.py): what both backends share. Reading it and
switching it take the time from the store's clock, which is each backend's own
(``SqliteBase``, ``PostgresBase``)."""

from __future__ import annotations

from typing import Any

from bot.core.store import OpenTraining, ShardPlan, now_iso
from bot.store.base import StoreBase
from bot.store.sql import Sql

PLAN = Sql("SELECT shard_count, previous_count, switch_at, changed_at FROM shard_plan WHERE id = 1")
RECORD = Sql(
    "INSERT INTO shard_plan (id, shard_count, previous_count, switch_at, changed_at) "
    "VALUES (1, :shard_count, NULL, 0, :changed_at) ON CONFLICT (id) DO NOTHING"
)
OPEN_TRAININGS = Sql(
    "SELECT id, channel_id, guild_id, state, owner FROM jobs "
    "WHERE state IN ('queued', 'running') ORDER BY id"
)


def shard_plan(row: Any) -> ShardPlan | None:
    if row is None or row["shard_count"] is None:
        return None
    previous = row["previous_count"]
    return ShardPlan(
        shard_count=int(row["shard_count"]),
        previous_count=None if previous is None else int(previous),
        switch_at=float(row["switch_at"]),
        changed_at=row["changed_at"],
    )


def open_training(row: Any) -> OpenTraining:
    return OpenTraining(
        job_id=int(row["id"]),
        channel_id=int(row["channel_id"]),
        guild_id=None if row["guild_id"] is None else int(row["guild_id"]),
        state=row["state"],
        owner=row["owner"],
    )


class ShardTables(StoreBase):
    async def record_shard_count(self, shard_count: int) -> ShardPlan:
        async with self._transaction() as db:
            await db.execute(RECORD, shard_count=shard_count, changed_at=now_iso())
            row = await db.fetchrow(PLAN)
            plan = shard_plan(row)
        assert plan is not None
        return plan

    async def open_trainings(self) -> list[OpenTraining]:
        async with self._read() as db:
            rows = await db.fetch(OPEN_TRAININGS)
        return [open_training(row) for row in rows]
