"""What is PostgreSQL's own in the aggregates: claiming a queued job (``FOR UPDATE SKIP
LOCKED``) and the shard plan read and switched by the database's clock (several hosts share
it, so no host's clock decides)."""

from __future__ import annotations

from bot.core.store import PlanRead, ShardPlan, now_iso
from bot.store.aggregates.shards import shard_plan
from bot.store.postgres.connection import PostgresBase
from bot.store.sql import Sql

CLAIM = Sql("SELECT id FROM jobs WHERE id = :job_id AND state = 'queued' FOR UPDATE SKIP LOCKED")
START = Sql(
    "UPDATE jobs SET state = 'running', started_at = :started_at, owner = :owner WHERE id = :job_id"
)
# statement_timestamp(): when the statement arrived, before its snapshot was taken
PLAN_AND_CLOCK = Sql(
    "SELECT shard_count, previous_count, switch_at, changed_at, "
    "extract(epoch FROM statement_timestamp()) AS read_at "
    "FROM (SELECT 1) AS one LEFT JOIN shard_plan ON shard_plan.id = 1"
)
# clock_timestamp(): the time of this last statement, just before the commit
SWITCH = Sql(
    "UPDATE shard_plan SET previous_count = shard_count, shard_count = :shard_count, "
    "switch_at = extract(epoch FROM clock_timestamp()) + :lead_seconds, "
    "changed_at = :changed_at WHERE id = 1 AND shard_count = :expected "
    "RETURNING shard_count, previous_count, switch_at, changed_at"
)


class PostgresOwn(PostgresBase):
    async def start_job(self, job_id: int) -> None:
        """Claim a queued job for this process: ``FOR UPDATE SKIP LOCKED`` lets exactly one
        claimant through; the job's owner becomes this store's."""
        async with self._transaction() as db:
            if await db.fetchval(CLAIM, job_id=job_id) is not None:
                await db.execute(START, started_at=now_iso(), owner=self.owner, job_id=job_id)

    async def shard_plan(self) -> PlanRead:
        async with self._read() as db:
            row = await db.fetchrow(PLAN_AND_CLOCK)
        return PlanRead(shard_plan(row), float(row["read_at"]))

    async def switch_shard_count(
        self, expected: int, shard_count: int, lead_seconds: float
    ) -> ShardPlan | None:
        async with self._transaction() as db:
            row = await db.fetchrow(
                SWITCH,
                shard_count=shard_count,
                lead_seconds=lead_seconds,
                changed_at=now_iso(),
                expected=expected,
            )
        return shard_plan(row)
