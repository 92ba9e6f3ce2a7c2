"""Consent and a member's data (the SQLite store's ``privacy`` module, in PostgreSQL)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from bot.core.store import (
    HistorySpan,
    JobState,
    RemovalPolicy,
    StoryRebuild,
    StoryRecord,
    UserDataDeletion,
    UserRecords,
    now_iso,
)
from bot.store.postgres.connection import BULK_TIMEOUT
from bot.store.postgres.stories import StoryTables
from bot.store.sqlite.privacy import story_record, user_records

# A request covers one server (guild_id = the parameter) or, with NULL, every server.


class PrivacyTables(StoryTables):
    async def history_spans(self, story_ids: Sequence[int]) -> dict[int, HistorySpan]:
        """The given stories that were learned from history, with their messages' span."""
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT story_id, count(*) AS n, min(created_at) AS first, "
                "max(created_at) AS last FROM story_messages "
                "WHERE story_id = ANY($1::bigint[]) GROUP BY story_id",
                list(story_ids),
            )
        return {int(r["story_id"]): HistorySpan(int(r["n"]), r["first"], r["last"]) for r in rows}

    async def set_opted_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        async with self._transaction() as db:
            if opted_out:
                await db.execute(
                    "INSERT INTO privacy_optouts (guild_id, user_id, created_at) "
                    "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    guild_id,
                    user_id,
                    now_iso(),
                )
            else:
                await db.execute(
                    "DELETE FROM privacy_optouts WHERE guild_id = $1 AND user_id = $2",
                    guild_id,
                    user_id,
                )

    async def opted_out(self, guild_id: int) -> frozenset[int]:
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT user_id FROM privacy_optouts WHERE guild_id = $1", guild_id
            )
        return frozenset(int(row["user_id"]) for row in rows)

    async def set_history_enabled(self, guild_id: int, enabled: bool, by: int | None) -> None:
        async with self._transaction() as db:
            if enabled:
                await db.execute(
                    "INSERT INTO history_guilds (guild_id, enabled_by, created_at) "
                    "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    guild_id,
                    by,
                    now_iso(),
                )
            else:
                await db.execute("DELETE FROM history_guilds WHERE guild_id = $1", guild_id)

    async def history_enabled(self, guild_id: int) -> bool:
        async with self._read() as db:
            row = await db.fetchrow("SELECT 1 FROM history_guilds WHERE guild_id = $1", guild_id)
        return row is not None

    async def user_records(self, user_id: int, guild_id: int | None) -> UserRecords:
        async with self._read() as db:
            uploads = await db.fetch(
                "SELECT s.id, s.channel_id, s.filename, s.uploader_id, s.uploader_name, s.sha256, "
                "s.encoding, s.bytes, s.symbols, s.vocabulary_size, s.created_at, s.text FROM "
                "stories s WHERE s.uploader_id = $1 AND NOT EXISTS (SELECT 1 FROM story_messages x "
                "WHERE x.story_id = s.id) AND ($2::bigint IS NULL OR s.channel_id IN (SELECT "
                "channel_id FROM channels WHERE guild_id = $2)) ORDER BY s.id",
                user_id,
                guild_id,
                timeout=BULK_TIMEOUT,
            )
            messages = await db.fetch(
                "SELECT s.id, s.channel_id, s.filename, s.uploader_id, s.uploader_name, s.sha256, "
                "s.encoding, s.bytes, s.symbols, s.vocabulary_size, s.created_at, m.message_id, "
                "m.author_id, m.text AS message_text, m.created_at AS message_at FROM "
                "story_messages m JOIN stories s ON s.id = m.story_id WHERE m.author_id = $1 AND "
                "($2::bigint IS NULL OR s.channel_id IN (SELECT channel_id FROM channels WHERE "
                "guild_id = $2)) ORDER BY s.id, m.position",
                user_id,
                guild_id,
            )
            guilds = await db.fetch(
                "SELECT guild_id FROM privacy_optouts WHERE user_id = $1 "
                "AND ($2::bigint IS NULL OR guild_id = $2) ORDER BY guild_id",
                user_id,
                guild_id,
            )
        return user_records(uploads, messages, guilds)

    async def user_channels(self, user_id: int, guild_id: int | None) -> list[int]:
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT DISTINCT s.channel_id FROM stories s WHERE ((s.uploader_id = $1 AND NOT "
                "EXISTS (SELECT 1 FROM story_messages x WHERE x.story_id = s.id)) OR EXISTS "
                "(SELECT 1 FROM story_messages m WHERE m.story_id = s.id AND m.author_id = $1)) "
                "AND ($2::bigint IS NULL OR s.channel_id IN (SELECT channel_id FROM channels WHERE "
                "guild_id = $2)) ORDER BY s.channel_id",
                user_id,
                guild_id,
            )
        return [int(row["channel_id"]) for row in rows]

    async def delete_user_data(
        self,
        user_id: int,
        guild_id: int | None,
        *,
        policy: RemovalPolicy,
        rebuild: StoryRebuild,
        cancel_message: str,
    ) -> list[UserDataDeletion]:
        """See the store protocol. One transaction; the affected channels' rows are locked."""
        results: list[UserDataDeletion] = []
        async with self._transaction() as db:
            uploads = await db.fetch(
                "SELECT s.id, s.channel_id, s.filename, s.uploader_id, s.uploader_name, s.sha256, "
                "s.encoding, s.bytes, s.symbols, s.vocabulary_size, s.created_at FROM stories s "
                "WHERE s.uploader_id = $1 AND NOT EXISTS (SELECT 1 FROM story_messages x WHERE "
                "x.story_id = s.id) AND ($2::bigint IS NULL OR s.channel_id IN (SELECT channel_id "
                "FROM channels WHERE guild_id = $2))",
                user_id,
                guild_id,
            )
            touched = await db.fetch(
                "SELECT s.id, s.channel_id, s.filename, s.uploader_id, s.uploader_name, s.sha256, "
                "s.encoding, s.bytes, s.symbols, s.vocabulary_size, s.created_at FROM stories s "
                "WHERE EXISTS (SELECT 1 FROM story_messages m WHERE m.story_id = s.id AND "
                "m.author_id = $1) AND ($2::bigint IS NULL OR s.channel_id IN (SELECT channel_id "
                "FROM channels WHERE guild_id = $2))",
                user_id,
                guild_id,
            )
            by_channel: dict[int, list[tuple[StoryRecord, bool]]] = defaultdict(list)
            for row in uploads:
                by_channel[int(row["channel_id"])].append((story_record(row), True))
            for row in touched:
                by_channel[int(row["channel_id"])].append((story_record(row), False))
            for channel_id in sorted(by_channel):
                await db.execute(
                    "SELECT 1 FROM channels WHERE channel_id = $1 FOR UPDATE", channel_id
                )
                await self._end_open_jobs(db, channel_id, JobState.CANCELLED, cancel_message)
                stories = sorted(by_channel[channel_id], key=lambda pair: pair[0].id)
                removed, rewritten = [], []
                for story, is_upload in stories:
                    if is_upload or not await _rebuild(db, story.id, user_id, rebuild):
                        removed.append(story.id)
                    else:
                        rewritten.append(story.id)
                results.append(
                    await self._apply_deletion(
                        db, channel_id, [s for s, _ in stories], removed, rewritten, policy
                    )
                )
            # Their name and id go from the rows that remain, in the request's scope only.
            await db.execute(
                "UPDATE stories SET uploader_id = NULL, uploader_name = NULL WHERE uploader_id = "
                "$1 AND channel_id IN (SELECT channel_id FROM channels WHERE ($2::bigint IS NULL "
                "OR guild_id = $2))",
                user_id,
                guild_id,
            )
            await db.execute(
                "UPDATE jobs SET requested_by = NULL, requested_by_name = NULL WHERE requested_by "
                "= $1 AND ($2::bigint IS NULL OR guild_id = $2)",
                user_id,
                guild_id,
            )
            await db.execute(
                "UPDATE history_guilds SET enabled_by = NULL WHERE enabled_by = $1 AND ($2::bigint "
                "IS NULL OR guild_id = $2)",
                user_id,
                guild_id,
            )
        return results

    async def _apply_deletion(
        self,
        db: Any,
        channel_id: int,
        stories: list[StoryRecord],
        removed: list[int],
        rewritten: list[int],
        policy: RemovalPolicy,
    ) -> UserDataDeletion:
        channel = await db.fetchrow(
            "SELECT guild_id, name FROM channels WHERE channel_id = $1", channel_id
        )
        assert channel is not None  # stories hold a foreign key to their channel
        facts, active_after, job = await self._remove_stories(
            db, stories[0], removed, rewritten, channel["guild_id"], policy, None, None
        )
        return UserDataDeletion(
            channel_id=channel_id,
            guild_id=channel["guild_id"],
            channel_name=channel["name"],
            removed_story_ids=tuple(removed),
            rewritten_story_ids=tuple(rewritten),
            deleted_versions=facts.deleted_versions,
            active_version=active_after,
            retrain_job=job,
        )


async def _rebuild(db: Any, story_id: int, user_id: int, rebuild: StoryRebuild) -> bool:
    """Delete the member's messages of a history story and rebuild its text from the rest;
    False if too little is left (the caller removes the story)."""
    await db.execute(
        "DELETE FROM story_messages WHERE story_id = $1 AND author_id = $2", story_id, user_id
    )
    rows = await db.fetch(
        "SELECT text FROM story_messages WHERE story_id = $1 ORDER BY position", story_id
    )
    rebuilt = rebuild([str(row["text"]) for row in rows])
    if rebuilt is None:
        return False
    await db.execute(
        "UPDATE stories SET text = $1, sha256 = $2, bytes = $3, symbols = $4, "
        "vocabulary_size = $5 WHERE id = $6",
        rebuilt.text,
        rebuilt.sha256,
        rebuilt.bytes,
        rebuilt.symbols,
        rebuilt.vocabulary_size,
        story_id,
    )
    return True
