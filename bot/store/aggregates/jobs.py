"""Training jobs: states, progress, owners and progress messages. Claiming a queued job
(``start_job``) is each backend's own (``SqliteBase``, ``PostgresBase``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from bot.core.store import FINAL_STATES, JobRecord, JobState, now_iso
from bot.store.base import StoreBase
from bot.store.sql import Connection, Sql

INSERT = Sql(
    "INSERT INTO jobs (channel_id, guild_id, requested_by, requested_by_name, state, "
    "story_ids, options, created_at, owner) VALUES (:channel_id, :guild_id, :requested_by, "
    ":requested_by_name, 'queued', :story_ids, :options, :created_at, :owner) RETURNING id"
)
JOB = Sql("SELECT * FROM jobs WHERE id = :job_id")
JOBS = Sql("SELECT * FROM jobs WHERE channel_id = :channel_id ORDER BY id DESC LIMIT :limit")
PROGRESS = Sql(
    "UPDATE jobs SET progress = :progress WHERE id = :job_id AND state IN ('queued', 'running')"
)
FINISH = Sql(
    "UPDATE jobs SET state = :state, error = :error, finished_at = :finished_at "
    "WHERE id = :job_id AND state IN ('queued', 'running')"
)
STILL_OPEN = Sql("SELECT id FROM jobs WHERE id IN_IDS(:job_ids) AND state IN ('queued', 'running')")
END_OPEN = Sql(
    "UPDATE jobs SET state = :state, error = :error, finished_at = :finished_at "
    "WHERE channel_id = :channel_id AND state IN ('queued', 'running')"
)
OPEN_JOBS = Sql("SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY id")
SET_MESSAGE = Sql(
    "UPDATE jobs SET progress_channel_id = :channel_id, progress_message_id = :message_id "
    "WHERE id = :job_id"
)
CLEAR_MESSAGE = Sql(
    "UPDATE jobs SET progress_channel_id = NULL, progress_message_id = NULL WHERE id = :job_id"
)
STALE_MESSAGES = Sql(
    "SELECT * FROM jobs WHERE progress_message_id IS NOT NULL "
    "AND state NOT IN ('queued', 'running') ORDER BY id"
)


class JobTables(StoreBase):
    async def _insert_job(
        self,
        db: Connection,
        channel_id: int,
        guild_id: int | None,
        requested_by: int | None,
        requested_by_name: str | None,
        story_ids: Sequence[int],
        options: dict[str, Any],
    ) -> int:
        return int(
            await db.fetchval(
                INSERT,
                channel_id=channel_id,
                guild_id=guild_id,
                requested_by=requested_by,
                requested_by_name=requested_by_name,
                story_ids=json.dumps(list(story_ids)),
                options=json.dumps(options),
                created_at=now_iso(),
                owner=self.owner,
            )
        )

    async def _job_row(self, db: Connection, job_id: int) -> JobRecord:
        row = await db.fetchrow(JOB, job_id=job_id)
        assert row is not None
        return job_record(row)

    async def job(self, job_id: int) -> JobRecord | None:
        async with self._read() as db:
            row = await db.fetchrow(JOB, job_id=job_id)
        return None if row is None else job_record(row)

    async def jobs(self, channel_id: int, limit: int = 20) -> list[JobRecord]:
        async with self._read() as db:
            rows = await db.fetch(JOBS, channel_id=channel_id, limit=limit)
        return [job_record(row) for row in rows]

    async def update_job_progress(self, job_id: int, progress: dict[str, Any]) -> None:
        async with self._transaction() as db:
            await db.execute(PROGRESS, progress=json.dumps(progress), job_id=job_id)

    async def finish_job(self, job_id: int, state: JobState, error: str | None = None) -> None:
        """Record a job's final state (not 'done': ``activate_model`` does that)."""
        if state not in FINAL_STATES or state == JobState.DONE:
            raise ValueError(f"finish_job cannot set state {state!r}")
        async with self._transaction() as db:
            await db.execute(
                FINISH, state=str(state), error=error, finished_at=now_iso(), job_id=job_id
            )

    async def still_open(self, job_ids: Sequence[int]) -> set[int]:
        async with self._read() as db:
            rows = await db.fetch(STILL_OPEN, job_ids=db.ids(job_ids))
        return {int(row["id"]) for row in rows}

    @staticmethod
    async def _end_open_jobs(db: Connection, channel_id: int, state: JobState, error: str) -> None:
        """Inside a transaction: end the channel's open jobs (another process's trainings)."""
        await db.execute(
            END_OPEN, state=str(state), error=error, finished_at=now_iso(), channel_id=channel_id
        )

    async def orphaned_jobs(self) -> list[JobRecord]:
        """Open jobs whose owner process is gone (``_live_owners``: on PostgreSQL neither its
        advisory lock held nor its lease running, on whatever host it ran). A live process's
        jobs (another shard's) stay."""
        async with self._read() as db:
            rows = await db.fetch(OPEN_JOBS)
            live = await self._live_owners(db, [r["owner"] for r in rows])
        return [job_record(row) for row in rows if row["owner"] not in live]

    async def set_progress_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                SET_MESSAGE, channel_id=channel_id, message_id=message_id, job_id=job_id
            )

    async def clear_progress_message(self, job_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(CLEAR_MESSAGE, job_id=job_id)

    async def stale_progress_messages(self) -> list[JobRecord]:
        """Ended jobs whose progress message was never updated to show the end."""
        async with self._read() as db:
            rows = await db.fetch(STALE_MESSAGES)
        return [job_record(row) for row in rows]


def json_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    data: Iterable[Any] = json.loads(value)
    return tuple(int(item) for item in data)


def job_record(row: Any) -> JobRecord:
    return JobRecord(
        id=row["id"],
        channel_id=row["channel_id"],
        guild_id=row["guild_id"],
        requested_by=row["requested_by"],
        requested_by_name=row["requested_by_name"],
        state=JobState(row["state"]),
        story_ids=json_ids(row["story_ids"]),
        options=json.loads(row["options"]),
        progress=None if row["progress"] is None else json.loads(row["progress"]),
        error=row["error"],
        model_id=row["model_id"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        progress_channel_id=row["progress_channel_id"],
        progress_message_id=row["progress_message_id"],
    )
