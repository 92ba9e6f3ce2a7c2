"""Consent and a member's data: opt-outs, the servers that allow history, a member's records and
their deletion (rebuilding history stories without their messages, applying the core's policy).

A request covers one server (``:guild_id``) or, with NULL, every server."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from bot.core.store import (
    HistorySpan,
    JobState,
    RemovalPolicy,
    StoryMessage,
    StoryRebuild,
    StoryRecord,
    UserDataDeletion,
    UserRecords,
    now_iso,
)
from bot.store.aggregates.stories import StoryTables
from bot.store.base import LOCK_CHANNEL
from bot.store.sql import Connection, Sql

_STORY = (
    "s.id, s.channel_id, s.filename, s.uploader_id, s.uploader_name, s.sha256, s.encoding, "
    "s.bytes, s.symbols, s.vocabulary_size, s.created_at"
)
_IN_SCOPE = (
    "(CAST(:guild_id AS BIGINT) IS NULL OR s.channel_id IN "
    "(SELECT channel_id FROM channels WHERE guild_id = :guild_id))"
)
_UPLOADS = (
    "stories s WHERE s.uploader_id = :user_id AND NOT EXISTS "  # noqa: S608 - literal fragments
    f"(SELECT 1 FROM story_messages x WHERE x.story_id = s.id) AND {_IN_SCOPE}"
)
SPANS = Sql(
    "SELECT story_id, count(*) AS n, min(created_at) AS first, max(created_at) AS last "
    "FROM story_messages WHERE story_id IN_IDS(:story_ids) GROUP BY story_id"
)
OPT_OUT = Sql(
    "INSERT INTO privacy_optouts (guild_id, user_id, created_at) "
    "VALUES (:guild_id, :user_id, :created_at) ON CONFLICT DO NOTHING"
)
OPT_IN = Sql("DELETE FROM privacy_optouts WHERE guild_id = :guild_id AND user_id = :user_id")
OPTED_OUT = Sql("SELECT user_id FROM privacy_optouts WHERE guild_id = :guild_id")
ENABLE_HISTORY = Sql(
    "INSERT INTO history_guilds (guild_id, enabled_by, created_at) "
    "VALUES (:guild_id, :by, :created_at) ON CONFLICT DO NOTHING"
)
DISABLE_HISTORY = Sql("DELETE FROM history_guilds WHERE guild_id = :guild_id")
HISTORY_ENABLED = Sql("SELECT 1 FROM history_guilds WHERE guild_id = :guild_id")
UPLOADS_WITH_TEXT = Sql(f"SELECT {_STORY}, s.text FROM {_UPLOADS} ORDER BY s.id")  # noqa: S608 - literal fragments
MESSAGES = Sql(
    f"SELECT {_STORY}, m.message_id, m.author_id, m.text AS message_text, "  # noqa: S608 - literal fragments
    "m.created_at AS message_at FROM story_messages m JOIN stories s ON s.id = m.story_id "
    f"WHERE m.author_id = :user_id AND {_IN_SCOPE} ORDER BY s.id, m.position"
)
OPTED_OUT_GUILDS = Sql(
    "SELECT guild_id FROM privacy_optouts WHERE user_id = :user_id "
    "AND (CAST(:guild_id AS BIGINT) IS NULL OR guild_id = :guild_id) ORDER BY guild_id"
)
USER_CHANNELS = Sql(
    "SELECT DISTINCT s.channel_id FROM stories s WHERE ((s.uploader_id = :user_id AND NOT "  # noqa: S608 - literal fragments
    "EXISTS (SELECT 1 FROM story_messages x WHERE x.story_id = s.id)) OR EXISTS "
    "(SELECT 1 FROM story_messages m WHERE m.story_id = s.id AND m.author_id = :user_id)) "
    f"AND {_IN_SCOPE} ORDER BY s.channel_id"
)
UPLOADS = Sql(f"SELECT {_STORY} FROM {_UPLOADS}")  # noqa: S608 - literal fragments
TOUCHED = Sql(
    f"SELECT {_STORY} FROM stories s WHERE EXISTS (SELECT 1 FROM story_messages m "  # noqa: S608 - literal fragments
    f"WHERE m.story_id = s.id AND m.author_id = :user_id) AND {_IN_SCOPE}"
)
FORGET_UPLOADER = Sql(
    "UPDATE stories SET uploader_id = NULL, uploader_name = NULL WHERE uploader_id = :user_id "
    "AND channel_id IN (SELECT channel_id FROM channels "
    "WHERE (CAST(:guild_id AS BIGINT) IS NULL OR guild_id = :guild_id))"
)
FORGET_REQUESTER = Sql(
    "UPDATE jobs SET requested_by = NULL, requested_by_name = NULL WHERE requested_by = :user_id "
    "AND (CAST(:guild_id AS BIGINT) IS NULL OR guild_id = :guild_id)"
)
FORGET_ENABLER = Sql(
    "UPDATE history_guilds SET enabled_by = NULL WHERE enabled_by = :user_id "
    "AND (CAST(:guild_id AS BIGINT) IS NULL OR guild_id = :guild_id)"
)
DELETE_MESSAGES = Sql(
    "DELETE FROM story_messages WHERE story_id = :story_id AND author_id = :user_id"
)
MESSAGE_TEXTS = Sql("SELECT text FROM story_messages WHERE story_id = :story_id ORDER BY position")
REWRITE = Sql(
    "UPDATE stories SET text = :text, sha256 = :sha256, bytes = :bytes, symbols = :symbols, "
    "vocabulary_size = :vocabulary_size WHERE id = :story_id"
)
CHANNEL = Sql("SELECT guild_id, name FROM channels WHERE channel_id = :channel_id")


class PrivacyTables(StoryTables):
    async def history_spans(self, story_ids: Sequence[int]) -> dict[int, HistorySpan]:
        """The given stories that were learned from history, with their messages' span."""
        async with self._read() as db:
            rows = await db.fetch(SPANS, story_ids=db.ids(story_ids))
        return {int(r["story_id"]): HistorySpan(int(r["n"]), r["first"], r["last"]) for r in rows}

    async def set_opted_out(self, guild_id: int, user_id: int, opted_out: bool) -> None:
        async with self._transaction() as db:
            if opted_out:
                await db.execute(OPT_OUT, guild_id=guild_id, user_id=user_id, created_at=now_iso())
            else:
                await db.execute(OPT_IN, guild_id=guild_id, user_id=user_id)

    async def opted_out(self, guild_id: int) -> frozenset[int]:
        async with self._read() as db:
            rows = await db.fetch(OPTED_OUT, guild_id=guild_id)
        return frozenset(int(row["user_id"]) for row in rows)

    async def set_history_enabled(self, guild_id: int, enabled: bool, by: int | None) -> None:
        async with self._transaction() as db:
            if enabled:
                await db.execute(ENABLE_HISTORY, guild_id=guild_id, by=by, created_at=now_iso())
            else:
                await db.execute(DISABLE_HISTORY, guild_id=guild_id)

    async def history_enabled(self, guild_id: int) -> bool:
        async with self._read() as db:
            row = await db.fetchrow(HISTORY_ENABLED, guild_id=guild_id)
        return row is not None

    async def user_records(self, user_id: int, guild_id: int | None) -> UserRecords:
        async with self._read() as db:
            uploads = await db.fetch(
                UPLOADS_WITH_TEXT, bulk=True, user_id=user_id, guild_id=guild_id
            )
            messages = await db.fetch(MESSAGES, user_id=user_id, guild_id=guild_id)
            guilds = await db.fetch(OPTED_OUT_GUILDS, user_id=user_id, guild_id=guild_id)
        return user_records(uploads, messages, guilds)

    async def user_channels(self, user_id: int, guild_id: int | None) -> list[int]:
        async with self._read() as db:
            rows = await db.fetch(USER_CHANNELS, user_id=user_id, guild_id=guild_id)
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
        """See the store protocol. One transaction; the affected channels' rows are locked
        (PostgreSQL); afterwards the WAL is checkpointed (SQLite)."""
        results: list[UserDataDeletion] = []
        async with self._transaction() as db:
            uploads = await db.fetch(UPLOADS, user_id=user_id, guild_id=guild_id)
            touched = await db.fetch(TOUCHED, user_id=user_id, guild_id=guild_id)
            by_channel: dict[int, list[tuple[StoryRecord, bool]]] = defaultdict(list)
            for row in uploads:
                by_channel[int(row["channel_id"])].append((story_record(row), True))
            for row in touched:
                by_channel[int(row["channel_id"])].append((story_record(row), False))
            for channel_id in sorted(by_channel):
                await db.fetchval(LOCK_CHANNEL, channel_id=channel_id)
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
            await db.execute(FORGET_UPLOADER, user_id=user_id, guild_id=guild_id)
            await db.execute(FORGET_REQUESTER, user_id=user_id, guild_id=guild_id)
            await db.execute(FORGET_ENABLER, user_id=user_id, guild_id=guild_id)
        await self.checkpoint()
        return results

    async def _apply_deletion(
        self,
        db: Connection,
        channel_id: int,
        stories: list[StoryRecord],
        removed: list[int],
        rewritten: list[int],
        policy: RemovalPolicy,
    ) -> UserDataDeletion:
        channel = await db.fetchrow(CHANNEL, channel_id=channel_id)
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


async def _rebuild(db: Connection, story_id: int, user_id: int, rebuild: StoryRebuild) -> bool:
    """Delete the member's messages of a history story and rebuild its text from the rest;
    False if too little is left (the caller removes the story)."""
    await db.execute(DELETE_MESSAGES, story_id=story_id, user_id=user_id)
    rows = await db.fetch(MESSAGE_TEXTS, story_id=story_id)
    rebuilt = rebuild([str(row["text"]) for row in rows])
    if rebuilt is None:
        return False
    await db.execute(
        REWRITE,
        text=rebuilt.text,
        sha256=rebuilt.sha256,
        bytes=rebuilt.bytes,
        symbols=rebuilt.symbols,
        vocabulary_size=rebuilt.vocabulary_size,
        story_id=story_id,
    )
    return True


def story_record(row: Any) -> StoryRecord:
    return StoryRecord(**{k: row[k] for k in StoryRecord.__dataclass_fields__})


def user_records(
    uploads: Sequence[Any], messages: Sequence[Any], guilds: Sequence[Any]
) -> UserRecords:
    """``user_records``'s rows (either backend's: mappings by column name) as records."""
    return UserRecords(
        uploads=tuple((story_record(row), str(row["text"])) for row in uploads),
        messages=tuple(
            (
                story_record(row),
                StoryMessage(
                    int(row["message_id"]),
                    int(row["author_id"]),
                    str(row["message_text"]),
                    str(row["message_at"]),
                ),
            )
            for row in messages
        ),
        opted_out_guilds=tuple(int(row["guild_id"]) for row in guilds),
    )
