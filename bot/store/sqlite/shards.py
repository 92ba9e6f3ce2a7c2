"""The cluster's shard plan (bot/core/shard_plan.py): which shard count answers interactions."""

from __future__ import annotations

import time
from typing import Any

from bot.core.store import OpenTraining, PlanRead, ShardPlan, now_iso
from bot.store.sqlite.connection import SqliteBase

PLAN = "SELECT shard_count, previous_count, switch_at, changed_at FROM shard_plan WHERE id = 1"
OPEN_TRAININGS = (
    "SELECT id, channel_id, guild_id, state, owner FROM jobs "
    "WHERE state IN ('queued', 'running') ORDER BY id"
)


def shard_plan(row: Any) -> ShardPlan | None:
    if row is None:
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


class ShardTables(SqliteBase):
    """One SQLite file is one machine's: its clock is the store's clock."""

    async def shard_plan(self) -> PlanRead:
        async with self._lock:
            read_at = time.time()  # before the read: a later change is not in it
            row = await self._one(PLAN)
        return PlanRead(shard_plan(row), read_at)

    async def record_shard_count(self, shard_count: int) -> ShardPlan:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO shard_plan (id, shard_count, previous_count, switch_at, changed_at) "
                "VALUES (1, ?, NULL, 0, ?) ON CONFLICT (id) DO NOTHING",
                (shard_count, now_iso()),
            )
            row = await self._one(PLAN)
        plan = shard_plan(row)
        assert plan is not None
        return plan

    async def switch_shard_count(
        self, expected: int, shard_count: int, lead_seconds: float
    ) -> ShardPlan | None:
        async with self._transaction() as db:
            # BEGIN IMMEDIATE holds the write lock: the time taken here precedes the commit.
            await db.execute(
                "UPDATE shard_plan SET previous_count = shard_count, shard_count = ?, "
                "switch_at = ?, changed_at = ? WHERE id = 1 AND shard_count = ?",
                (shard_count, time.time() + lead_seconds, now_iso(), expected),
            )
            row = await self._one(PLAN)
        plan = shard_plan(row)
        if plan is None or plan.shard_count != shard_count or plan.previous_count != expected:
            return None
        return plan

    async def open_trainings(self) -> list[OpenTraining]:
        async with self._lock:
            rows = await self._all(OPEN_TRAININGS)
        return [open_training(row) for row in rows]
