"""Word filters: the words a server never lets its channels' models say."""

from __future__ import annotations

from typing import Any

from bot.core.store import FilterRecord, now_iso
from bot.store.postgres.connection import PostgresBase
from bot.store.sqlite.filters import filter_record


class FilterTables(PostgresBase):
    async def guild_filters(self, guild_id: int) -> list[FilterRecord]:
        async with self._read() as db:
            rows = await db.fetch(
                "SELECT guild_id, folded, word, added_by, created_at FROM guild_filters "
                "WHERE guild_id = $1 "
                "ORDER BY created_at, folded",
                guild_id,
            )
        return [filter_record(row) for row in rows]

    async def filters_version(self, guild_id: int) -> int:
        async with self._read() as db:
            version = await db.fetchval(
                "SELECT version FROM guild_filter_versions WHERE guild_id = $1", guild_id
            )
        return 0 if version is None else int(version)

    @staticmethod
    async def _bump_filters_version(db: Any, guild_id: int) -> None:
        await db.execute(
            "INSERT INTO guild_filter_versions (guild_id, version) VALUES ($1, 1) "
            "ON CONFLICT (guild_id) DO UPDATE SET version = guild_filter_versions.version + 1",
            guild_id,
        )

    async def add_guild_filter(
        self, guild_id: int, folded: str, word: str, added_by: int | None
    ) -> bool:
        async with self._transaction() as db:
            inserted = await db.fetchval(
                "INSERT INTO guild_filters (guild_id, folded, word, added_by, created_at) "
                "VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (guild_id, folded) DO NOTHING RETURNING true",
                guild_id,
                folded,
                word,
                added_by,
                now_iso(),
            )
            if inserted:
                await self._bump_filters_version(db, guild_id)
        return bool(inserted)

    async def remove_guild_filter(self, guild_id: int, folded: str) -> FilterRecord | None:
        async with self._transaction() as db:
            row = await db.fetchrow(
                "DELETE FROM guild_filters WHERE guild_id = $1 AND folded = $2 "
                "RETURNING guild_id, folded, word, added_by, created_at",
                guild_id,
                folded,
            )
            if row is not None:
                await self._bump_filters_version(db, guild_id)
        return None if row is None else filter_record(row)
