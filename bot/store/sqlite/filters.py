"""Word filters: the words a server never lets its channels' models say."""

from __future__ import annotations

from typing import Any

from bot.core.store import FilterRecord, now_iso
from bot.store.sqlite.connection import SqliteBase


def filter_record(row: Any) -> FilterRecord:
    return FilterRecord(
        guild_id=int(row["guild_id"]),
        folded=row["folded"],
        word=row["word"],
        added_by=None if row["added_by"] is None else int(row["added_by"]),
        created_at=row["created_at"],
    )


class FilterTables(SqliteBase):
    async def guild_filters(self, guild_id: int) -> list[FilterRecord]:
        async with self._lock:
            rows = await self._all(
                "SELECT guild_id, folded, word, added_by, created_at FROM guild_filters "
                "WHERE guild_id = ? "
                "ORDER BY created_at, folded",
                (guild_id,),
            )
        return [filter_record(row) for row in rows]

    async def filters_version(self, guild_id: int) -> int:
        async with self._lock:
            version = await self._scalar(
                "SELECT version FROM guild_filter_versions WHERE guild_id = ?", (guild_id,)
            )
        return 0 if version is None else int(version)

    async def _bump_filters_version(self, guild_id: int) -> None:
        await self._db.execute(
            "INSERT INTO guild_filter_versions (guild_id, version) VALUES (?, 1) "
            "ON CONFLICT (guild_id) DO UPDATE SET version = guild_filter_versions.version + 1",
            (guild_id,),
        )

    async def add_guild_filter(
        self, guild_id: int, folded: str, word: str, added_by: int | None
    ) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO guild_filters (guild_id, folded, word, added_by, created_at) "
                "VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (guild_id, folded) DO NOTHING",
                (guild_id, folded, word, added_by, now_iso()),
            )
            if cursor.rowcount <= 0:
                return False
            await self._bump_filters_version(guild_id)
            return True

    async def remove_guild_filter(self, guild_id: int, folded: str) -> FilterRecord | None:
        async with self._transaction() as db:
            async with db.execute(
                "SELECT guild_id, folded, word, added_by, created_at FROM guild_filters "
                "WHERE guild_id = ? AND folded = ?",
                (guild_id, folded),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return None
            await db.execute(
                "DELETE FROM guild_filters WHERE guild_id = ? AND folded = ?", (guild_id, folded)
            )
            await self._bump_filters_version(guild_id)
        return filter_record(row)
