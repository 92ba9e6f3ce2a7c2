"""Training jobs: their states, progress, owners and progress messages."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from bot.core.store import FINAL_STATES, JobRecord, JobState, now_iso
from bot.owner import owner_alive
from bot.store.sqlite.connection import SqliteBase


class JobTables(SqliteBase):
    async def _insert_job(
        self,
        channel_id: int,
        guild_id: int | None,
        requested_by: int | None,
        requested_by_name: str | None,
        story_ids: Sequence[int],
        options: dict[str, Any],
    ) -> int:
        cursor = await self._db.execute(
            "INSERT INTO jobs (channel_id, guild_id, requested_by, requested_by_name, state, "
            "story_ids, options, created_at, owner) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
            (
                channel_id,
                guild_id,
                requested_by,
                requested_by_name,
                json.dumps(list(story_ids)),
                json.dumps(options),
                now_iso(),
                self.owner,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def _job_row(self, job_id: int) -> JobRecord:
        row = await self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        assert row is not None
        return job_record(row)

    async def job(self, job_id: int) -> JobRecord | None:
        async with self._lock:
            row = await self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else job_record(row)

    async def jobs(self, channel_id: int, limit: int = 20) -> list[JobRecord]:
        async with self._lock:
            rows = await self._all(
                "SELECT * FROM jobs WHERE channel_id = ? ORDER BY id DESC LIMIT ?",
                (channel_id, limit),
            )
        return [job_record(row) for row in rows]

    async def start_job(self, job_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET state = 'running', started_at = ? "
                "WHERE id = ? AND state = 'queued'",
                (now_iso(), job_id),
            )

    async def update_job_progress(self, job_id: int, progress: dict[str, Any]) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET progress = ? WHERE id = ? AND state IN ('queued', 'running')",
                (json.dumps(progress), job_id),
            )

    async def finish_job(self, job_id: int, state: JobState, error: str | None = None) -> None:
        """Record a job's final state (not 'done': ``activate_model`` does that)."""
        if state not in FINAL_STATES or state == JobState.DONE:
            raise ValueError(f"finish_job cannot set state {state!r}")
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET state = ?, error = ?, finished_at = ? "
                "WHERE id = ? AND state IN ('queued', 'running')",
                (str(state), error, now_iso(), job_id),
            )

    async def still_open(self, job_ids: Sequence[int]) -> set[int]:
        async with self._lock:
            rows = await self._all(
                "SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?)) "
                "AND state IN ('queued', 'running')",
                (json.dumps(list(job_ids)),),
            )
        return {int(row["id"]) for row in rows}

    async def _end_open_jobs(self, channel_id: int, state: JobState, error: str) -> None:
        """Inside a transaction: end the channel's open jobs (another process's trainings)."""
        await self._db.execute(
            "UPDATE jobs SET state = ?, error = ?, finished_at = ? "
            "WHERE channel_id = ? AND state IN ('queued', 'running')",
            (str(state), error, now_iso(), channel_id),
        )

    async def orphaned_jobs(self) -> list[JobRecord]:
        """Open jobs whose owner process is gone (``bot.owner``); a live process's stay."""
        async with self._lock:
            rows = await self._all(
                "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"
            )
        return [
            job_record(row)
            for row in rows
            if not owner_alive(row["owner"], SqliteBase._open_owners)
        ]

    async def set_progress_message(self, job_id: int, channel_id: int, message_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET progress_channel_id = ?, progress_message_id = ? WHERE id = ?",
                (channel_id, message_id, job_id),
            )

    async def clear_progress_message(self, job_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE jobs SET progress_channel_id = NULL, progress_message_id = NULL "
                "WHERE id = ?",
                (job_id,),
            )

    async def stale_progress_messages(self) -> list[JobRecord]:
        """Ended jobs whose progress message was never updated to show the end."""
        async with self._lock:
            rows = await self._all(
                "SELECT * FROM jobs WHERE progress_message_id IS NOT NULL "
                "AND state NOT IN ('queued', 'running') ORDER BY id"
            )
        return [job_record(row) for row in rows]


def json_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    data: Iterable[Any] = json.loads(value)
    return tuple(int(item) for item in data)


def job_record(row: aiosqlite.Row) -> JobRecord:
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
