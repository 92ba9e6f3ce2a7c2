"""The cluster's shard plan (bot/core/shard_plan.py) on the shared database: its clock decides."""

from __future__ import annotations

from bot.core.store import OpenTraining, PlanRead, ShardPlan, now_iso
from bot.store.postgres.connection import PostgresBase
from bot.store.sqlite.shards import OPEN_TRAININGS, PLAN, open_training, shard_plan


class ShardTables(PostgresBase):
    async def shard_plan(self) -> PlanRead:
        async with self._read() as db:
            # statement_timestamp(): when the statement arrived, before its snapshot was taken
            row = await db.fetchrow(
                "SELECT shard_count, previous_count, switch_at, changed_at, "
                "extract(epoch FROM statement_timestamp()) AS read_at "
                "FROM (SELECT 1) AS one LEFT JOIN shard_plan ON shard_plan.id = 1"
            )
        read_at = float(row["read_at"])
        return PlanRead(None if row["shard_count"] is None else shard_plan(row), read_at)

    async def record_shard_count(self, shard_count: int) -> ShardPlan:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO shard_plan (id, shard_count, previous_count, switch_at, changed_at) "
                "VALUES (1, $1, NULL, 0, $2) ON CONFLICT (id) DO NOTHING",
                shard_count,
                now_iso(),
            )
            row = await db.fetchrow(PLAN)
        plan = shard_plan(row)
        assert plan is not None
        return plan

    async def switch_shard_count(
        self, expected: int, shard_count: int, lead_seconds: float
    ) -> ShardPlan | None:
        async with self._transaction() as db:
            # clock_timestamp(): the time of this last statement, just before the commit
            row = await db.fetchrow(
                "UPDATE shard_plan SET previous_count = shard_count, shard_count = $1, "
                "switch_at = extract(epoch FROM clock_timestamp()) + $2, changed_at = $3 "
                "WHERE id = 1 AND shard_count = $4 "
                "RETURNING shard_count, previous_count, switch_at, changed_at",
                shard_count,
                lead_seconds,
                now_iso(),
                expected,
            )
        return shard_plan(row)

    async def open_trainings(self) -> list[OpenTraining]:
        async with self._read() as db:
            rows = await db.fetch(OPEN_TRAININGS)
        return [open_training(row) for row in rows]
