"""Training jobs: states, progress, owners (alive by their lock or lease) and progress messages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.core.store import FINAL_STATES, JobRecord, JobState, now_iso
from bot.store.postgres.connection import PostgresBase
from bot.store.sqlite.jobs import job_record  # the same columns, the same record


class JobTables(PostgresBase):
    async def _insert_job(
        self,
        db: Any,
        channel_id: int,
        guild_id: int | None,
        requested_by: int | None,
        requested_by_name: str | None,
        story_ids: Sequence[int],
        options: dict[str, Any],
    ) -> int:
        return int(
            await db.fetchval(
                "INSERT INTO jobs (channel_id, guild_id, requested_by, requested_by_name, state, "
                "story_ids, options, created_at, owner) "
                "VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8) RETURNING id",
                channel_id,
                guild_id,
                requested_by,
                requested_by_name,
                json.dumps(list(story_ids)),
                json.dumps(options),
                now_iso(),
                self.owner,
            )
        )

    async def _job_row(self, db: Any, job_id: int) -> JobRecord:
        row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        assert row is not None
        return job_record(row)

    async def job(self, job_id: int) -> JobRecord | None:
        async with self._read() as db:
            row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        return None if row is None else job_record(row)

    async def jobs(self, channel_id: int, limit: int = 20) -> list[JobRecord]:
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT * FROM jobs WHERE channel_id = $1 ORDER BY id DESC LIMIT $2",
                channel_id,
                limit,
            )
        return [job_record(row) for row in rows]

    async def start_job(self, job_id: int) -> None:
        """Claim a queued job for this process: ``FOR UPDATE SKIP LOCKED`` lets exactly one
        claimant through; the job's owner becomes this store's."""
        async with self._transaction() as db:
            claimed = await db.fetchval(
                "SELECT id FROM jobs WHERE id = $1 AND state = 'queued' FOR UPDATE SKIP LOCKED",
                job_id,
            )
            if claimed is not None:
                await db.execute(
                    "UPDATE jobs SET state = 'running', started_at = $1, owner = $2 WHERE id = $3",
                    now_iso(),
                    self.owner,
                    job_id,
                )

    async def update_job_progress(self, job_id: int, progress: dict[str, Any]) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET progress = $1 WHERE id = $2 AND state IN ('queued', 'running')",
                json.dumps(progress),
                job_id,
            )

    async def finish_job(self, job_id: int, state: JobState, error: str | None = None) -> None:
        """Record a job's final state (not 'done': ``activate_model`` does that)."""
        if state not in FINAL_STATES or state == JobState.DONE:
            raise ValueError(f"finish_job cannot set state {state!r}")
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET state = $1, error = $2, finished_at = $3 "
                "WHERE id = $4 AND state IN ('queued', 'running')",
                str(state),
                error,
                now_iso(),
                job_id,
            )

    async def still_open(self, job_ids: Sequence[int]) -> set[int]:
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT id FROM jobs WHERE id = ANY($1::bigint[]) "
                "AND state IN ('queued', 'running')",
                list(job_ids),
            )
        return {int(row["id"]) for row in rows}

    @staticmethod
    async def _end_open_jobs(db: Any, channel_id: int, state: JobState, error: str) -> None:
        """Inside a transaction: end the channel's open jobs (another process's trainings)."""
        await db.execute(
            "UPDATE jobs SET state = $1, error = $2, finished_at = $3 "
            "WHERE channel_id = $4 AND state IN ('queued', 'running')",
            str(state),
            error,
            now_iso(),
            channel_id,
        )

    async def orphaned_jobs(self) -> list[JobRecord]:
        """Open jobs whose owner is gone (``owners.py``: neither its advisory lock held nor its
        lease running), on whatever host it ran. A live process's jobs (another shard's) stay,
        across a database restart too."""
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"
            )
            live = await self._live_owners(db, [r["owner"] for r in rows])
        return [job_record(row) for row in rows if row["owner"] not in live]

    async def set_progress_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET progress_channel_id = $1, progress_message_id = $2 WHERE id = $3",
                channel_id,
                message_id,
                job_id,
            )

    async def clear_progress_message(self, job_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET progress_channel_id = NULL, progress_message_id = NULL "
                "WHERE id = $1",
                job_id,
            )

    async def stale_progress_messages(self) -> list[JobRecord]:
        """Ended jobs whose progress message was never updated to show the end."""
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT * FROM jobs WHERE progress_message_id IS NOT NULL "
                "AND state NOT IN ('queued', 'running') ORDER BY id"
            )
        return [job_record(row) for row in rows]
