"""Word filters: the words a server never lets its channels' models say."""

from __future__ import annotations

from typing import Any

from bot.core.store import FilterRecord, now_iso
from bot.store.base import StoreBase
from bot.store.sql import Connection, Sql

FILTERS = Sql(
    "SELECT guild_id, folded, word, added_by, created_at FROM guild_filters "
    "WHERE guild_id = :guild_id ORDER BY created_at, folded"
)
VERSION = Sql("SELECT version FROM guild_filter_versions WHERE guild_id = :guild_id")
BUMP = Sql(
    "INSERT INTO guild_filter_versions (guild_id, version) VALUES (:guild_id, 1) "
    "ON CONFLICT (guild_id) DO UPDATE SET version = guild_filter_versions.version + 1"
)
ADD = Sql(
    "INSERT INTO guild_filters (guild_id, folded, word, added_by, created_at) "
    "VALUES (:guild_id, :folded, :word, :added_by, :created_at) "
    "ON CONFLICT (guild_id, folded) DO NOTHING RETURNING 1"
)
REMOVE = Sql(
    "DELETE FROM guild_filters WHERE guild_id = :guild_id AND folded = :folded "
    "RETURNING guild_id, folded, word, added_by, created_at"
)


def filter_record(row: Any) -> FilterRecord:
    return FilterRecord(
        guild_id=int(row["guild_id"]),
        folded=row["folded"],
        word=row["word"],
        added_by=None if row["added_by"] is None else int(row["added_by"]),
        created_at=row["created_at"],
    )


class FilterTables(StoreBase):
    async def guild_filters(self, guild_id: int) -> list[FilterRecord]:
        async with self._read() as db:
            rows = await db.fetch(FILTERS, guild_id=guild_id)
        return [filter_record(row) for row in rows]

    async def filters_version(self, guild_id: int) -> int:
        async with self._read() as db:
            version = await db.fetchval(VERSION, guild_id=guild_id)
        return 0 if version is None else int(version)

    @staticmethod
    async def _bump_filters_version(db: Connection, guild_id: int) -> None:
        await db.execute(BUMP, guild_id=guild_id)

    async def add_guild_filter(
        self, guild_id: int, folded: str, word: str, added_by: int | None
    ) -> bool:
        async with self._transaction() as db:
            inserted = await db.fetchval(
                ADD,
                guild_id=guild_id,
                folded=folded,
                word=word,
                added_by=added_by,
                created_at=now_iso(),
            )
            if inserted:
                await self._bump_filters_version(db, guild_id)
        return bool(inserted)

    async def remove_guild_filter(self, guild_id: int, folded: str) -> FilterRecord | None:
        async with self._transaction() as db:
            row = await db.fetchrow(REMOVE, guild_id=guild_id, folded=folded)
            if row is None:
                return None
            record = filter_record(row)  # read before the next statement (SQLite's cursor)
            await self._bump_filters_version(db, guild_id)
        return record
